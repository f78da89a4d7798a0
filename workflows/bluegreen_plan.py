"""What a blue-green release will do, decided once from the live state, and the figures its runbook
(workflows.bluegreen) derives from the request: pure functions, with no Temporal commands in them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.workloads import WorkloadsSnapshot
    from deployflow.spec.bluegreen import COLORS, BlueGreenRequest

    # Label names the activities' inputs carry; the module holds the Kubernetes client code behind them.
    from deployflow.workloads import COLOR_LABEL

from workflows.options import QUICK


@dataclass
class Plan:
    """What this run does, decided once from the live state."""

    old_color: str | None  # colour serving before; None on a first deployment
    old_version: str | None
    old_replicas: int
    new_color: str
    active_service_existed: bool
    active_selector: dict[str, str] | None  # what the active Service selected before this run

    @property
    def adopting(self) -> bool:
        """The active Service exists but selects pods deployflow does not manage (a first blue-green release)."""
        return self.old_color is None and bool(self.active_selector)

    def deployment(self, app: str, color: str) -> str:
        return f"{app}-{color}"

    def where_traffic_stays(self) -> str:
        if self.adopting:
            return f"the pods selected by {self.active_selector}"
        if self.old_color is None:
            return "nothing was serving before"
        return f"{self.old_color} ({self.old_version or 'unknown version'})"


def plan_release(request: BlueGreenRequest, live: WorkloadsSnapshot) -> tuple[Plan, list[str]]:
    """The plan, and warnings about a live state that does not add up (the active Service selects a colour that
    has no Deployment: it is treated as a first deployment)."""
    warnings = []
    active = live.services.get(request.active_service_name)
    old_color = active.selector.get(COLOR_LABEL) if active is not None else None
    if old_color not in COLORS:
        old_color = None
    old = live.deployments.get(f"{request.target.app}-{old_color}") if old_color else None
    if old_color is not None and old is None:
        warnings.append(f"{request.active_service_name} points at {old_color}, which does not exist")
    plan = Plan(
        old_color=old_color if old is not None else None,
        old_version=old.version if old is not None else None,
        old_replicas=old.replicas if old is not None else 0,
        new_color="green" if old_color == "blue" else "blue",
        active_service_existed=active is not None,
        active_selector=dict(active.selector) if active is not None else None,
    )
    return plan, warnings


def gate_message(request: BlueGreenRequest) -> str:
    gate = request.promotion
    if gate.mode == "auto":
        return "promotion: automatic"
    if gate.mode == "after":
        return f"promotion: automatic after {gate.delay}"
    return "promotion: waiting for promote or approve"


def smoke_budget(request: BlueGreenRequest) -> timedelta:
    """The smoke-test activity's time limit: every test's every attempt, with its interval, plus a margin."""
    per_test = [t.attempts * (t.timeout + t.interval) for t in request.smoke_tests]
    return sum(per_test, timedelta(0)) + QUICK
