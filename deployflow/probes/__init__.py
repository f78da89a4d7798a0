"""HTTP probes: smoke tests and HTTP hooks, through a Service's API-server proxy or to a URL, under one engine.

`proxy` (path rules, importable by spec validators) stays free of the Kubernetes client; `engine` sends.
"""
