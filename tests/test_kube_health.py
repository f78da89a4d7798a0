"""kube.health: one judgement of pods and workloads for every strategy."""

from __future__ import annotations

from typing import Any

import pytest

from deployflow.errors import FATAL_WAITING_REASONS, ErrorType, fatal_waiting_message
from deployflow.hooks.job import JOB_FATAL_REASONS, judge_job
from deployflow.kube import health
from deployflow.kube.health import State


def pod(
    name: str,
    image: str = "web:2",
    *,
    ready: bool = False,
    waiting: str | None = None,
    message: str | None = None,
    restarts: int = 0,
    init: bool = False,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    state: dict[str, Any] = {"running": {}} if waiting is None else {"waiting": {"reason": waiting}}
    if message:
        state["waiting"]["message"] = message
    status = {"name": "web", "image": image, "state": state, "restartCount": restarts}
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "web", "image": image}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "initContainerStatuses" if init else "containerStatuses": [status],
        },
    }


def deployment(replicas: int = 2, generation: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 2, **status},
    }


@pytest.mark.parametrize("reason", sorted(FATAL_WAITING_REASONS))
def test_every_fatal_waiting_reason_fails_with_its_own_type_and_the_shared_sentence(reason: str) -> None:
    verdict = health.judge(deployment(), [pod("web-1", waiting=reason, message="boom")], image="web:2")
    assert verdict.state is State.FAILED and verdict.reason == reason
    assert verdict.message == fatal_waiting_message("web-1", reason, "boom")
    error = verdict.error("Deployment ns/web")
    assert error.type == reason and error.non_retryable
    assert error.message == f"Deployment ns/web: {fatal_waiting_message('web-1', reason, 'boom')}"


def test_waiting_that_time_cures_is_progress_not_failure() -> None:
    pods = [pod("web-1", waiting="ContainerCreating"), pod("web-2", ready=True)]
    verdict = health.judge(deployment(updatedReplicas=2, replicas=2), pods, image="web:2")
    assert verdict.state is State.PROGRESSING and verdict.reason is None
    assert verdict.ready == 1 and "pod web-1: ContainerCreating" in verdict.summary()


def test_crash_loop_restarts_are_part_of_the_message() -> None:
    failure = health.fatal_problem([pod("web-1", waiting="CrashLoopBackOff", message="back-off 10s", restarts=3)])
    assert failure is not None
    assert failure.message == fatal_waiting_message("web-1", "CrashLoopBackOff", "back-off 10s; 3 restarts")


def test_a_broken_init_container_fails_the_pod() -> None:
    failure = health.fatal_problem([pod("web-1", waiting="CreateContainerConfigError", init=True)])
    assert failure is not None and failure.reason == ErrorType.CREATE_CONTAINER_CONFIG_ERROR


def test_pods_of_an_older_image_or_on_their_way_out_do_not_fail_the_new_version() -> None:
    old = pod("web-old", image="web:1", waiting="CrashLoopBackOff")
    leaving = pod("web-gone", waiting="ImagePullBackOff", deleting=True)
    assert health.fatal_problem([old, leaving], image="web:2") is None
    assert health.fatal_problem([old]) is not None  # without an image every container counts


def test_healthy_needs_the_controller_to_have_seen_the_spec_and_no_surplus_pods() -> None:
    ready = [pod("web-1", ready=True), pod("web-2", ready=True)]
    assert health.judge(deployment(updatedReplicas=2, replicas=2), ready, image="web:2").healthy
    unseen = deployment(generation=3, updatedReplicas=2, replicas=2)
    assert health.judge(unseen, ready, image="web:2").state is State.PROGRESSING
    surplus = [*ready, pod("web-old", image="web:1", ready=True)]
    assert health.judge(deployment(updatedReplicas=2, replicas=3), surplus, image="web:2").state is State.PROGRESSING


def test_ready_pods_count_even_before_the_status_catches_up() -> None:
    ready = [pod("web-1", ready=True), pod("web-2", ready=True)]
    verdict = health.judge(deployment(updatedReplicas=2, replicas=2, readyReplicas=0), ready, image="web:2")
    assert verdict.healthy and verdict.ready == 2


def test_a_passed_progress_deadline_fails_the_workload() -> None:
    stalled = deployment(
        updatedReplicas=1,
        replicas=2,
        conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": 'ReplicaSet "web-1" has timed out progressing.'}],
    )
    verdict = health.judge(stalled, [], image="web:2")
    assert verdict.failed and verdict.reason == ErrorType.PROGRESS_DEADLINE_EXCEEDED
    assert 'ReplicaSet "web-1" has timed out progressing' in verdict.message


def test_a_replicaset_counts_its_own_replicas_as_updated() -> None:
    replicaset = {"metadata": {"generation": 1}, "spec": {"replicas": 1},
                  "status": {"observedGeneration": 1, "replicas": 1}}
    assert health.judge(replicaset, [pod("web-1", ready=True)]).healthy


def test_a_job_retries_its_own_crashes_but_not_a_missing_config() -> None:
    job = {"metadata": {"name": "migrate", "uid": "u1"}, "spec": {"backoffLimit": 3}, "status": {}}

    def of_job(p: dict[str, Any]) -> dict[str, Any]:
        p["metadata"]["labels"] = {"job-name": "migrate"}
        return p

    assert ErrorType.CRASH_LOOP not in JOB_FATAL_REASONS
    crashing = judge_job(job, [of_job(pod("migrate-1", waiting="CrashLoopBackOff"))], "ns/migrate")
    assert crashing.state == "running"
    missing = judge_job(job, [of_job(pod("migrate-1", waiting="CreateContainerConfigError", message="no cm"))],
                        "ns/migrate")
    assert missing.state == "failed"
    assert missing.message == fatal_waiting_message("migrate-1", "CreateContainerConfigError", "no cm")
