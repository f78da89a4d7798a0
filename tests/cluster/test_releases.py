"""Each strategy end to end against a real cluster: blue-green, canary (replicas router, and gateway-api when the
Gateway API CRDs are installed) and rolling, with the production worker in the test process on the Temporal dev
server. The images are public and small (nginx), so a fresh kind cluster can pull them."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from temporalio.testing import WorkflowEnvironment

from deployflow import kube
from deployflow.spec import BlueGreenRequest, CanaryRequest, RollingRequest
from deployflow.status import DeploymentStatus, Phase
from tests.bluegreen_support import running_worker
from tests.cluster.support import unavailable
from workflows.bluegreen import BlueGreenDeployment
from workflows.canary import CanaryDeployment
from workflows.rolling import RollingDeployment

# Image pulls and real pods take longer than the simulator's: a hang guard above the suite's 180 s.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

V1, V2 = "nginx:1.26-alpine", "nginx:1.27-alpine"
PORT = 80  # nginx's
WORKFLOWS: dict[type, Any] = {BlueGreenRequest: BlueGreenDeployment.run, CanaryRequest: CanaryDeployment.run,
                              RollingRequest: RollingDeployment.run}


async def release(env: WorkflowEnvironment, request: BlueGreenRequest | CanaryRequest | RollingRequest
                  ) -> DeploymentStatus:
    async with running_worker(env.client) as queue:
        handle = await env.client.start_workflow(WORKFLOWS[type(request)], request,
                                                 id=request.target.workflow_id(), task_queue=queue)
        status: DeploymentStatus = await handle.result()
        return status


def target(context: str, namespace: str, app: str) -> dict[str, str]:
    return {"cluster": context, "namespace": namespace, "app": app}


def images(apps: client.AppsV1Api, namespace: str) -> dict[str, int]:
    """Image -> replicas asked for, over every Deployment of the namespace that has any."""
    out: dict[str, int] = {}
    for d in apps.list_namespaced_deployment(namespace).items:
        pod: Any = d.spec.template.spec
        if d.spec.replicas:
            image = str(pod.containers[0].image)
            out[image] = out.get(image, 0) + d.spec.replicas
    return out


async def test_blue_green(context: str, dev_env: WorkflowEnvironment, apps: client.AppsV1Api,
                          cluster_namespace: str) -> None:
    def spec(image: str) -> BlueGreenRequest:
        return BlueGreenRequest.model_validate({
            "strategy": "blue-green", "target": target(context, cluster_namespace, "web"),
            "workload": {"image": image, "replicas": 2, "port": PORT},
            "smoke_tests": [{"path": "/"}], "standby": "0s",
        })

    assert (await release(dev_env, spec(V1))).phase == Phase.SUCCEEDED
    assert (await release(dev_env, spec(V2))).phase == Phase.SUCCEEDED
    assert images(apps, cluster_namespace) == {V2: 2}


def canary(context: str, namespace: str, image: str, router: str) -> CanaryRequest:
    return CanaryRequest.model_validate({
        "strategy": "canary", "target": target(context, namespace, "web"),
        "workload": {"image": image, "replicas": 2, "port": PORT},
        "traffic": {"router": router},
        "steps": [{"set_weight": 50}, {"pause": {"duration": "2s"}}, {"set_weight": 100}],
    })


def gateway_api_installed(context: str) -> bool:
    """Whether the cluster serves the Gateway API group (its CRDs are installed)."""
    groups = client.ApisApi(kube.api_client(context)).get_api_versions().groups or []
    return any(g.name == "gateway.networking.k8s.io" for g in groups)


@pytest.mark.parametrize("router", ["replicas", "gateway-api"])
async def test_canary(context: str, dev_env: WorkflowEnvironment, apps: client.AppsV1Api, cluster_namespace: str,
                      router: str) -> None:
    if router == "gateway-api" and not gateway_api_installed(context):
        unavailable("the Gateway API CRDs are not installed (standard channel: kubectl apply -f "
                    "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.2.1/standard-install.yaml)")
    assert (await release(dev_env, canary(context, cluster_namespace, V1, router))).phase == Phase.SUCCEEDED
    status = await release(dev_env, canary(context, cluster_namespace, V2, router))
    assert status.phase == Phase.SUCCEEDED
    assert images(apps, cluster_namespace) == {V2: 2}


async def test_rolling(context: str, dev_env: WorkflowEnvironment, apps: client.AppsV1Api, core: client.CoreV1Api,
                       cluster_namespace: str) -> None:
    labels = {"app": "catalog"}
    deployment: Any = {
        "metadata": {"name": "catalog", "labels": labels},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "catalog", "image": V1, "ports": [{"containerPort": PORT}]}]}}},
    }
    service: Any = {"metadata": {"name": "catalog"},
                    "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": PORT}]}}
    apps.create_namespaced_deployment(cluster_namespace, deployment)
    core.create_namespaced_service(cluster_namespace, service)
    status = await release(dev_env, RollingRequest.model_validate({
        "strategy": "rolling", "target": target(context, cluster_namespace, "catalog"), "image": V2,
        "batch_size": 1, "max_surge": 1, "max_unavailable": 0, "batch_timeout": "5m",
    }))
    assert status.phase == Phase.SUCCEEDED
    assert images(apps, cluster_namespace) == {V2: 3}
