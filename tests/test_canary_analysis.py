"""What an inconclusive analysis does to a canary: a step waits for promote or abort and background analysis pauses
the release (tests/test_canary_workflow.py); with `on_inconclusive: fail` either rolls back instead."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from deployflow.status import Phase
from tests.test_canary_workflow import (  # noqa: F401 (fixtures)
    Release,
    analysis_step,
    rate_server,
    release,
    replays,
)


def background(r: Release, **analysis: Any) -> dict[str, Any]:
    return {"starting_step": 1, "analysis": {"metrics": [{
        "name": "error_rate", "interval": "1m",
        "provider": {"kind": "web", "url": r.metrics_url, "json_path": "$.data.error_rate"},
        "success_condition": "result < 0.01", "failure_condition": "result > 0.05",
    }], **analysis}}


async def test_inconclusive_step_configured_to_fail_rolls_back(release: Release) -> None:  # noqa: F811
    release.rates.script = lambda version, n: 0.03  # between the two conditions: inconclusive
    step = analysis_step(release)
    step["analysis"]["on_inconclusive"] = "fail"
    handle = await release.start(release.spec("v2", steps=[{"set_weight": 25}, step, {"set_weight": 50}]))
    err = await release.fails(handle)
    assert err.message.startswith("rolled back at step 2 (25%): error_rate 0.03: neither"), err.message
    release.assert_serving("v1")
    await replays(handle)


async def test_inconclusive_background_analysis_pauses_until_resumed(release: Release) -> None:  # noqa: F811
    release.rates.script = lambda version, n: 0.03 if n == 2 else 0.001
    steps = [{"set_weight": 25}, {"pause": {"duration": "10m"}}, {"set_weight": 50}, {"pause": {"duration": "10m"}}]
    handle = await release.start(release.spec("v2", steps=steps, background_analysis=background(release)))
    # The test server skips time only when asked, or while someone waits for the result (which would skip a paused
    # run to its execution timeout): three minutes for the three background measurements.
    await release.env.sleep(timedelta(minutes=3))
    paused = await release.wait_for(handle, lambda s: s.phase == Phase.PAUSED)
    assert "background analysis inconclusive" in paused.message
    assert paused.step.startswith("2/4") and paused.weights["canary"] == 25  # held where it was
    await handle.signal("resume")
    status = await handle.result()
    assert status.phase == Phase.SUCCEEDED, status.message
    release.assert_serving("v2")


async def test_inconclusive_background_analysis_configured_to_fail_rolls_back(release: Release) -> None:  # noqa: F811
    release.rates.script = lambda version, n: 0.03 if n == 2 else 0.001
    steps = [{"set_weight": 25}, {"pause": {"duration": "10m"}}, {"set_weight": 50}, {"pause": {"duration": "10m"}}]
    spec = release.spec("v2", steps=steps, background_analysis=background(release, on_inconclusive="fail"))
    err = await release.fails(spec)
    assert err.message.startswith("rolled back at step 2 (25%): background analysis: error_rate 0.03: neither"), (
        err.message
    )
    release.assert_serving("v1")
