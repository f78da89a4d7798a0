"""Job hooks: run a Kubernetes Job (a database migration, a cache warm-up) and learn how it ended."""

from __future__ import annotations

import contextlib
import copy
import hashlib
from dataclasses import dataclass
from typing import Literal

from deployflow import kube
from deployflow.errors import FATAL_WAITING_REASONS, ErrorType
from deployflow.kube import Obj, health, wait
from deployflow.spec.common import Target
from deployflow.spec.hooks import HookContext, JobHook

HOOK_LABEL = "deployflow.io/hook"
POINT_LABEL = "deployflow.io/hook-point"
APP_LABEL = "app.kubernetes.io/name"

# A Job's restarts are its own retries, counted against its backoffLimit: a crash loop is not yet a failure there.
JOB_FATAL_REASONS = FATAL_WAITING_REASONS - {ErrorType.CRASH_LOOP}


def job_name(target: Target, hook: JobHook, context: HookContext) -> str:
    """Stable per workflow run and hook point, so a retried activity finds the Job it already created."""
    digest = hashlib.sha256(f"{context.run_id}/{context.point}".encode()).hexdigest()[:6]
    prefix = f"{target.app}-{hook.name}"[: 63 - 7].rstrip("-")
    return f"{prefix}-{digest}"


def job_manifest(target: Target, hook: JobHook, context: HookContext) -> Obj:
    name = job_name(target, hook, context)
    labels = {HOOK_LABEL: hook.name, POINT_LABEL: context.point.value, APP_LABEL: target.app}
    if hook.manifest is not None:
        job = copy.deepcopy(hook.manifest)
        meta = job.setdefault("metadata", {})
        meta.pop("generateName", None)
        meta["name"] = name
        meta["namespace"] = target.namespace
        meta.setdefault("labels", {}).update(labels)
        job.setdefault("spec", {}).setdefault("backoffLimit", hook.backoff_limit)
        return job
    env = [var.manifest() for var in hook.env]
    container: Obj = {"name": hook.name, "image": hook.image}
    if hook.command:
        container["command"] = hook.command
    if hook.args:
        container["args"] = hook.args
    if env:
        container["env"] = env
    pod_spec: Obj = {"restartPolicy": "Never", "containers": [container]}
    if hook.service_account:
        pod_spec["serviceAccountName"] = hook.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": target.namespace, "labels": labels},
        "spec": {
            "backoffLimit": hook.backoff_limit,
            "ttlSecondsAfterFinished": 86_400,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


@dataclass
class JobOutcome:
    state: Literal["running", "succeeded", "failed"]
    message: str = ""


def ensure_job(cluster: str, manifest: Obj) -> Obj:
    namespace = manifest["metadata"]["namespace"]
    return kube.create(cluster, kube.batch_path(namespace), manifest)


def judge_job(job: Obj | None, pods: list[Obj], where: str) -> JobOutcome:
    """How the Job stands: its conditions and counts, or a pod of it that cannot start (`kube.health`)."""
    if job is None:
        return JobOutcome("failed", f"Job {where} disappeared")
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return JobOutcome("succeeded")
        if cond.get("type") in ("Failed", "FailureTarget"):
            reason = cond.get("reason") or "Failed"
            return JobOutcome("failed", f"{reason}: {cond.get('message') or 'the Job failed'}")
    completions = (job.get("spec") or {}).get("completions") or 1
    if (status.get("succeeded") or 0) >= completions:
        return JobOutcome("succeeded")
    backoff = (job.get("spec") or {}).get("backoffLimit", 6)
    if (status.get("failed") or 0) > backoff:
        return JobOutcome("failed", f"{status['failed']} pod(s) failed (backoffLimit {backoff})")
    stuck = health.fatal_problem(_owned(job, pods), reasons=JOB_FATAL_REASONS)
    if stuck is not None:
        return JobOutcome("failed", stuck.message)
    return JobOutcome("running")


def job_outcome(cluster: str, namespace: str, name: str) -> JobOutcome:
    job = kube.get(cluster, kube.batch_path(namespace, name))
    pods = [] if job is None else job_pods(cluster, namespace, job)
    return judge_job(job, pods, f"{namespace}/{name}")


async def wait_job(cluster: str, namespace: str, name: str, timeout: float) -> JobOutcome:
    """Follows the Job and its pods on watches until it ends (or one of its pods cannot start); heartbeats its
    state. After `timeout` seconds still running, returns the running outcome for the caller to act on."""
    outcome = JobOutcome("running")

    def check(snapshot: wait.Snapshot) -> tuple[bool, str]:
        nonlocal outcome
        jobs = snapshot["job"]
        outcome = judge_job(jobs[0] if jobs else None, snapshot["pods"], f"{namespace}/{name}")
        return outcome.state != "running", outcome.state

    watches = {
        "job": kube.watch_events(cluster, kube.batch_path(namespace), name=name),
        # Kubernetes labels a Job's pods with `job-name` (and, since 1.27, `batch.kubernetes.io/job-name` too).
        "pods": kube.watch_events(cluster, kube.core_path(namespace, "pods"), labels={"job-name": name}),
    }
    with contextlib.suppress(TimeoutError):
        await wait.wait_until(watches, check, timeout=max(0.0, timeout), on_timeout=TimeoutError)
    return outcome


def _owned(job: Obj, pods: list[Obj]) -> list[Obj]:
    """The Job's pods among `pods`, newest first: by owner reference, or by the job-name labels Kubernetes sets."""
    uid = job["metadata"].get("uid")
    name = job["metadata"]["name"]
    mine = []
    for pod in pods:
        meta = pod.get("metadata", {})
        labels = meta.get("labels") or {}
        owned = any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or [])
        if owned or labels.get("job-name") == name or labels.get("batch.kubernetes.io/job-name") == name:
            mine.append(pod)
    mine.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    return mine


def job_pods(cluster: str, namespace: str, job: Obj) -> list[Obj]:
    """The Job's pods, newest first."""
    return _owned(job, kube.request_json(cluster, "GET", kube.core_path(namespace, "pods")).get("items", []))


def last_log_lines(cluster: str, namespace: str, name: str, lines: int) -> str:
    """The last lines of the newest pod's log, read through the `log` subresource."""
    job = kube.get(cluster, kube.batch_path(namespace, name))
    if job is None:
        return ""
    for pod in job_pods(cluster, namespace, job):
        status, body = kube.request_raw(
            cluster,
            "GET",
            kube.core_path(namespace, "pods", pod["metadata"]["name"]) + "/log",
            query=[("tailLines", str(lines))],
        )
        if 200 <= status < 300 and body.strip():
            return "\n".join(body.decode(errors="replace").splitlines()[-lines:])
    return ""


def delete_job(cluster: str, namespace: str, name: str) -> None:
    kube.delete(cluster, kube.batch_path(namespace, name))
