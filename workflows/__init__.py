"""Deployment workflows, one module per strategy. The worker registers exactly `ALL_WORKFLOWS`."""

from workflows.bluegreen import BlueGreenDeployment
from workflows.rolling import RollingDeployment

ALL_WORKFLOWS: list[type] = [
    BlueGreenDeployment,
    RollingDeployment,
]

__all__ = ["ALL_WORKFLOWS"]
