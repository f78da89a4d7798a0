"""Rich rendering of a deployment's status: phase, step, traffic, analysis and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from deployflow.status import DeploymentStatus, Phase, actual_differs, format_percent, step_text

_PHASE_STYLE = {
    Phase.PENDING: "dim",
    Phase.PROGRESSING: "cyan",
    Phase.PAUSED: "yellow",
    Phase.WAITING_PROMOTION: "yellow",
    Phase.STANDBY: "blue",
    Phase.ROLLING_BACK: "magenta",
    Phase.SUCCEEDED: "green",
    Phase.ROLLED_BACK: "red",
    Phase.FAILED: "bold red",
}
_EVENT_STYLE = {"info": "", "warning": "yellow", "error": "red", "decision": "bold cyan"}
FAILED_PHASES = (Phase.ROLLED_BACK, Phase.FAILED)


def _ts(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S") if value else "-"


def phase_text(phase: Phase | str) -> Text:
    try:
        style = _PHASE_STYLE[Phase(phase)]
    except ValueError:
        style = ""
    return Text(str(phase), style=style)


def weights_text(weights: dict[str, int] | dict[str, float]) -> Text:
    text = Text()
    for i, (name, weight) in enumerate(weights.items()):
        if i:
            text.append("  ")
        bar = "█" * round(weight / 10) + "░" * (10 - round(weight / 10))
        text.append(f"{name} ", style="bold")
        text.append(bar, style="green" if name in ("stable", "active", "blue") else "cyan")
        text.append(f" {format_percent(weight)}")
    return text


def traffic_rows(st: DeploymentStatus) -> list[tuple[str, Text]]:
    """The split as requested and as it really is: without a mesh only whole-pod ratios exist (5% of 4 replicas
    is 1 canary pod beside 7 stable, 12.5%); then, when Prometheus counted it, the share of requests each track
    answered over the last interval."""
    if not st.weights:
        return []
    observed = [("traffic observed", weights_text(st.observed_weights))] if st.observed_weights else []
    if not st.actual_weights:
        return [("traffic set" if observed else "traffic", weights_text(st.weights)), *observed]
    actual = weights_text(st.actual_weights)
    if actual_differs(st):
        actual.append("  (not the requested split: see the pod counts)", style="yellow")
    return [("traffic set", weights_text(st.weights)), ("traffic actual", actual), *observed]


def failure_text(err: BaseException | None) -> str:
    """A failure and its causes, outermost first, each said once: a cause whose message an outer one already
    quotes (a rolled-back release names the reason it rolled back for) is not repeated."""
    parts: list[str] = []
    while err is not None:
        msg = str(getattr(err, "message", None) or err).strip()
        if msg and not any(msg in part for part in parts):
            parts.append(msg)
        err = getattr(err, "cause", None) or err.__cause__
    return ": ".join(parts) or "unknown failure"


def event_line(ev: Any) -> Text:
    return Text(f"{_ts(ev.time)}  {ev.message}", style=_EVENT_STYLE.get(ev.kind, ""))


def status_table(st: DeploymentStatus, workflow_id: str, events: int = 10) -> Group:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("deployment", workflow_id)
    table.add_row("strategy", st.strategy)
    table.add_row("version", f"{st.previous_version or '(none)'} → {st.version}")
    table.add_row("phase", phase_text(st.phase) + Text("  (paused)" if st.paused else "", style="yellow"))
    if st.step or st.step_count:
        table.add_row("step", step_text(st))
    for label, text in traffic_rows(st):
        table.add_row(label, text)
    if st.message:
        table.add_row("message", st.message)
    for key, value in st.details.items():
        if key != "traffic":  # the rows above say it with bars
            table.add_row(key, str(value))
    table.add_row("started", _ts(st.started_at))
    if st.finished_at:
        table.add_row("finished", _ts(st.finished_at))
    parts: list[Any] = [table]
    if st.measurements:
        m = Table(title="analysis", title_justify="left", show_edge=False)
        for col in ("time", "metric", "value", "condition", "verdict", "at weight"):
            m.add_column(col)
        for meas in st.measurements[-8:]:
            style = {"Successful": "green", "Failed": "red", "Inconclusive": "yellow"}.get(meas.verdict, "")
            value = "no data" if meas.value is None else f"{meas.value:.4g}"
            weight = "-" if meas.weight is None else format_percent(meas.weight)
            m.add_row(_ts(meas.time), meas.metric, value, meas.condition, Text(meas.verdict, style=style), weight)
        parts.append(m)
    if events and st.events:
        parts.append(Text("events", style="bold"))
        parts.extend(event_line(ev) for ev in st.events[-events:])
    return Group(*parts)


def progress_panel(st: DeploymentStatus, workflow_id: str) -> Panel:
    return Panel(status_table(st, workflow_id, events=0), title=f"{st.strategy} {st.app}", expand=False)
