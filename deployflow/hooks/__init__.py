"""Hook runners: Kubernetes Jobs, HTTP smoke tests and confirmation webhooks (see deployflow.spec.hooks)."""
