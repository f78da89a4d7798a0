"""The public contract: the pydantic models that go in from the Temporal UI, the temporal CLI and `deployflow start`.

`DeploymentSpec` is the union of every strategy's request, told apart by `strategy`; `STRATEGIES` maps a strategy
name to the workflow type that runs it and its request model. Each strategy adds one line to both.
"""

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from deployflow.spec.bluegreen import BlueGreenRequest, PromotionGate
from deployflow.spec.canary import CanaryRequest
from deployflow.spec.common import (
    EnvVar,
    HttpProbe,
    SmokeTest,
    StrictModel,
    Target,
    Workload,
    describe_validation_error,
)
from deployflow.spec.rolling import RollingRequest
from deployflow.spec.train import TrainRequest

STRATEGIES: dict[str, tuple[str, type[StrictModel]]] = {
    "blue-green": ("BlueGreenDeployment", BlueGreenRequest),
    "rolling": ("RollingDeployment", RollingRequest),
    "canary": ("CanaryDeployment", CanaryRequest),
    "train": ("ReleaseTrain", TrainRequest),
}

DeploymentSpec = Annotated[
    Union[BlueGreenRequest, RollingRequest, CanaryRequest, TrainRequest],  # noqa: UP007 - other strategies join this union
    Field(discriminator="strategy"),
]

_adapter: TypeAdapter[Any] = TypeAdapter(DeploymentSpec)


def parse_spec(data: Any) -> StrictModel:
    """Validates a spec (a dict from YAML or JSON) into the request model its `strategy` names."""
    model: StrictModel = _adapter.validate_python(data)
    return model


def workflow_type_for(spec: StrictModel) -> str:
    return STRATEGIES[spec.strategy][0]  # type: ignore[attr-defined]


__all__ = [
    "STRATEGIES",
    "BlueGreenRequest",
    "DeploymentSpec",
    "EnvVar",
    "HttpProbe",
    "PromotionGate",
    "RollingRequest",
    "SmokeTest",
    "StrictModel",
    "Target",
    "TrainRequest",
    "Workload",
    "describe_validation_error",
    "parse_spec",
    "workflow_type_for",
]
