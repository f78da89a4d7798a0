"""Shared pieces of the hook tests: a hook Job whose log and outcome the simulator scripts, and reading events."""

from __future__ import annotations

from typing import Any

from deployflow.sim.controllers.pods import JOB_FAIL, JOB_LOG


def job_manifest(log: str, fail: bool = False) -> dict[str, Any]:
    annotations = {JOB_LOG: log}
    if fail:
        annotations[JOB_FAIL] = "true"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "ignored"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": "registry.example.com/web-migrate:2.0.0"}],
                },
            }
        },
    }


def messages(status: Any) -> list[str]:
    return [e.message for e in status.events]


def index_of(events: list[str], text: str) -> int:
    for i, message in enumerate(events):
        if text in message:
            return i
    raise AssertionError(f"no event with {text!r} in {events}")
