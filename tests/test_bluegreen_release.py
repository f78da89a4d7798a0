"""BlueGreenDeployment beyond the plain release (tests/test_bluegreen_workflow.py): hooks, a promotion delay, adopting
a Service deployflow did not create, a full manifest, notifications. The real activities run against the simulator."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from deployflow import kube, workloads
from deployflow.spec.common import Workload
from deployflow.spec.control import ApproveRequest
from deployflow.status import DeploymentStatus, Phase
from tests import bluegreen_support as bg

pytestmark = pytest.mark.usefixtures("kubeconfig")


async def test_failing_post_deploy_hook_switches_traffic_back(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    await bg.deploy(bluegreen_env, namespace, "1.0")
    client, queue = bluegreen_env
    hooks = {
        "pre_promote": [{"kind": "http", "name": "preview-up", "service": "web-preview", "requests": 3}],
        "post_deploy": [
            {"kind": "http", "name": "teapot", "service": "web", "requests": 2, "expect_status": [418]},
        ],
    }
    handle = await bg.start(client, queue, bg.bluegreen_request(namespace, "2.0", hooks=hooks))

    cause = await bg.expect_rollback(handle)

    assert "post_deploy hook teapot" in cause.message and "traffic is back on blue (1.0)" in cause.message
    bg.assert_blue_serves_v1(namespace)
    status = await handle.query("status", result_type=DeploymentStatus)
    assert any("pre_promote hook preview-up (http): passed" in e.message for e in status.events)
    switched = [e.message for e in status.events if e.message.startswith("traffic switched to green")]
    assert switched, "the hook ran after the switch"


async def test_promotion_after_a_delay_switches_without_anyone(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    await bg.deploy(bluegreen_env, namespace, "1.0")

    status = await bg.deploy(bluegreen_env, namespace, "2.0", promotion={"mode": "after", "delay": "30m"}, standby="0s")

    assert status.phase == Phase.SUCCEEDED
    assert any(e.message == "promotion delay 0:30:00 passed" for e in status.events)
    assert bg.cluster_view(namespace).color_of("web") == "green"
    assert bg.cluster_view(namespace).replicas == {"blue": 0, "green": 2}


async def test_adopting_an_existing_service_restores_its_selector_on_failure(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    """The first blue-green release of an app already served by a plain Deployment: a failure gives the Service
    back to the pods it selected before."""
    api = kube.api_client("sim")
    legacy = {"app": "web", "tier": "legacy"}
    target = bg.bluegreen_request(namespace).target
    workloads.apply_deployment(
        api,
        workloads.deployment_manifest(
            target, "web-legacy", Workload(image="web:0.9"), replicas=2, selector=legacy
        ),
    )
    workloads.set_service_selector(
        api, namespace, "web", legacy, create=workloads.service_manifest(target, "web", legacy, 80, 8080)
    )
    client, queue = bluegreen_env
    teapot = {"kind": "http", "name": "teapot", "service": "web", "requests": 1, "expect_status": [418]}
    hooks = {"post_deploy": [teapot]}

    cause = await bg.expect_rollback(await bg.start(client, queue, bg.bluegreen_request(namespace, "1.0", hooks=hooks)))

    assert f"the pods selected by {legacy}" in cause.message
    view = bg.cluster_view(namespace)
    assert view.selectors["web"] == legacy and view.replicas["blue"] == 0
    assert workloads.read_deployment(api, namespace, "web-legacy")["spec"]["replicas"] == 2


async def test_never_ready_version_hits_the_progress_deadline_and_is_rolled_back(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    _, cause = await bg.rolled_back_release(bluegreen_env, namespace, "never-ready", health_timeout="30s")

    assert "ProgressDeadlineExceeded" in cause.message and "0/2 ready" in cause.message


async def test_full_manifest_is_deployed_under_managed_name_selector_and_labels(
    bluegreen_env: tuple[Client, str], namespace: str
) -> None:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ignored", "labels": {"team": "checkout"}},
        "spec": {
            "selector": {"matchLabels": {"ignored": "yes"}},
            "template": {
                "metadata": {"labels": {"team": "checkout"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.example.com/shop/web:5.1",
                            "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                        }
                    ]
                },
            },
        },
    }
    await bg.deploy(bluegreen_env, namespace, "5.1", workload={"image": None, "manifest": manifest})

    live = workloads.read_deployment(kube.api_client("sim"), namespace, "web-blue")
    assert live is not None
    assert live["spec"]["selector"] == {"matchLabels": {"app": "web", "deployflow.io/color": "blue"}}
    labels = live["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "checkout" and labels["app.kubernetes.io/version"] == "5.1"
    assert live["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "LOG_LEVEL", "value": "debug"}]
    assert bg.cluster_view(namespace).color_of("web") == "blue"


async def test_notifications_follow_the_release_and_its_rollback(
    bluegreen_env: tuple[Client, str], namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.receiver_support import serve_receiver

    await bg.deploy(bluegreen_env, namespace, "1.0")
    client, queue = bluegreen_env
    async with serve_receiver() as receiver:
        monkeypatch.setenv("DEPLOYFLOW_CRED_BLUEGREEN_HOOK_URL", f"{receiver.url}/hook")
        notify = [{"kind": "webhook", "url_env": "DEPLOYFLOW_CRED_BLUEGREEN_HOOK_URL"}]
        handle = await bg.start(
            client, queue, bg.bluegreen_request(namespace, "2.0", notifications=notify, promotion={"mode": "manual"})
        )
        await bg.wait_for(handle, lambda s: s.phase == Phase.WAITING_PROMOTION, "the manual gate")
        await handle.execute_update("approve", ApproveRequest(approver="alice"))
        assert (await handle.result()).phase == Phase.SUCCEEDED

        broken = bg.bluegreen_request(
            namespace, "3.0", notifications=notify, workload={"pod_annotations": {bg.FAULT + "crash-loop": "true"}}
        )
        await bg.expect_rollback(await bg.start(client, queue, broken))

    events = [(b["event"], b["version"]) for b in receiver.bodies("/hook")]
    assert events == [
        ("started", "2.0"),
        ("waiting-approval", "2.0"),
        ("promoted", "2.0"),
        ("succeeded", "2.0"),
        ("started", "3.0"),
        ("rolled-back", "3.0"),
    ]
    rolled_back = receiver.bodies("/hook")[-1]
    assert "CrashLoopBackOff" in rolled_back["reason"] and rolled_back["details"]["active_color"] == "green"
