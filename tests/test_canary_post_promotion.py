"""The post-promotion watch waits before its first measurement, as the stages do: right after promotion Prometheus
has not scraped the new stable pods, a query answers no data, and the watch would judge nothing."""

from __future__ import annotations

from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from deployflow.status import DeploymentStatus, Phase
from tests.canary_support import Release, replays


async def timeline_of(handle: WorkflowHandle[Any, DeploymentStatus]) -> list[str]:
    """The run's own record: activities scheduled and the timers it waited on, in order."""
    timeline: list[str] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            timeline.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            seconds = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
            timeline.append(f"wait {seconds:g}s")
    return timeline


async def test_post_promotion_watch_first_measures_one_delay_after_promotion(release: Release) -> None:
    release.rates.script = lambda version, n: 0.004 if version == "v1" else 0.002
    spec = release.spec(
        "v2",
        stages=[{"weight": 50, "duration": "1m", "max_error_rate": 0.02}],
        post_promotion={"window": "2h", "interval": "1h"},
        error_rate={"provider": {"kind": "web", "url": release.metrics_url, "json_path": "$.data.error_rate"},
                    "interval": "30s", "initial_delay": "45s"},
    )
    handle = await release.start(spec)
    status = await handle.result()

    assert status.phase == Phase.SUCCEEDED, status.message
    assert "post-promotion watch passed" in [e.message for e in status.events]
    timeline = await timeline_of(handle)
    promoted = max(i for i, step in enumerate(timeline) if step == "set_weight")  # traffic back to stable
    after = [step for step in timeline[promoted + 1:] if step != "wait 7200s"]  # the window's own timer
    # 45 s, then every hour while the 2 h window lasts: at 45 s and 1 h 45 s.
    assert after == ["wait 45s", "measure", "wait 3600s", "measure"], " | ".join(timeline)
    assert release.rates.calls == {"v1": 1, "v2": 4}  # the baseline; the stage's two, the watch's two
    release.assert_serving("v2")
    await replays(handle)
