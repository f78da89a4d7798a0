"""Records the histories the replay test checks (tests/histories/), one or more per strategy and outcome.

    .venv/bin/python -m tests.record_histories canary_ rolling_   # only the scenarios whose names contain these

Without arguments every scenario is recorded again.

Runs each scenario on the time-skipping test server against an in-process simulator and writes the event history
as `temporal workflow show -o json` would. Re-record only on purpose: the point of the committed histories is that
workflow code changes must still replay the runs already in flight (use `workflow.patched` when they cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from deployflow import kube
from deployflow.sim.config import SimConfig
from deployflow.sim.controllers.pods import CRASH_LOOP
from deployflow.sim.server import Simulator
from deployflow.spec.canary import CanaryRequest
from deployflow.spec.control import AbortRequest, PromoteRequest, RollbackRequest
from deployflow.spec.train import TrainRequest
from deployflow.status import DeploymentStatus, Phase
from deployflow.temporal import register_search_attributes, test_server_path
from tests import rolling_support as rolling
from tests.bluegreen_support import bluegreen_request, running_worker, start, wait_for
from tests.http_support import json_server
from tests.train_support import train as train_request
from workflows.canary import CanaryDeployment
from workflows.rolling import RollingDeployment
from workflows.train import ReleaseTrain

HISTORIES = Path(__file__).parent / "histories"


@dataclass
class Run:
    """What a scenario gets: the server, a worker's queue, a fresh namespace, the simulator, a metric endpoint."""

    client: Client
    queue: str
    namespace: str
    sim: Simulator
    # `<metrics>/<rate>/<version>` answers {"data": {"error_rate": <rate>}}: each spec picks the rate it needs.
    metrics: str


Scenario = Callable[[Run], Awaitable[WorkflowHandle[Any, Any]]]


# ---- blue-green (the first recorded set; the scenarios are unchanged since) ------------------------------------


async def _deploy_v1(client: Client, queue: str, namespace: str) -> None:
    await (await start(client, queue, bluegreen_request(namespace, "1.0"))).result()


async def happy_path(run: Run) -> WorkflowHandle[Any, Any]:
    """v1 live, v2 deployed, smoke-tested, switched, an hour of standby, blue retired."""
    client, queue, namespace = run.client, run.queue, run.namespace
    await _deploy_v1(client, queue, namespace)
    handle = await start(client, queue, bluegreen_request(namespace, "2.0"))
    await handle.result()
    return handle


async def rollback_in_standby(run: Run) -> WorkflowHandle[Any, Any]:
    client, queue, namespace = run.client, run.queue, run.namespace
    await _deploy_v1(client, queue, namespace)
    handle = await start(client, queue, bluegreen_request(namespace, "2.0"))
    await wait_for(handle, lambda s: s.phase == Phase.STANDBY, "standby")
    await handle.execute_update("rollback", RollbackRequest(reason="errors after the switch"))
    return handle


async def abort_at_gate(run: Run) -> WorkflowHandle[Any, Any]:
    client, queue, namespace = run.client, run.queue, run.namespace
    await _deploy_v1(client, queue, namespace)
    handle = await start(client, queue, bluegreen_request(namespace, "2.0", promotion={"mode": "manual"}))
    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the manual gate")
    await handle.signal("pause")
    await handle.execute_update("abort", AbortRequest(reason="found a bug in QA"), result_type=DeploymentStatus)
    return handle


# ---- canary -----------------------------------------------------------------------------------------------------


def canary_request(run: Run, version: str, **fields: Any) -> CanaryRequest:
    return CanaryRequest.model_validate(
        {
            "target": {"cluster": "sim", "namespace": run.namespace, "app": "web"},
            "workload": {"image": f"registry.example.com/web:{version}", "replicas": 4},
            **fields,
        }
    )


def error_rate(run: Run, rate: float) -> dict[str, Any]:
    return {"kind": "web", "url": f"{run.metrics}/{rate}/{{{{ args.version }}}}", "json_path": "$.data.error_rate"}


async def start_canary(run: Run, request: CanaryRequest) -> WorkflowHandle[Any, Any]:
    return await run.client.start_workflow(
        CanaryDeployment.run, request, id=request.target.workflow_id(), task_queue=run.queue
    )


async def _canary_v1(run: Run) -> None:
    """The first deployment puts v1 on the stable track: there is nothing to compare a canary against before."""
    await (await start_canary(run, canary_request(run, "v1"))).result()


async def canary_promoted(run: Run) -> WorkflowHandle[Any, Any]:
    """20% until promoted by hand, a timed pause, an analysis that passes, 50%, then promotion."""
    await _canary_v1(run)
    steps = [
        {"set_weight": 20},
        {"pause": {}},
        {"pause": {"duration": "5m"}},
        {"analysis": {"metrics": [{
            "name": "error_rate", "provider": error_rate(run, 0.001), "count": 2, "interval": "30s",
            "success_condition": "result < 0.01", "failure_condition": "result > 0.05",
        }]}},
        {"set_weight": 50},
    ]
    handle = await start_canary(run, canary_request(run, "v2", steps=steps))
    # The manual pause comes before any timer: the time-skipping server only skips while a result is awaited.
    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the manual pause")
    await handle.execute_update("promote", PromoteRequest())
    await handle.result()
    return handle


async def canary_analysis_rollback(run: Run) -> WorkflowHandle[Any, Any]:
    """Stages: the canary's error rate is over the limit at the first stage, so traffic goes back to v1."""
    await _canary_v1(run)
    stages = [
        {"weight": 10, "duration": "1m", "max_error_rate": 0.02},
        {"weight": 50, "duration": "1m", "max_error_rate": 0.02},
    ]
    request = canary_request(
        run, "v2", stages=stages, error_rate={"provider": error_rate(run, 0.183), "interval": "30s"}
    )
    return await start_canary(run, request)


async def canary_abort_at_pause(run: Run) -> WorkflowHandle[Any, Any]:
    await _canary_v1(run)
    handle = await start_canary(run, canary_request(run, "v2", steps=[{"set_weight": 20}, {"pause": {}}]))
    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the pause")
    await handle.execute_update("abort", AbortRequest(reason="bad dashboards"), result_type=DeploymentStatus)
    return handle


# ---- rolling ----------------------------------------------------------------------------------------------------


async def _rolling_start(run: Run, **fields: Any) -> WorkflowHandle[Any, Any]:
    rolling.create_deployment(run.namespace, replicas=4)
    await rolling.wait_ready(run.sim, run.namespace, 4)
    request = rolling.request(run.namespace, **fields)
    return await run.client.start_workflow(
        RollingDeployment.run, request, id=request.target.workflow_id(), task_queue=run.queue
    )


async def rolling_batches(run: Run) -> WorkflowHandle[Any, Any]:
    """Four pods one batch at a time, surge one, none unavailable, each batch checked ready before the next."""
    ready = {"metrics": [{
        "name": "ready", "provider": {"kind": "kubernetes", "measure": "ready-ratio"},
        "success_condition": "result >= 1",
    }]}
    handle = await _rolling_start(run, batch_size=1, max_surge=1, max_unavailable=0, analysis=ready)
    await handle.result()
    return handle


async def rolling_crash_loop_rollback(run: Run) -> WorkflowHandle[Any, Any]:
    """The first batch's pods crash-loop: the health gate fails and the recorded revision is restored."""
    return await _rolling_start(run, batch_size=2, pod_annotations={CRASH_LOOP: "true"})


async def rolling_abort_mid_rollout(run: Run) -> WorkflowHandle[Any, Any]:
    """Paused after the first batch, then aborted: the revision recorded before the rollout is restored."""
    handle = await _rolling_start(run, batch_size=1)
    await rolling.wait_step(handle, "batch 1/4")
    await handle.signal("pause")
    await rolling.wait_phase(handle, Phase.PAUSED)
    await handle.execute_update("abort", AbortRequest(reason="wrong build"))
    return handle


# ---- release train (one simulated cluster, a wave per namespace) -------------------------------------------------


def _train(run: Run, version: str, *, second: bool = True, approval: bool = False) -> TrainRequest:
    """Wave `a` in the run's namespace, then wave `b` in `<namespace>-b` (missing unless created)."""
    waves: list[dict[str, Any]] = [{"name": "a", "targets": [{"cluster": "sim", "namespace": run.namespace}],
                                    "approval": approval}]
    if second:
        waves.append({"name": "b", "targets": [{"cluster": "sim", "namespace": f"{run.namespace}-b"}],
                      "soak": {"duration": "10m"}})
    return train_request(run.namespace, version, waves=waves)


async def _start_train(run: Run, request: TrainRequest) -> WorkflowHandle[Any, Any]:
    return await run.client.start_workflow(ReleaseTrain.run, request, id=request.workflow_id(), task_queue=run.queue)


async def train_promoted(run: Run) -> WorkflowHandle[Any, Any]:
    """Two waves: an approval after the first, a soak after the second."""
    run.sim.create_namespace(f"{run.namespace}-b")
    handle = await _start_train(run, _train(run, "1.0", approval=True))
    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the approval after wave a")
    await handle.execute_update("promote", PromoteRequest())
    await handle.result()
    return handle


async def train_rollback(run: Run) -> WorkflowHandle[Any, Any]:
    """1.0 in wave a; then 2.0, whose wave b names a namespace that does not exist: wave a goes back to 1.0."""
    await (await _start_train(run, _train(run, "1.0", second=False))).result()
    return await _start_train(run, _train(run, "2.0"))


async def train_abort(run: Run) -> WorkflowHandle[Any, Any]:
    await (await _start_train(run, _train(run, "1.0", second=False))).result()
    handle = await _start_train(run, _train(run, "2.0", approval=True))
    await wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the approval after wave a")
    await handle.execute_update("abort", AbortRequest(reason="release freeze"))
    return handle


SCENARIOS: dict[str, Scenario] = {
    "bluegreen_happy_path": happy_path,
    "bluegreen_rollback_in_standby": rollback_in_standby,
    "bluegreen_abort_at_gate": abort_at_gate,
    "canary_promoted": canary_promoted,
    "canary_analysis_rollback": canary_analysis_rollback,
    "canary_abort_at_pause": canary_abort_at_pause,
    "rolling_batches": rolling_batches,
    "rolling_crash_loop_rollback": rolling_crash_loop_rollback,
    "rolling_abort_mid_rollout": rolling_abort_mid_rollout,
    "train_promoted": train_promoted,
    "train_rollback": train_rollback,
    "train_abort": train_abort,
}


def metric_endpoint() -> contextlib.AbstractContextManager[str]:
    """Answers `/<rate>/<version>` with that rate, so a recorded spec says in its URL what its metric reads."""
    return json_server(lambda path, _headers: (200, {"data": {"error_rate": float(path.strip("/").split("/")[0])}}))


async def record(only: list[str]) -> None:
    chosen = {name: s for name, s in SCENARIOS.items() if not only or any(word in name for word in only)}
    if not chosen:
        raise SystemExit(f"no scenario matches {only}; known: {', '.join(SCENARIOS)}")
    sim = Simulator(SimConfig(time_factor=20.0, ready_delay_seconds=1.0))
    sim.start_in_thread()
    with tempfile.TemporaryDirectory() as tmp, metric_endpoint() as metrics:
        kubeconfig = sim.write_kubeconfig(os.path.join(tmp, "config"), context="sim")
        os.environ["KUBECONFIG"] = kubeconfig
        kube.reset_clients()
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=test_server_path(), data_converter=pydantic_data_converter
        )
        try:
            await register_search_attributes(env.client)
            async with running_worker(env.client) as queue:
                HISTORIES.mkdir(exist_ok=True)
                index_file = HISTORIES / "index.json"
                # Histories not recorded this time keep their entries.
                index: dict[str, str] = json.loads(index_file.read_text()) if index_file.exists() else {}
                for name, scenario in chosen.items():
                    namespace = f"r-{uuid.uuid4().hex[:8]}"
                    sim.create_namespace(namespace)
                    handle = await scenario(Run(env.client, queue, namespace, sim, metrics))
                    # Rollbacks and aborts end failed, as they should.
                    with contextlib.suppress(WorkflowFailureError):
                        await handle.result()
                    history = await handle.fetch_history()
                    (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")
                    index[f"{name}.json"] = handle.id
                    print(f"recorded {name}: {len(history.events)} events")
                index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        finally:
            await env.shutdown()
            sim.stop()


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1:]))
