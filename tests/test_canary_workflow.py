"""CanaryDeployment on the time-skipping server, with the real activities against the simulator.

Error rates come from a `web` metric provider served by a tiny HTTP server each test scripts: it answers per
version, per measurement, so a test decides exactly which measurement goes bad.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import CancelledError

from deployflow.kube import api_client
from deployflow.spec.canary import CanaryRequest
from deployflow.spec.control import AbortRequest, PromoteRequest
from deployflow.status import DeploymentStatus, Phase
from deployflow.traffic import router_for
from tests.canary_support import Release, analysis_step, replays

SEED_STAGES = [
    {"weight": 5, "duration": "5m", "max_error_rate": 0.02},
    {"weight": 25, "duration": "5m", "max_error_rate": 0.02},
    {"weight": 50, "duration": "5m", "max_error_rate": 0.02},
    {"weight": 100, "duration": "5m", "max_error_rate": 0.02},
]


async def test_first_deployment_skips_the_steps(release: Release) -> None:
    release.assert_serving("v1")
    assert release.rates.calls == {}  # nothing measured: there was nothing to compare against


async def test_seed_stages_complete_and_promote(release: Release) -> None:
    handle = await release.start(release.spec("v2", stages=SEED_STAGES))
    status = await handle.result()
    await replays(handle)
    assert status.phase == Phase.SUCCEEDED
    assert status.version == "v2" and status.previous_version == "v1"
    release.assert_serving("v2")
    # 5 minutes at 30 s intervals: 10 measurements per stage, every one recorded with its verdict.
    assert len(status.measurements) == 40
    assert {m.verdict for m in status.measurements} == {"Successful"}
    assert all(m.condition == "result > 0.02" and m.value == 0.001 for m in status.measurements)
    weights = [e.message for e in status.events if e.message.startswith("canary weight")]
    assert [w.split()[2] for w in weights] == ["5%", "25%", "50%", "100%"]
    assert status.weights == {"stable": 100, "canary": 0}
    assert release.sim.no_backend_requests(namespace=release.namespace) == 0


@pytest.mark.parametrize(("stage", "weight"), [(1, 5), (2, 25), (3, 50), (4, 100)])
async def test_threshold_exceeded_at_each_stage_rolls_back(release: Release, stage: int, weight: int) -> None:
    stages = [dict(s, duration="1m") for s in SEED_STAGES]  # 2 measurements per stage
    bad_from = 2 * (stage - 1)
    release.rates.script = lambda version, n: 0.183 if n >= bad_from else 0.001
    err = await release.fails(release.spec("v2", stages=stages))
    assert err.type == "RolledBack"
    assert err.message.startswith(
        f"rolled back at step {2 * stage} ({weight}%): error_rate 0.183 > 0.02, 1 of 1 measurement failed"
    ), err.message
    assert err.message.endswith("traffic is back on v1")
    release.assert_serving("v1")
    assert release.sim.no_backend_requests(namespace=release.namespace) == 0


async def test_failure_limit_counts_failed_measurements(release: Release) -> None:
    release.rates.script = lambda version, n: 0.183
    spec = release.spec("v2", stages=[{"weight": 25, "duration": "90s", "max_error_rate": 0.02}])
    spec.error_rate.failure_limit = 2  # type: ignore[union-attr]
    err = await release.fails(spec)
    assert "rolled back at step 2 (25%): error_rate 0.183 > 0.02, 3 of 3 measurements failed" in err.message
    release.assert_serving("v1")


async def test_stage_measurements_start_one_interval_after_each_weight_change(release: Release) -> None:
    """Never at the moment a weight changes, when Prometheus has not yet scraped the canary pods at that weight
    and a query answers no data (inconclusive, a pause): the first measurement waits one interval, the rest
    follow every interval until the stage's duration is reached."""
    stages = [{"weight": 25, "duration": "90s", "max_error_rate": 0.02},
              {"weight": 50, "duration": "1m", "max_error_rate": 0.02}]
    handle = await release.start(release.spec("v2", stages=stages))
    status = await handle.result()
    assert status.phase == Phase.SUCCEEDED and len(status.measurements) == 5
    # The run's own record of what it did after each weight change: activities, and the timers it waited on.
    timeline: list[str] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            timeline.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            seconds = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
            timeline.append(f"wait {seconds:g}s")
    first = timeline.index("set_weight")
    promotion = timeline.index("inspect_release", first)
    assert timeline[first:promotion] == [
        "set_weight", "wait 30s", "measure", "wait 30s", "measure", "wait 30s", "measure",
        "set_weight", "wait 30s", "measure", "wait 30s", "measure",
        "set_weight",  # promotion begins
    ], " | ".join(timeline)
    await replays(handle)


STEPS = [
    {"set_weight": 20},
    {"pause": {}},
    {"set_weight": 50},
    {"pause": {}},
]


@pytest.mark.parametrize(("step", "weight"), [(2, 20), (4, 50)])
async def test_abort_at_each_step_rolls_back(release: Release, step: int, weight: int) -> None:
    handle = await release.start(release.spec("v2", steps=STEPS))
    for pause in (2, 4):
        await release.wait_for(handle, lambda s, p=pause: s.step_index == p and s.phase == Phase.WAITING_PROMOTION)
        if pause == step:
            break
        await handle.execute_update("promote", PromoteRequest())
    served = release.sim.send_requests(release.namespace, "service/web", 2000)
    assert abs(100 * served.get("v2", 0) / 2000 - 100 * weight / (weight + 100 - weight)) <= 15, served
    await handle.execute_update("abort", AbortRequest(reason="bad dashboards"))
    err = await release.fails(handle)
    assert err.message.startswith(f"rolled back at step {step} ({weight}%): aborted: bad dashboards"), err.message
    release.assert_serving("v1")
    status: DeploymentStatus = await handle.query("status", result_type=DeploymentStatus)
    assert status.phase == Phase.ROLLED_BACK and status.weights == {"stable": 100, "canary": 0}


async def test_abort_during_an_analysis_step(release: Release) -> None:
    steps = [{"set_weight": 30}, analysis_step(release, interval="1h", count=3)]
    handle = await release.start(release.spec("v2", steps=steps))
    await release.wait_for(handle, lambda s: len(s.measurements) == 1)
    await handle.execute_update("abort", AbortRequest(reason="enough"))
    err = await release.fails(handle)
    assert err.message.startswith("rolled back at step 2 (30%): aborted: enough"), err.message
    await replays(handle)
    release.assert_serving("v1")


async def test_abort_is_refused_once_finished(release: Release) -> None:
    handle = await release.start(release.spec("v2", steps=[{"set_weight": 50}]))
    await handle.result()
    with pytest.raises(Exception):  # noqa: B017 (the server refuses updates on a closed run)
        await handle.execute_update("abort", AbortRequest(reason="too late"))
    release.assert_serving("v2")


async def test_pause_and_resume(release: Release) -> None:
    spec = release.spec("v2", steps=[{"set_weight": 25}, {"pause": {"duration": "1h"}}, {"set_weight": 50}])
    handle = await release.start(spec)
    await release.wait_for(handle, lambda s: s.step_index == 2)
    await handle.execute_update("pause")
    status = await release.wait_for(handle, lambda s: s.paused)
    # The hour elapses (time skips while we wait for the result below) but the pause holds the release.
    await release.env.sleep(timedelta(hours=3))
    status = await release.wait_for(handle, lambda s: s.phase == Phase.PAUSED)
    assert status.weights == {"stable": 75, "canary": 25}
    await handle.execute_update("resume")
    result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    messages = [e.message for e in result.events]
    assert any("pause requested" in m for m in messages) and "resumed" in messages
    release.assert_serving("v2")


async def test_promote_skips_a_pause(release: Release) -> None:
    spec = release.spec("v2", steps=[{"set_weight": 25}, {"pause": {"duration": "10h"}}, {"set_weight": 50}])
    handle = await release.start(spec)
    await release.wait_for(handle, lambda s: s.step_index == 2)
    await handle.execute_update("promote", PromoteRequest())
    result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert "pause skipped by promote" in [e.message for e in result.events]
    # The 10 h timer was cancelled, never fired (the shared test server's clock is no measure: it also skips
    # ahead for other runs' timers).
    history = await handle.fetch_history()
    kinds = [EventType.Name(e.event_type) for e in history.events]
    assert "EVENT_TYPE_TIMER_CANCELED" in kinds and "EVENT_TYPE_TIMER_FIRED" not in kinds
    release.assert_serving("v2")


async def test_promote_is_refused_when_nothing_waits(release: Release) -> None:
    release.rates.script = lambda version, n: 0.001
    spec = release.spec("v2", steps=[{"set_weight": 10}, {"pause": {}}])
    handle = await release.start(spec)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        # Before the pause step: the routing and canary are still being prepared.
        await handle.execute_update("promote", PromoteRequest())
    assert "nothing waits for promotion" in str(refused.value.cause)
    await release.wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION)
    await handle.execute_update("promote", PromoteRequest())
    assert (await handle.result()).phase == Phase.SUCCEEDED


async def test_full_promotion_skips_every_remaining_step(release: Release) -> None:
    steps = [{"set_weight": 10}, {"pause": {}}, {"set_weight": 20}, {"pause": {}}, {"set_weight": 50}]
    handle = await release.start(release.spec("v2", steps=steps))
    await release.wait_for(handle, lambda s: s.step_index == 2 and s.phase == Phase.WAITING_PROMOTION)
    await handle.execute_update("promote", PromoteRequest(full=True))
    result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    weights = [e.message.split()[2] for e in result.events if e.message.startswith("canary weight")]
    assert weights == ["10%", "100%"]  # straight to 100%, skipping 20% and 50%
    assert any(e.message.startswith("promoted: web-stable runs v2") for e in result.events)
    release.assert_serving("v2")
    assert release.sim.no_backend_requests(namespace=release.namespace) == 0


@pytest.mark.parametrize("decision", ["promote", "abort"])
async def test_inconclusive_analysis_pauses_for_a_decision(release: Release, decision: str) -> None:
    release.rates.script = lambda version, n: 0.03  # between the two conditions: inconclusive
    steps = [{"set_weight": 25}, analysis_step(release), {"set_weight": 50}]
    handle = await release.start(release.spec("v2", steps=steps))
    status = await release.wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION)
    assert "analysis inconclusive" in status.message
    assert [m.verdict for m in status.measurements] == ["Inconclusive"]
    if decision == "promote":
        await handle.execute_update("promote", PromoteRequest())
        assert (await handle.result()).phase == Phase.SUCCEEDED
        release.assert_serving("v2")
    else:
        await handle.execute_update("abort", AbortRequest(reason="inconclusive, not worth it"))
        err = await release.fails(handle)
        assert "rolled back at step 2 (25%)" in err.message
        release.assert_serving("v1")


async def test_no_data_is_inconclusive_not_a_pass(release: Release) -> None:
    release.rates.script = lambda version, n: None
    steps = [{"set_weight": 25}, analysis_step(release)]
    handle = await release.start(release.spec("v2", steps=steps))
    status = await release.wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION)
    assert status.measurements[-1].message == "error_rate: no data"
    await handle.execute_update("abort", AbortRequest(reason="no metrics"))
    await release.fails(handle)
    release.assert_serving("v1")


async def test_background_analysis_failure_rolls_back(release: Release) -> None:
    # Healthy for the first three measurements (one per minute), then failing, during a long pause.
    release.rates.script = lambda version, n: 0.2 if n >= 3 else 0.001
    spec = release.spec(
        "v2",
        steps=[{"set_weight": 25}, {"pause": {"duration": "1h"}}, {"set_weight": 50}, {"pause": {"duration": "1h"}}],
        background_analysis={"starting_step": 1, "analysis": {"metrics": [{
            "name": "error_rate", "interval": "1m",
            "provider": {"kind": "web", "url": release.metrics_url, "json_path": "$.data.error_rate"},
            "failure_condition": "result > 0.05",
        }]}},
    )
    handle = await release.start(spec)
    err = await release.fails(handle)
    await replays(handle)
    assert err.message.startswith(
        "rolled back at step 2 (25%): background analysis: error_rate 0.2 > 0.05, 1 of 4 measurements failed"
    ), err.message
    release.assert_serving("v1")


async def test_post_promotion_watch_rolls_back_a_late_failure(release: Release) -> None:
    # v1's pre-deployment baseline is 0.004; v2 passes its stage, then 5 hours after promotion its error rate
    # climbs over 2x the baseline (and the 0.01 floor).
    release.rates.script = lambda version, n: 0.004 if version == "v1" else (0.05 if n >= 7 else 0.002)
    spec = release.spec(
        "v2",
        stages=[{"weight": 50, "duration": "1m", "max_error_rate": 0.02}],
        post_promotion={"window": "24h", "interval": "1h", "max_error_rate": 0.01, "factor": 2},
    )
    err = await release.fails(spec)
    assert err.message.startswith(
        "rolled back after promotion: post-promotion analysis: error_rate 0.05 > max(2 * baseline(0.004), 0.01)"
    ), err.message
    release.assert_serving("v1")


async def test_post_promotion_watch_passes_a_healthy_release(release: Release) -> None:
    release.rates.script = lambda version, n: 0.004 if version == "v1" else 0.005
    spec = release.spec(
        "v2",
        stages=[{"weight": 50, "duration": "1m", "max_error_rate": 0.02}],
        post_promotion={"window": "24h", "interval": "2h"},
    )
    status = await release.deploy(spec)
    assert status.phase == Phase.SUCCEEDED
    assert len(status.measurements) == 2 + 12  # the stage, then every 2 hours for 24 hours
    assert "post-promotion watch passed" in [e.message for e in status.events]
    release.assert_serving("v2")


async def test_cancel_rolls_back(release: Release) -> None:
    handle = await release.start(release.spec("v2", steps=STEPS))
    await release.wait_for(handle, lambda s: s.step_index == 2 and s.phase == Phase.WAITING_PROMOTION)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert isinstance(err.value.cause, CancelledError)
    release.assert_serving("v1")


async def test_gateway_api_release(release: Release) -> None:
    """The same runbook through HTTPRoute weights (v1 came up with the replica router's Service only)."""
    spec = release.spec("v2", traffic={"router": "gateway-api"}, steps=[{"set_weight": 30}, {"pause": {}}])
    handle = await release.start(spec)
    await release.wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION)
    # 20,000 requests put the binomial spread at 0.3 points: a 3-point miss is a wrong weight, not chance.
    served = release.sim.send_requests(release.namespace, "httproute/web", 20_000)
    assert abs(100 * served.get("v2", 0) / 20_000 - 30) <= 3, served
    await handle.execute_update("promote", PromoteRequest())
    assert (await handle.result()).phase == Phase.SUCCEEDED
    assert release.sim.send_requests(release.namespace, "httproute/web", 500) == {"v2": 500}
    assert router_for(api_client("sim"), spec.target, spec.traffic).weight() == 0
    release.assert_serving("v2")


async def test_foreign_route_fails_before_anything_changes(release: Release) -> None:
    from kubernetes import client

    api = client.CustomObjectsApi(api_client("sim"))
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "web", "namespace": release.namespace},
             "spec": {"rules": [{"backendRefs": [{"name": "legacy", "port": 80}]}]}}
    api.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", release.namespace, "httproutes", route)
    err = await release.fails(release.spec("v2", traffic={"router": "gateway-api"}, steps=[{"set_weight": 50}]))
    assert "before the first step" in err.message and "no rule with a backendRef to web-stable" in err.message
    kept = api.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", release.namespace, "httproutes", "web")
    assert kept["spec"]["rules"][0]["backendRefs"] == [{"name": "legacy", "port": 80}]
    assert not release.tracks().read("canary").exists
    release.assert_serving("v1")


def test_bad_spec_names_the_field() -> None:
    base = {"target": {"cluster": "sim", "namespace": "shop", "app": "web"}, "workload": {"image": "web:v2"}}
    cases = [
        ({"steps": [{"set_weight": 120}]}, "steps.0"),
        ({"stages": [{"weight": 5, "max_error_rate": 0.02}]}, "error_rate"),
        ({"traffic": {"router": "linkerd"}}, "traffic.router"),
        ({"steps": [{"set_weight": 5}], "stages": [{"weight": 5}]}, "stages"),
        ({"steps": [{"analysis": {"metrics": [{"name": "e", "provider": {"kind": "web", "url": "http://x"},
                                               "failure_condition": "import os"}]}}]}, "failure_condition"),
    ]
    for extra, field in cases:
        with pytest.raises(ValidationError) as err:
            CanaryRequest.model_validate({**base, **extra})
        assert field in str(err.value), (field, str(err.value))
