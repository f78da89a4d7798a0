"""Deployment workflows, one module per strategy. The worker registers exactly `ALL_WORKFLOWS`."""

ALL_WORKFLOWS: list[type] = []

__all__ = ["ALL_WORKFLOWS"]
