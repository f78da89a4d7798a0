"""The deployflow worker: runs every deployment workflow and activity on the `deployments` task queue.

    python worker.py

Temporal connection from the same variables the temporal CLI reads (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH / TEMPORAL_TLS_SERVER_CA_CERT_PATH), the task queue from
DEPLOYFLOW_TASK_QUEUE. Clusters are kubeconfig contexts (KUBECONFIG) or `in-cluster` (the worker's service account).
SIGTERM or SIGINT stops polling and gives running activities DEPLOYFLOW_SHUTDOWN_SECONDS (default 30) to finish;
workflows lose nothing, they continue on another worker.

Tuning: DEPLOYFLOW_MAX_CONCURRENT_ACTIVITIES (default 200), DEPLOYFLOW_MAX_CONCURRENT_WORKFLOW_TASKS (100),
DEPLOYFLOW_MAX_CACHED_WORKFLOWS (1000): see WorkerTuning and the scale figures in the README.

Metrics: deployflow's own on http://<host>:$DEPLOYFLOW_METRICS_PORT/metrics (default 9464) and the Temporal SDK's
`temporal_*` metrics on $DEPLOYFLOW_SDK_METRICS_PORT (default 9465); 0 turns either off (deployflow/metrics.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pydantic
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.converter import DefaultFailureConverter, PayloadConverter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import ServiceClient
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import ALL_ACTIVITIES
from deployflow import metrics
from deployflow.errors import ErrorType
from deployflow.spec.common import describe_validation_error
from deployflow.temporal import DEFAULT_TASK_QUEUE, ConnectionSettings, connect
from workflows import ALL_WORKFLOWS
from workflows.failure import failure as spec_failure

log = logging.getLogger("deployflow.worker")

# Activities heartbeat about once a second; sending heartbeats that often means a cancel (abort, UI cancel) reaches
# a waiting activity within about a second instead of after most of its heartbeat timeout.
HEARTBEAT_THROTTLE = timedelta(seconds=1)


class SpecFailureConverter(DefaultFailureConverter):
    """Reports a payload that does not validate as `InvalidSpec`, one line per field, never to be retried.

    A workflow started from the temporal CLI or the UI with a bad spec fails while its input is decoded, before any
    workflow code runs; this gives that failure the same type and wording as the workflow's own checks.
    """

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        if isinstance(exception, pydantic.ValidationError):
            title = exception.title
            invalid = spec_failure(f"invalid {title}: {describe_validation_error(exception)}", ErrorType.INVALID_SPEC)
            invalid.__traceback__ = exception.__traceback__
            exception = invalid
        super().to_failure(exception, payload_converter, failure)


def worker_client(client: Client) -> Client:
    """The same connection, with failures of bad input reported as `InvalidSpec` (see SpecFailureConverter)."""
    config = client.config()
    config["data_converter"] = dataclasses.replace(
        config["data_converter"], failure_converter_class=SpecFailureConverter
    )
    return Client(**config)


# Passed through the workflow sandbox: the third-party libraries the models are built on, and the model modules
# themselves, whose classes must be the same inside and outside (pydantic checks instances by class). Everything
# else the workflows import, the project's own workflow code above all, is imported again inside the sandbox, so
# the sandbox checks it for non-determinism. Activity references are passed through where a workflow module
# imports them, in its `imports_passed_through()` block.
SANDBOX_PASSTHROUGH = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_inspection",
    "jsonpath_ng",
    "deployflow.spec",
    "deployflow.status",
    "deployflow.errors",
    # Metric objects live in the process's one registry: a copy per sandbox would register them again.
    "prometheus_client",
    "deployflow.metrics",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox with only models and third-party libraries passed through (see SANDBOX_PASSTHROUGH)."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
    )


@dataclasses.dataclass(frozen=True)
class WorkerTuning:
    """How much one worker process takes on at once. The defaults suit a few hundred concurrent releases per process
    (bench/scale.py measures them); raise the workflow-task limit and the cache together for more."""

    max_concurrent_activities: int = 200
    max_concurrent_workflow_tasks: int = 100
    max_cached_workflows: int = 1000

    @classmethod
    def from_env(cls) -> WorkerTuning:
        def number(name: str, default: int) -> int:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < 1:
                raise SystemExit(f"{name} must be a whole number of at least 1, got {raw!r}")
            return int(raw)

        return cls(
            max_concurrent_activities=number("DEPLOYFLOW_MAX_CONCURRENT_ACTIVITIES", cls.max_concurrent_activities),
            max_concurrent_workflow_tasks=number(
                "DEPLOYFLOW_MAX_CONCURRENT_WORKFLOW_TASKS", cls.max_concurrent_workflow_tasks
            ),
            max_cached_workflows=number("DEPLOYFLOW_MAX_CACHED_WORKFLOWS", cls.max_cached_workflows),
        )


def build_worker(
    client: Client,
    task_queue: str = DEFAULT_TASK_QUEUE,
    *,
    executor: ThreadPoolExecutor,
    max_concurrent_activities: int = 32,
    shutdown_timeout: timedelta = timedelta(seconds=30),
    max_cached_workflows: int = 1000,
    max_concurrent_workflow_tasks: int = 100,
    identity: str | None = None,
) -> Worker:
    """The worker with every registered workflow and activity; tests build theirs here too. A small
    `max_cached_workflows` evicts runs constantly: the durability tests use it to exercise eviction."""
    return Worker(
        worker_client(client),
        task_queue=task_queue,
        # Each registry line is added by the strategy that needs it; two strategies may list one activity.
        workflows=list(dict.fromkeys(ALL_WORKFLOWS)),
        activities=list(dict.fromkeys(ALL_ACTIVITIES)),
        activity_executor=executor,
        workflow_runner=workflow_runner(),
        max_concurrent_activities=max_concurrent_activities,
        graceful_shutdown_timeout=shutdown_timeout,
        max_cached_workflows=max_cached_workflows,
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        identity=identity,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )


def sdk_runtime(port: int) -> Runtime | None:
    """A Temporal runtime serving the SDK's own metrics (task latencies, slots, polls) on `port`; None for 0 or when
    the port cannot be bound (logged: a worker without metrics still deploys)."""
    if port == 0:
        return None
    try:
        prometheus = PrometheusConfig(bind_address=f"0.0.0.0:{port}", durations_as_seconds=True)
        return Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    except Exception as err:  # the core reports a taken port as a generic error
        log.error("SDK metrics not served: port %d: %s (set %s, 0 disables)", port, err, metrics.SDK_METRICS_PORT_ENV)
        return None


async def with_runtime(client: Client, runtime: Runtime | None) -> Client:
    """The same connection settings on `runtime`: a worker's SDK metrics come from the runtime of its client."""
    if runtime is None:
        return client
    config = client.config()
    config["service_client"] = await ServiceClient.connect(
        dataclasses.replace(client.service_client.config, runtime=runtime)
    )
    return Client(**config)


async def run_worker(
    client: Client,
    task_queue: str = DEFAULT_TASK_QUEUE,
    stop_event: asyncio.Event | None = None,
    *,
    tuning: WorkerTuning | None = None,
    shutdown_timeout: timedelta = timedelta(seconds=30),
    identity: str | None = None,
    metrics_port: int | None = None,
    sdk_metrics_port: int | None = None,
) -> None:
    """Runs the worker until `stop_event` is set (forever without one). `deployflow dev` runs it in-process.

    `tuning` None reads DEPLOYFLOW_MAX_CONCURRENT_ACTIVITIES, DEPLOYFLOW_MAX_CONCURRENT_WORKFLOW_TASKS and
    DEPLOYFLOW_MAX_CACHED_WORKFLOWS (see WorkerTuning).

    `identity` names the worker in histories (the client's, `pid@host`, when None). Serves the metrics on
    `metrics_port` and the SDK's on `sdk_metrics_port` (None: from the environment, see the module docstring; 0: not
    served)."""
    if metrics_port is None:
        metrics_port = metrics.port_from_env(metrics.METRICS_PORT_ENV, metrics.DEFAULT_METRICS_PORT)
    if sdk_metrics_port is None:
        sdk_metrics_port = metrics.port_from_env(metrics.SDK_METRICS_PORT_ENV, metrics.DEFAULT_SDK_METRICS_PORT)
    client = await with_runtime(client, sdk_runtime(sdk_metrics_port))
    server = metrics.serve(metrics_port)
    tuning = tuning or WorkerTuning.from_env()
    # Waits are async and hold no thread; the pool serves the activities that call the Kubernetes client directly.
    executor = ThreadPoolExecutor(max_workers=tuning.max_concurrent_activities, thread_name_prefix="activity")
    # Async activities run the official client's blocking calls through asyncio.to_thread, whose default pool has
    # cpu+4 threads: with hundreds of releases at once a call could queue past its activity's heartbeat timeout.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=tuning.max_concurrent_activities, thread_name_prefix="kube")
    )
    try:
        worker = build_worker(
            client,
            task_queue,
            executor=executor,
            max_concurrent_activities=tuning.max_concurrent_activities,
            max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
            max_cached_workflows=tuning.max_cached_workflows,
            shutdown_timeout=shutdown_timeout,
            identity=identity,
        )
        if stop_event is None:
            await worker.run()
            return
        async with worker:
            log.info("worker polling %s on %s", task_queue, client.namespace)
            await stop_event.wait()
            log.info("worker stopping: finishing running activities")
    finally:
        # The worker has already waited (graceful shutdown) and cancelled what still ran; joining threads here
        # would block the event loop of a process that hosts more than the worker (`deployflow dev`).
        executor.shutdown(wait=False, cancel_futures=True)
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]


async def main() -> None:
    logging.basicConfig(level=os.environ.get("DEPLOYFLOW_LOG_LEVEL", "INFO"))
    settings = ConnectionSettings.from_env()
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shutdown = timedelta(seconds=float(os.environ.get("DEPLOYFLOW_SHUTDOWN_SECONDS", "30")))
    log.info("connected to %s namespace %s", settings.address, settings.namespace)
    await run_worker(client, settings.task_queue, stop, shutdown_timeout=shutdown)


if __name__ == "__main__":
    asyncio.run(main())
