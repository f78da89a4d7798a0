"""What a deployment shows outside its history: the search attributes it is found by, and the markdown details the
Temporal UI and `temporal workflow describe` show for a run. Pure functions of the status: `DeploymentControl`
publishes them on every change."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from deployflow.status import DeploymentStatus, Phase, step_text, traffic_text

from deployflow.temporal import DEPLOY_APP, DEPLOY_NAMESPACE, DEPLOY_PHASE, DEPLOY_STRATEGY, DEPLOY_VERSION


def search_attribute_updates(status: DeploymentStatus, *, identity: bool) -> list[Any]:
    """Phase and version every time; app, namespace and strategy (`identity`) only the first time, as they never
    change."""
    updates: list[Any] = [DEPLOY_PHASE.value_set(status.phase.value)]
    if identity:
        updates += [
            DEPLOY_APP.value_set(status.app),
            DEPLOY_NAMESPACE.value_set(status.namespace),
            DEPLOY_STRATEGY.value_set(status.strategy),
        ]
    updates.append(DEPLOY_VERSION.value_set(status.version))
    return updates


def render_details(s: DeploymentStatus, abort_reason: str | None) -> str:
    """The run's current details in markdown: what deploys where, its phase, step, traffic and facts."""
    lines = [
        f"**{s.strategy}** of `{s.app}` in `{s.cluster}/{s.namespace}`: "
        f"**{s.phase.value}**" + (" (pause requested)" if s.paused and s.phase != Phase.PAUSED else ""),
        "",
        f"- version: `{s.version}`" + (f" (previous `{s.previous_version}`)" if s.previous_version else ""),
    ]
    if s.step:
        lines.append(f"- step: {step_text(s)}")
    if s.message:
        lines.append(f"- {s.message}")
    if s.weights:
        lines.append(f"- traffic: {traffic_text(s)}")
    for key, value in s.details.items():
        if isinstance(value, str | int | float | bool) and key != "traffic":  # said just above
            lines.append(f"- {key}: {value}")
    if abort_reason is not None:
        lines.append(f"- abort requested: {abort_reason}")
    return "\n".join(lines)
