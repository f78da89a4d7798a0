"""deployflow: zero-downtime Kubernetes deployments as durable Temporal workflows."""

__version__ = "0.1.0"
