"""A canary of 4 replicas at 5% on the replicas router, on the time-skipping server with the simulator as the cluster:
every view says both the weight asked for and the share the canary really gets, and the cluster agrees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata

from deployflow.security.outbound import ALLOWED_HOSTS_SETTING
from deployflow.spec.control import AbortRequest, PromoteRequest
from deployflow.status import DeploymentStatus, Phase, format_percent, step_text, traffic_text
from tests.canary_support import Release, analysis_step, replays
from tests.receiver_support import Receiver, serve_receiver

HOOK_ENV = "DEPLOYFLOW_CRED_TEST_WEIGHTS_HOOK_URL"


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Receiver]:
    monkeypatch.setenv(ALLOWED_HOSTS_SETTING, "127.0.0.1")  # the receiver listens on loopback
    async with serve_receiver() as rec:
        monkeypatch.setenv(HOOK_ENV, f"{rec.url}/hook")
        yield rec


def traffic(max_extra_pods: int | None) -> dict[str, Any]:
    return {"router": "replicas"} | ({} if max_extra_pods is None else {"max_extra_pods": max_extra_pods})


async def notified(receiver: Receiver, event: str) -> dict[str, Any]:
    """The body of the first `event` notification, once the receiver has it (delivery runs beside the release)."""
    for _ in range(400):
        bodies = [b for b in receiver.bodies("/hook") if b["event"] == event]
        if bodies:
            return bodies[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} notification; got {[b['event'] for b in receiver.bodies('/hook')]}")


@pytest.mark.parametrize(("max_extra_pods", "stable_pods", "actual"), [(None, 7, 12.5), (1, 4, 20.0)])
async def test_five_percent_of_four_replicas_shows_what_the_canary_really_gets(
    release: Release, receiver: Receiver, max_extra_pods: int | None, stable_pods: int, actual: float
) -> None:
    spec = release.spec("v2", traffic=traffic(max_extra_pods), steps=[{"set_weight": 5}, {"pause": {}}],
                        notifications=[{"kind": "webhook", "url_env": HOOK_ENV}])
    handle = await release.start(spec)
    status = await release.wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION)

    # The status query: requested and actual side by side, and the pods that make the actual one.
    assert status.weights == {"stable": 95, "canary": 5}
    assert status.actual_weights == {"stable": 100 - actual, "canary": actual}
    assert (status.details["stable_pods"], status.details["canary_pods"]) == (stable_pods, 1)
    assert step_text(status) == "2/2 pause until promoted"  # numbered once, though `step` carries the number

    # The cluster and the simulator's counters agree with the actual weight, not with the requested one.
    tracks = release.tracks()
    assert tracks.read("stable").ready == stable_pods and tracks.read("canary").ready == 1
    served = release.sim.send_requests(release.namespace, "service/web", 4000)
    assert abs(served["v2"] / 4000 - actual / 100) < 0.03, served

    # The UI's current details.
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    expected = (f"- traffic: stable 95%, canary 5% requested; actual stable {format_percent(100 - actual)}, "
                f"canary {format_percent(actual)}")
    assert expected in metadata.current_details.splitlines(), metadata.current_details
    assert "- step: 2/2 pause until promoted" in metadata.current_details.splitlines()

    # A notification sent while the canary holds its weight.
    body = await notified(receiver, "waiting-approval")
    assert body["details"]["traffic"] == traffic_text(status)
    assert f"canary {format_percent(actual)}" in body["details"]["traffic"]

    await handle.execute_update("promote", PromoteRequest())
    final: DeploymentStatus = await handle.result()
    assert final.phase == Phase.SUCCEEDED
    assert final.weights == {"stable": 100, "canary": 0} and final.actual_weights == {"stable": 100, "canary": 0}
    assert [(t.requested, t.actual) for t in final.traffic_history] == [(5, actual), (100, 100)]
    release.assert_serving("v2")  # back to 4 stable pods: the extra ones are gone
    await replays(handle)


async def test_a_rollback_brings_the_app_back_to_its_size(release: Release) -> None:
    handle = await release.start(release.spec("v2", steps=[{"set_weight": 5}, {"pause": {}}]))
    await release.wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION)
    assert release.tracks().read("stable").replicas == 7
    await handle.execute_update("abort", AbortRequest(reason="looks wrong"))
    err = await release.fails(handle)
    assert err.type == "RolledBack"
    release.assert_serving("v1")  # stable runs REPLICAS pods again, the canary none
    final = await release.wait_for(handle, lambda s: s.phase == Phase.ROLLED_BACK)
    assert final.actual_weights == {"stable": 100, "canary": 0}


async def test_each_measurement_records_the_weight_it_was_taken_at(release: Release) -> None:
    steps = [{"set_weight": 5}, analysis_step(release), {"set_weight": 50}, analysis_step(release)]
    final: DeploymentStatus = await release.deploy(release.spec("v2", steps=steps))
    assert final.phase == Phase.SUCCEEDED
    # 4 replicas: 1 canary pod beside 7 stable, then 2 beside 2.
    assert [(m.metric, m.weight) for m in final.measurements] == [("error_rate", 12.5), ("error_rate", 50)]


async def test_a_mesh_router_reports_the_weight_its_route_carries(release: Release) -> None:
    spec = release.spec("v2", traffic={"router": "gateway-api"}, steps=[{"set_weight": 5}, {"pause": {}}])
    handle = await release.start(spec)
    status = await release.wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION)
    # The route weighs requests itself: 5% is 5%, with stable at full size beside one canary pod.
    assert status.weights == {"stable": 95, "canary": 5}
    assert status.actual_weights == {"stable": 95, "canary": 5}
    assert (status.details["stable_pods"], status.details["canary_pods"]) == (4, 1)
    assert status.details["traffic"] == "stable 95%, canary 5% (requested and actual)"
    assert not [e for e in status.events if e.kind == "warning"]  # nothing to warn about with a mesh
    await handle.execute_update("promote", PromoteRequest())
    assert (await handle.result()).phase == Phase.SUCCEEDED


async def test_the_run_warns_about_weights_it_cannot_give(release: Release) -> None:
    handle = await release.start(release.spec("v2", traffic={"max_extra_pods": 0},
                                              steps=[{"set_weight": 5}, {"pause": {}}]))
    status = await release.wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION)
    (warning,) = [e.message for e in status.events if e.kind == "warning"]
    assert warning.startswith("step 1 set_weight 5: ") and "25%" in warning
    assert status.actual_weights["canary"] == 25
    await handle.execute_update("abort", AbortRequest(reason="done looking"))
    await release.fails(handle)
