"""A target that cannot exist fails the run at once, naming what is missing, with nothing changed in the cluster.

A namespace or a kubeconfig context that is not there will not appear by retrying: the run must not back off and
retry for minutes before saying so.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from kubernetes.client.exceptions import ApiException
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities._errors import as_activity_errors
from activities.services import SwitchServiceInput, switch_service
from activities.workloads import ApplyWorkloadInput, apply_workload
from deployflow.sim.resources import ALL, NAMESPACES
from deployflow.sim.server import Simulator
from deployflow.spec.common import Target, Workload
from deployflow.status import DeploymentStatus, Phase
from tests.bluegreen_support import bluegreen_request, cluster_view, running_worker, start

pytestmark = pytest.mark.usefixtures("kubeconfig")


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str]]:
    async with running_worker(time_skipping_env.client) as task_queue:
        yield time_skipping_env.client, task_queue


async def activity_attempts(handle: WorkflowHandle[object, object]) -> list[int]:
    """The attempt number of every activity the run started: [1, ...] when nothing was retried."""
    return [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


async def test_missing_namespace_fails_at_once_naming_it(env: tuple[Client, str], sim: Simulator) -> None:
    missing = f"t-missing-{uuid.uuid4().hex[:6]}"
    client, queue = env
    handle = await start(client, queue, bluegreen_request(missing, "1.0"))

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == "NamespaceNotFound" and cause.non_retryable
    assert f"namespace {missing!r} does not exist in cluster 'sim'" in cause.message, cause.message
    assert cause.message.endswith("nothing in the cluster was changed"), cause.message
    assert await activity_attempts(handle) == [1]  # the snapshot, once: not retried, and nothing after it
    status = await handle.query("status", result_type=DeploymentStatus)
    assert status.phase == Phase.FAILED and missing in status.message
    # Nothing was written: not the namespace, not a Deployment or Service in it.
    assert sim.store.get(NAMESPACES, None, missing) is None
    assert [r.plural for r in ALL if r.namespaced and sim.store.list(r, missing)] == []


async def test_unknown_cluster_fails_at_once_listing_the_contexts(env: tuple[Client, str], namespace: str) -> None:
    client, queue = env
    request = bluegreen_request(namespace, "1.0", target={"cluster": "prod-eu", "namespace": namespace, "app": "web"})
    handle = await start(client, queue, request)

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == "ClusterNotFound" and cause.non_retryable
    assert "cluster 'prod-eu'" in cause.message and "(available: sim)" in cause.message, cause.message
    assert cause.message.endswith("nothing in the cluster was changed"), cause.message
    assert await activity_attempts(handle) == [1]
    view = cluster_view(namespace)
    assert view.replicas == {"blue": None, "green": None}
    assert view.selectors == {"web": None, "web-preview": None}


async def test_writes_into_a_namespace_deleted_meanwhile_are_not_retried(sim: Simulator) -> None:
    """The snapshot saw the namespace, then it went: the write that finds it gone fails for good, saying so."""
    missing = f"t-gone-{uuid.uuid4().hex[:6]}"
    target = Target(cluster="sim", namespace=missing, app="web")
    apply = ApplyWorkloadInput(target=target, name="web-blue", workload=Workload(image="web:1.0"), replicas=1,
                               selector={"app": "web"})
    with pytest.raises(ApplicationError) as applied:
        await ActivityEnvironment().run(apply_workload, apply)
    switch = SwitchServiceInput(target=target, service="web", selector={"app": "web"})
    with pytest.raises(ApplicationError) as switched:
        await ActivityEnvironment().run(switch_service, switch)
    for err in (applied.value, switched.value):
        assert err.type == "NamespaceNotFound" and err.non_retryable
        assert f"namespace {missing!r} does not exist in cluster 'sim'" in err.message, err.message
    assert [r.plural for r in ALL if r.namespaced and sim.store.list(r, missing)] == []


def test_refused_calls_in_a_namespace_say_it_may_not_exist() -> None:
    """With RoleBindings per namespace, a namespace that does not exist answers 403 to everything, not 404."""
    target = Target(cluster="prod-eu", namespace="shop", app="web")
    with pytest.raises(ApplicationError) as refused, as_activity_errors("read live state", target):
        raise ApiException(status=403, reason="Forbidden")
    assert refused.value.type == "Forbidden" and refused.value.non_retryable
    assert "namespace 'shop' of cluster 'prod-eu'" in refused.value.message, refused.value.message
    assert "a namespace that does not exist" in refused.value.message
