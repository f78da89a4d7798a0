"""Plain-JSON calls to the Kubernetes API through the cached client of a cluster.

Hooks and rollouts read and patch a few fields of well-known objects; dicts shaped like the API's JSON keep that
code as short as the manifests it deals with, with the client's authentication, TLS and connection pool.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from deployflow.kube import api_client

Obj = dict[str, Any]


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


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
    api = api_client(cluster)
    headers = {"Accept": "application/json, */*"}
    if body is not None:
        headers["Content-Type"] = content_type
    _, url, headers, serialized, _ = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=serialized, _request_timeout=timeout)
    return response.status, response.read() or b""


def request(
    cluster: str,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    query: list[tuple[str, str]] | None = None,
) -> Obj:
    status, data = request_raw(cluster, method, path, body, content_type, query)
    if not 200 <= status < 300:
        message = data.decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(message).get("message", message)
        raise KubeError(status, message)
    return json.loads(data) if data else {}


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


def apps_path(namespace: str, plural: str, name: str | None = None) -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def batch_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    return f"{base}/{name}" if name else base
