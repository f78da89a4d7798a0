"""Deployment workflows, one module per strategy. The worker registers exactly `ALL_WORKFLOWS`."""

from workflows.bluegreen import BlueGreenDeployment

ALL_WORKFLOWS: list[type] = [
    BlueGreenDeployment,
]

__all__ = ["ALL_WORKFLOWS"]
