"""Release trains on the time-skipping server against three simulated clusters (staging, prod-1, prod-2): waves in
order with soak, analysis and approval; a version prod-1 cannot pull stopping wave 2 (rolled back, or held); abort
and cancel; depends_on and the per-cluster limit; pause relayed to the releases; a worker stopping mid-wave."""

from __future__ import annotations

import contextlib
import gc
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import ALL_ACTIVITIES
from deployflow.errors import ErrorType
from deployflow.sim.resources import DEPLOYMENTS, NAMESPACES
from deployflow.sim.server import Simulator
from deployflow.sim.store import StoreError
from deployflow.status import DeploymentStatus, Phase
from tests.bluegreen_support import running_worker, wait_for
from tests.train_support import registry_without, release_everywhere, serving, start, started, train, waves_of
from worker import build_worker, worker_client, workflow_runner
from workflows import ALL_WORKFLOWS


@pytest.fixture
def namespace(clusters: dict[str, Simulator]) -> Iterator[str]:
    """A fresh namespace in every cluster of the train."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    for sim in clusters.values():
        sim.create_namespace(name)
    yield name
    for sim in clusters.values():
        with contextlib.suppress(StoreError):
            sim.store.delete(NAMESPACES, None, name)


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str]]:
    async with running_worker(time_skipping_env.client) as queue:
        yield time_skipping_env.client, queue


async def test_a_good_train_goes_through_every_wave_with_soak_and_approval(
    env: tuple[Client, str], clusters: dict[str, Simulator], namespace: str, time_skipping_env: WorkflowEnvironment
) -> None:
    client, queue = env
    waves: list[dict[str, Any]] = [{"name": "staging", "targets": [{"cluster": "staging", "namespace": namespace}],
              "soak": {"duration": "30m"}, "approval": True},
             {"name": "prod-1", "targets": [{"cluster": "prod-1", "namespace": namespace}],
              "soak": {"duration": "1h", "analysis": {"metrics": [{
                  "name": "ready", "provider": {"kind": "kubernetes", "measure": "ready-ratio"},
                  "success_condition": "result >= 1"}]}}},
             {"name": "prod-2", "targets": [{"cluster": "prod-2", "namespace": namespace}]}]
    handle = await start(client, queue, train(namespace, "1.0", waves=waves))
    await wait_for(handle, lambda s: "soaking" in s.message, "the soak in staging")
    await time_skipping_env.sleep(timedelta(minutes=31))

    status = await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the approval after staging")
    assert waves_of(status)["staging"]["phase"] == "WaitingApproval"
    assert waves_of(status)["prod-1"]["phase"] == "Pending"
    assert serving(clusters["staging"], namespace) == "1.0" and serving(clusters["prod-1"], namespace) is None
    await handle.execute_update("approve", {"approver": "alice"})

    result = await handle.result()
    assert result.phase == Phase.SUCCEEDED, result.message
    assert {c: serving(sim, namespace) for c, sim in clusters.items()} == dict.fromkeys(clusters, "1.0")
    assert [w["phase"] for w in result.details["waves"]] == ["Promoted"] * 3
    assert result.details["approved_by"] == "alice"
    assert [m.metric for m in result.measurements] == ["ready"] and result.measurements[0].verdict == "Successful"
    releases = [r for w in result.details["waves"] for r in w["releases"]]
    assert [r["workflow_id"] for r in releases] == [f"deploy/{c}/{namespace}/web" for c in clusters]
    assert all(r["phase"] == "Succeeded" and r["version"] == "1.0" for r in releases)
    # Each release is a workflow of its own under the usual id, steerable and visible on its own.
    child = await client.get_workflow_handle(f"deploy/prod-2/{namespace}/web", result_type=DeploymentStatus).result()
    assert child.phase == Phase.SUCCEEDED and child.strategy == "blue-green"


@pytest.mark.parametrize("policy", ["rollback", "hold"])
async def test_a_version_prod_1_cannot_pull_stops_the_train_in_wave_2_and_rolls_back_wave_1(
    env: tuple[Client, str], clusters: dict[str, Simulator], namespace: str, policy: str
) -> None:
    client, queue = env
    await release_everywhere(client, queue, namespace, "1.0")

    async with registry_without(clusters["prod-1"], namespace, "2.0"):
        handle = await start(client, queue, train(namespace, "2.0", on_failure=policy))
        if policy == "hold":
            status = await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the hold after prod-1")
            assert waves_of(status)["prod-1"]["phase"] == "Failed"
            assert serving(clusters["staging"], namespace) == "2.0"  # held: nothing rolled back yet
            await handle.execute_update("abort", {"reason": "2.0 is not in the prod registry"})
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()

    assert failed.value.cause.type == ErrorType.ROLLED_BACK  # type: ignore[attr-defined]
    status = await handle.query("status", result_type=DeploymentStatus)
    waves = waves_of(status)
    assert (waves["staging"]["phase"], waves["prod-1"]["phase"], waves["prod-2"]["phase"]) == (
        "RolledBack", "Failed", "Pending")
    assert waves["staging"]["releases"][0]["phase"] == "RolledBack"
    assert waves["prod-1"]["releases"][0]["phase"] == "Failed"
    assert "ErrImagePull" in waves["prod-1"]["releases"][0]["message"] or (
        "ImagePullBackOff" in waves["prod-1"]["releases"][0]["message"])
    # Every cluster serves 1.0 again: staging was rolled back, prod-1 rolled itself back, prod-2 was never touched.
    assert {c: serving(sim, namespace) for c, sim in clusters.items()} == dict.fromkeys(clusters, "1.0")
    assert clusters["prod-2"].store.get(DEPLOYMENTS, namespace, "web-green") is None


@pytest.mark.parametrize("stop", ["abort", "cancel"])
async def test_abort_or_cancel_stops_the_whole_train_and_rolls_back_what_it_promoted(
    env: tuple[Client, str], clusters: dict[str, Simulator], namespace: str, stop: str
) -> None:
    client, queue = env
    await release_everywhere(client, queue, namespace, "1.0")
    waves: list[dict[str, Any]] = [{"name": "staging", "targets": [{"cluster": "staging", "namespace": namespace},
                                             {"cluster": "prod-1", "namespace": namespace}], "approval": True},
             {"name": "prod", "targets": [{"cluster": "prod-2", "namespace": namespace}]}]
    handle = await start(client, queue, train(namespace, "2.0", waves=waves))
    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the approval after the first wave")
    assert serving(clusters["prod-1"], namespace) == "2.0"
    if stop == "abort":
        await handle.execute_update("abort", {"reason": "release freeze"})
    else:
        await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    if stop == "abort":
        assert "release freeze" in str(failed.value.cause)
    else:
        assert isinstance(failed.value.cause, CancelledError)  # the run ends CANCELED, after its rollback
    assert {c: serving(sim, namespace) for c, sim in clusters.items()} == dict.fromkeys(clusters, "1.0")
    status = await handle.query("status", result_type=DeploymentStatus)
    assert status.phase == Phase.ROLLED_BACK
    assert waves_of(status)["prod"]["phase"] == "Pending"


async def test_dependencies_go_first_and_one_release_at_a_time_per_cluster(
    env: tuple[Client, str], clusters: dict[str, Simulator], namespace: str
) -> None:
    client, queue = env
    apps: list[dict[str, Any]] = [{"name": "web", "depends_on": ["api"]}, {"name": "api"}, {"name": "jobs"}]
    both = [{"cluster": c, "namespace": namespace} for c in ("staging", "prod-1")]
    waves: list[dict[str, Any]] = [{"name": "all", "targets": both}]
    handle = await start(client, queue, train(namespace, "1.0", apps=apps, waves=waves))
    result = await handle.result()
    assert result.phase == Phase.SUCCEEDED, result.message

    spans: dict[str, dict[str, tuple[Any, Any]]] = {}
    for cluster in ("staging", "prod-1"):
        for app in ("api", "web", "jobs"):
            described = await client.get_workflow_handle(f"deploy/{cluster}/{namespace}/{app}").describe()
            assert described.close_time is not None
            spans.setdefault(cluster, {})[app] = (described.start_time, described.close_time)
        mine = spans[cluster]
        assert mine["api"][1] <= mine["web"][0], mine  # web only once api had succeeded there
        ordered = sorted(mine.values())
        assert all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:], strict=False)), mine  # never two at once
    # The limit is per cluster: the first releases of the two clusters ran side by side.
    (start_a, end_a), (start_b, end_b) = spans["staging"]["api"], spans["prod-1"]["api"]
    assert start_a < end_b and start_b < end_a, spans


async def test_pause_reaches_the_running_releases_which_stay_steerable_on_their_own(
    env: tuple[Client, str], clusters: dict[str, Simulator], namespace: str
) -> None:
    client, queue = env
    request = train(namespace, "1.0", waves=[{"name": "staging",
                                               "targets": [{"cluster": "staging", "namespace": namespace}]}])
    request.apps[0].release["promotion"] = {"mode": "manual"}
    handle = await start(client, queue, request)
    await wait_for(handle, lambda s: s.details["waves"][0]["releases"][0]["phase"] == "Running", "the release")
    child = client.get_workflow_handle(f"deploy/staging/{namespace}/web", result_type=DeploymentStatus)
    await started(child)
    await wait_for(child, lambda s: s.phase == Phase.WAITING_PROMOTION, "the release's own gate")

    await handle.execute_update("pause", {"reason": "change freeze"})
    await wait_for(child, lambda s: s.paused, "the pause relayed to the release")
    await handle.execute_update("resume")
    await wait_for(child, lambda s: not s.paused, "the resume relayed to the release")
    await child.execute_update("promote", {})  # the release's own gate, through its own id

    result = await handle.result()
    assert result.phase == Phase.SUCCEEDED, result.message
    assert serving(clusters["staging"], namespace) == "1.0"


async def test_a_failure_cancels_the_waves_other_releases_and_every_target_ends_on_the_old_version(
    env: tuple[Client, str], clusters: dict[str, Simulator], namespace: str
) -> None:
    client, queue = env
    await release_everywhere(client, queue, namespace, "1.0")
    everywhere = [{"cluster": c, "namespace": namespace} for c in clusters]
    async with registry_without(clusters["prod-1"], namespace, "2.0"):
        handle = await start(client, queue, train(namespace, "2.0", waves=[{"name": "all", "targets": everywhere}]))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    status = await handle.query("status", result_type=DeploymentStatus)
    phases = {r["cluster"]: r["phase"] for r in waves_of(status)["all"]["releases"]}
    assert phases["prod-1"] == "Failed"
    # The others were stopped while running (and rolled themselves back) or had succeeded (and were rolled back).
    assert {phases["staging"], phases["prod-2"]} <= {"Cancelled", "RolledBack"}, phases
    assert {c: serving(sim, namespace) for c, sim in clusters.items()} == dict.fromkeys(clusters, "1.0")


async def test_a_held_train_goes_on_with_the_next_wave_when_promoted(
    env: tuple[Client, str], clusters: dict[str, Simulator], namespace: str
) -> None:
    client, queue = env
    await release_everywhere(client, queue, namespace, "1.0")
    async with registry_without(clusters["prod-1"], namespace, "2.0"):
        handle = await start(client, queue, train(namespace, "2.0", on_failure="hold"))
        await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the hold after prod-1")
        await handle.execute_update("promote", {})
        result = await handle.result()
    assert result.phase == Phase.SUCCEEDED and "passed over after failing: prod-1" in result.message
    assert [w["phase"] for w in result.details["waves"]] == ["Promoted", "Failed", "Promoted"]
    assert {c: serving(sim, namespace) for c, sim in clusters.items()} == {
        "staging": "2.0", "prod-1": "1.0", "prod-2": "2.0"}


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # "coroutine ignored GeneratorExit"
async def test_a_train_carries_on_when_its_worker_goes_away_mid_wave(
    dev_env: WorkflowEnvironment, clusters: dict[str, Simulator], namespace: str
) -> None:
    # The dev server, which hands a run whose worker left to another worker at once, as production does.
    client, queue = dev_env.client, f"train-{uuid.uuid4().hex[:8]}"
    targets = [{"cluster": c, "namespace": namespace} for c in ("staging", "prod-1")]
    request = train(namespace, "1.0", waves=[{"name": "first", "targets": targets[:1], "approval": True},
                                             {"name": "second", "targets": targets[1:]}])
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(client, queue, executor=executor, max_concurrent_activities=8):
            handle = await start(client, queue, request)
            await wait_for(handle, lambda s: s.details["waves"][0]["releases"][0]["phase"] == "Running", "wave 1")
        # That worker has stopped, tearing its runs down; a new one knows the train only from its history.
        gc.collect()
        async with build_worker(client, queue, executor=executor, max_concurrent_activities=8):
            await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the approval after wave 1")
            await handle.execute_update("promote", {})
            result = await handle.result()
    assert result.phase == Phase.SUCCEEDED, result.message
    assert serving(clusters["staging"], namespace) == serving(clusters["prod-1"], namespace) == "1.0"


async def test_a_train_survives_constant_eviction_from_the_worker_cache(
    time_skipping_env: WorkflowEnvironment, clusters: dict[str, Simulator], namespace: str
) -> None:
    """One cached run for a train and its four releases at once: runs leave the cache all the time and the train's
    state (releases, semaphore waiters, the pause relay) is rebuilt from history."""
    client, queue = time_skipping_env.client, f"train-{uuid.uuid4().hex[:8]}"
    targets = [{"cluster": c, "namespace": namespace} for c in ("staging", "prod-1")]
    waves: list[dict[str, Any]] = [{"name": "w", "targets": targets}]
    request = train(namespace, "1.0", apps=[{"name": "web"}, {"name": "api"}], waves=waves,
                    max_concurrent_per_cluster=2)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with Worker(worker_client(client), task_queue=queue, workflows=ALL_WORKFLOWS, activities=ALL_ACTIVITIES,
                          activity_executor=executor, workflow_runner=workflow_runner(), max_cached_workflows=1,
                          max_concurrent_activities=16):
            result = await (await start(client, queue, request)).result()
    assert result.phase == Phase.SUCCEEDED, result.message
    assert {serving(clusters[c], namespace, app) for c in ("staging", "prod-1") for app in ("web", "api")} == {"1.0"}


async def test_a_canary_app_is_rolled_back_by_releasing_its_previous_version(
    env: tuple[Client, str], clusters: dict[str, Simulator], namespace: str
) -> None:
    client, queue = env
    apps: list[dict[str, Any]] = [{"name": "cart", "release": {"strategy": "canary", "steps": [{"set_weight": 50}]}}]
    assert (await (await start(client, queue, train(namespace, "1.0", apps=apps))).result()).phase == Phase.SUCCEEDED

    async with registry_without(clusters["prod-1"], namespace, "2.0"):
        handle = await start(client, queue, train(namespace, "2.0", apps=apps))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    stable = {c: sim.store.get(DEPLOYMENTS, namespace, "cart-stable") for c, sim in clusters.items()}
    versions = {c: d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] if d else None
                for c, d in stable.items()}
    assert versions == dict.fromkeys(clusters, "1.0")
    staging = waves_of(await handle.query("status", result_type=DeploymentStatus))["staging"]["releases"][0]
    assert (staging["phase"], staging["version"]) == ("RolledBack", "1.0")
