"""Plain-JSON calls to the Kubernetes API through the cached client of a cluster.

Hooks and rollouts read and patch a few fields of well-known objects; dicts shaped like the API's JSON keep that
code as short as the manifests it deals with, with the client's authentication, TLS and connection pool.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from deployflow import kube
from deployflow.kube import api_client
from deployflow.kube import apps_path as apps_path
from deployflow.kube import batch_path as batch_path
from deployflow.kube import core_path as core_path

Obj = dict[str, Any]

# Hooks may call a Service's own endpoints through the proxy, which need not answer JSON.
ACCEPT = "application/json, */*"


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _error(status: int, body: str) -> KubeError:
    """The API server's own `message` from a Status body, or the whole body when it is not one."""
    message = body
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("message", body)
    return KubeError(status, message)


def request_raw(
    cluster: str,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    query: list[tuple[str, str]] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """One request; returns status and body without raising on non-2xx answers."""
    response = kube.send(
        api_client(cluster), method, path, query=query, body=body, content_type=content_type, accept=ACCEPT,
        timeout=timeout,
    )
    return response.status, response.read() or b""


def request(
    cluster: str,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    query: list[tuple[str, str]] | None = None,
) -> Obj:
    """One request; raises KubeError (status and the API server's message) on a non-2xx answer."""
    return kube.request_json(
        api_client(cluster), method, path, query=query, body=body, content_type=content_type, accept=ACCEPT,
        error=_error,
    )


def get(cluster: str, path: str) -> Obj | None:
    try:
        return request(cluster, "GET", path)
    except KubeError as err:
        if err.status == 404:
            return None
        raise


def merge_patch(cluster: str, path: str, patch: Obj) -> Obj:
    return request(cluster, "PATCH", path, patch, content_type="application/merge-patch+json")


def replace_field(cluster: str, path: str, pointer: str, value: Any) -> Obj:
    """Replaces one field whole (a JSON Patch), so keys missing from `value` are removed, unlike a merge patch."""
    return request(
        cluster, "PATCH", path, [{"op": "replace", "path": pointer, "value": value}],
        content_type="application/json-patch+json",
    )


def create(cluster: str, path: str, obj: Obj) -> Obj:
    """Creates the object; an existing one of the same name is returned instead (retries are idempotent)."""
    try:
        return request(cluster, "POST", path, obj)
    except KubeError as err:
        if err.status != 409:
            raise
        existing = get(cluster, f"{path}/{obj['metadata']['name']}")
        if existing is None:
            raise
        return existing


def delete(cluster: str, path: str, propagation: str = "Background") -> None:
    try:
        request(cluster, "DELETE", path, {"propagationPolicy": propagation})
    except KubeError as err:
        if err.status != 404:
            raise
