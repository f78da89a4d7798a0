"""Service activities: point a Service's selector at a set of pods (the blue-green switch)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity

from activities._errors import api_for, as_activity_errors
from deployflow import workloads
from deployflow.spec.common import Target


class SwitchServiceInput(BaseModel):
    target: Target
    service: str
    selector: dict[str, str]
    create_if_missing: bool = Field(default=True, description="create the Service (first deployment)")
    port: int = 80
    target_port: int = 8080


class SwitchResult(BaseModel):
    service: str
    previous_selector: dict[str, str] | None
    created: bool


@activity.defn(name="switch_service")
def switch_service(request: SwitchServiceInput) -> SwitchResult:
    """Sets the Service's selector to exactly `selector`. Idempotent: switching to where it points is a no-op."""
    api = api_for(request.target)
    create = (
        workloads.service_manifest(request.target, request.service, request.selector, request.port, request.target_port)
        if request.create_if_missing
        else None
    )
    with as_activity_errors(f"switch Service {request.service}", request.target):
        previous = workloads.set_service_selector(
            api, request.target.namespace, request.service, request.selector, create=create
        )
    activity.logger.info("Service %s now selects %s (was %s)", request.service, request.selector, previous)
    return SwitchResult(service=request.service, previous_selector=previous, created=previous is None)
