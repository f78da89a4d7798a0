"""Release trains against three simulated clusters (staging, prod-1, prod-2): the spec; waves in order with soak,
analysis and approval; a version prod-1 cannot pull stopping wave 2 (rolled back, or held); abort; depends_on and
the per-cluster limit; pause relayed to the releases; a worker stopping mid-wave; `deployflow dev --clusters`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import ALL_ACTIVITIES
from deployflow.dev import DevPorts, cluster_names, port_in_use
from deployflow.errors import ErrorType
from deployflow.sim.controllers.lifecycle import IMAGE_PULL_ERROR, READY_DELAY
from deployflow.sim.resources import DEPLOYMENTS, NAMESPACES, PODS, SERVICES
from deployflow.sim.server import Simulator
from deployflow.sim.store import StoreError
from deployflow.spec import describe_validation_error, parse_spec
from deployflow.spec.train import TrainRequest
from deployflow.status import DeploymentStatus, Phase
from tests.bluegreen_support import running_worker, wait_for
from tests.test_dev_stack import READY_TIMEOUT, deployflow_cmd, wait_until
from worker import build_worker, worker_client, workflow_runner
from workflows import ALL_WORKFLOWS
from workflows.train import ReleaseTrain

WAVES = [("staging", ["staging"]), ("prod-1", ["prod-1"]), ("prod-2", ["prod-2"])]


def train(namespace: str, version: str, *, apps: list[dict[str, Any]] | None = None,
          waves: list[dict[str, Any]] | None = None, **fields: Any) -> TrainRequest:
    """A train of blue-green releases (or an app's own `release` template) of `web` (or `apps`), one wave per
    cluster unless `waves` says otherwise."""
    apps = apps or [{"name": "web"}]
    return TrainRequest.model_validate({
        "strategy": "train", "name": f"shop-{namespace}", "version": version,
        "apps": [{"name": a["name"], "depends_on": a.get("depends_on", []), "release": {
            **a.get("release", {"strategy": "blue-green", "standby": "0s"}),
            # Pods become ready a moment after they start, long enough for a registry to refuse them first.
            "workload": {"image": f"registry.example.com/shop/{a['name']}:{version}", "replicas": 1,
                         "pod_annotations": {READY_DELAY: "10"}},
        }} for a in apps],
        "waves": waves or [{"name": name, "targets": [{"cluster": c, "namespace": namespace} for c in targets]}
                           for name, targets in WAVES],
        **fields,
    })


async def start(client: Client, queue: str, request: TrainRequest) -> WorkflowHandle[Any, DeploymentStatus]:
    return await client.start_workflow(ReleaseTrain.run, request, id=request.workflow_id(), task_queue=queue)


def serving(sim: Simulator, namespace: str, app: str = "web") -> str | None:
    """The version the app's Service sends users to in one cluster (None: no release yet)."""
    service = sim.store.get(SERVICES, namespace, app)
    if service is None:
        return None
    color = service["spec"]["selector"].get("deployflow.io/color")
    deployment = sim.store.get(DEPLOYMENTS, namespace, f"{app}-{color}")
    assert deployment is not None
    return str(deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"])


def waves_of(status: DeploymentStatus) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in status.details["waves"]}


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


@contextlib.asynccontextmanager
async def registry_without(sim: Simulator, namespace: str, version: str) -> AsyncIterator[None]:
    """This cluster's registry lacks `version`: its pods fail to pull the image (as the kubelet would report)."""

    async def refuse() -> None:
        while True:
            for pod in sim.store.list(PODS, namespace):
                labels, annotations = pod["metadata"].get("labels") or {}, pod["metadata"].get("annotations") or {}
                if labels.get("app.kubernetes.io/version") == version and IMAGE_PULL_ERROR not in annotations:
                    pod["metadata"]["annotations"] = {**annotations, IMAGE_PULL_ERROR: "true"}
                    with contextlib.suppress(StoreError):
                        sim.store.update(PODS, pod, check_rv=False)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(refuse())
    try:
        yield
    finally:
        task.cancel()


async def release_everywhere(client: Client, queue: str, namespace: str, version: str) -> None:
    result = await (await start(client, queue, train(namespace, version))).result()
    assert result.phase == Phase.SUCCEEDED, result.message


async def started(handle: WorkflowHandle[Any, Any]) -> None:
    """Until the server knows the workflow (a child starts a moment after its parent asked for it)."""
    for _ in range(600):
        with contextlib.suppress(RPCError):
            await handle.describe()
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} never started")


# --- the spec ---------------------------------------------------------------------------------------------------


def _spec(**changes: Any) -> dict[str, Any]:
    doc = train("shop", "2.0", apps=[{"name": "api"}, {"name": "web", "depends_on": ["api"]}]).model_dump(
        mode="json", exclude_unset=True)
    return {**doc, **changes}


@pytest.mark.parametrize(("change", "named"), [
    ({"apps": [{**_spec()["apps"][0], "depends_on": ["web"]}, _spec()["apps"][1]]}, "apps.depends_on: a cycle"),
    ({"apps": [{**_spec()["apps"][0], "depends_on": ["db"]}]}, "apps.0.depends_on: unknown apps ['db']"),
    ({"apps": [{"name": "web", "release": {**_spec()["apps"][0]["release"], "target": {"cluster": "x"}}}]},
     "apps.0.release: target: ['cluster'] are set by the train"),
    ({"apps": [{"name": "web", "release": {"strategy": "blue-green", "workload": {"image": "BAD"}}}]},
     "apps.0.release (in waves.0.targets.0): workload.image"),
    ({"waves": [{"name": "prod", "targets": []}]}, "waves.0.targets"),
    ({"max_concurrent_per_cluster": 0}, "max_concurrent_per_cluster"),
    ({"waves": [{"name": f"w{i}", "targets": [{"cluster": f"c{j}", "namespace": "shop"} for j in range(50)]}
                for i in range(6)]}, "600 releases (apps x targets); a train makes at most 500"),
])
def test_a_bad_train_is_refused_naming_the_field(change: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as err:
        TrainRequest.model_validate(_spec(**change))
    assert named in describe_validation_error(err.value)


def test_train_is_a_strategy_whose_apps_run_in_dependency_order() -> None:
    spec = parse_spec(_spec())
    assert isinstance(spec, TrainRequest) and spec.workflow_id() == "train/shop-shop"
    assert spec.order() == ["api", "web"]
    back = spec.apps[1].previous_release("prod-1", "shop", "1.0")
    assert back.workload.image == "registry.example.com/shop/web:1.0"  # type: ignore[attr-defined]
    assert back.target.workflow_id() == "deploy/prod-1/shop/web"  # type: ignore[attr-defined]


# --- runs -------------------------------------------------------------------------------------------------------


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


# --- several clusters on a laptop -------------------------------------------------------------------------------


def test_dev_stack_runs_one_simulator_per_cluster_in_one_kubeconfig(tmp_path: Path) -> None:
    ports = DevPorts.free()
    while port_in_use("127.0.0.1", ports.sim + 1) or ports.sim + 1 in (ports.temporal, ports.ui):
        ports = DevPorts.free()
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [*deployflow_cmd(), "dev", "--clusters", "staging,prod-1", "--no-prometheus",
         "--temporal-port", str(ports.temporal), "--ui-port", str(ports.ui), "--sim-port", str(ports.sim),
         "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        wait_until(lambda: (state / "worker.log").exists() and "worker polling" in (state / "worker.log").read_text(),
                   READY_TIMEOUT, proc, "the worker polling")
        kubeconfig = yaml.safe_load((state / "kubeconfig").read_text())
        servers = {c["name"]: c["cluster"]["server"] for c in kubeconfig["clusters"]}
        assert [c["name"] for c in kubeconfig["contexts"]] == ["staging", "prod-1"]
        assert servers == {"staging": f"http://127.0.0.1:{ports.sim}", "prod-1": f"http://127.0.0.1:{ports.sim + 1}"}
        for context in ("staging", "prod-1"):
            api = kube_client.CoreV1Api(kube_config.new_client_from_config(str(state / "kubeconfig"), context=context))
            names = {ns.metadata.name for ns in api.list_namespace().items if ns.metadata}
            assert "demo" in names  # each cluster got its own
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "context staging" in out and "context prod-1" in out


def test_dev_refuses_a_bad_cluster_list(tmp_path: Path) -> None:
    result = subprocess.run([*deployflow_cmd(), "dev", "--clusters", "a,a"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and "--clusters" in result.stdout + result.stderr
    assert cluster_names("3") == ("sim", "sim-2", "sim-3")


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
