"""Blue-green end to end on the real Temporal dev server: users never hit a Service with no ready backend."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import WorkflowEnvironment

from deployflow.sim.server import Simulator
from deployflow.sim.traffic import NO_BACKEND
from deployflow.status import DeploymentStatus, Phase
from deployflow.temporal import DEPLOY_APP, DEPLOY_PHASE, DEPLOY_VERSION
from tests.bluegreen_support import bluegreen_request, cluster_view, running_worker, start


class UserTraffic:
    """Requests through the active Service from another thread for as long as the release runs."""

    def __init__(self, sim: Simulator, namespace: str, service: str) -> None:
        self.sim, self.namespace, self.service = sim, namespace, service
        self.served: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for version, count in self.sim.send_requests(self.namespace, f"service/{self.service}", 25).items():
                self.served[version] = self.served.get(version, 0) + count
            self._stop.wait(0.01)

    def __enter__(self) -> UserTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


async def test_switch_under_traffic_never_leaves_users_without_a_backend(
    dev_env: WorkflowEnvironment, sim: Simulator, kubeconfig: str, namespace: str
) -> None:
    client = dev_env.client
    async with running_worker(client) as queue:
        first = await start(client, queue, bluegreen_request(namespace, "1.0", standby="0s"))
        assert (await first.result()).phase == Phase.SUCCEEDED

        with UserTraffic(sim, namespace, "web") as traffic:
            handle = await start(client, queue, bluegreen_request(namespace, "2.0", standby="2s"))
            status: DeploymentStatus = await handle.result()
            await asyncio.sleep(0.2)  # a few more requests after blue is gone

        assert status.phase == Phase.SUCCEEDED
        view = cluster_view(namespace)
        assert view.color_of("web") == "green" and view.replicas == {"blue": 0, "green": 2}
        # Users were served by both versions across the switch, and not one request found no ready pod.
        assert traffic.served.get("1.0", 0) > 0 and traffic.served.get("2.0", 0) > 0, traffic.served
        assert sim.no_backend_requests(namespace=namespace) == 0
        assert NO_BACKEND not in traffic.served and set(traffic.served) <= {"1.0", "2.0"}, traffic.served

        # The UI can find the release by its search attributes, and shows what happened.
        description = await handle.describe()
        attributes = description.typed_search_attributes
        assert attributes.get(DEPLOY_APP) == "web"
        assert attributes.get(DEPLOY_PHASE) == "Succeeded"
        assert attributes.get(DEPLOY_VERSION) == "2.0"
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert "**Succeeded**" in metadata.current_details and "`2.0` (previous `1.0`)" in metadata.current_details
        controls = {"pause", "resume", "abort", "promote", "approve", "rollback"}
        assert controls <= {d.name for d in metadata.definition.signal_definitions}
        assert controls <= {d.name for d in metadata.definition.update_definitions}
        assert "status" in {d.name for d in metadata.definition.query_definitions}


@pytest.fixture(autouse=True)
def _needs_traffic(sim: Simulator) -> None:
    if sim.traffic is None:
        pytest.skip("the simulator runs without its traffic model")
