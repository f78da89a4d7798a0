"""A simulator that speaks the Kubernetes REST API, for tests and the local demo only.

Production code never imports this package: it talks to real clusters through the official client.
"""
