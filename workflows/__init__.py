"""Deployment workflows, one module per strategy. The worker registers exactly `ALL_WORKFLOWS`."""

from workflows.bluegreen import BlueGreenDeployment
from workflows.canary import CanaryDeployment
from workflows.rolling import RollingDeployment
from workflows.train import ReleaseTrain

ALL_WORKFLOWS: list[type] = [
    BlueGreenDeployment,
    RollingDeployment,
    CanaryDeployment,
    ReleaseTrain,
]

__all__ = ["ALL_WORKFLOWS"]
