"""Kubernetes API clients: one per cluster (kubeconfig context or in-cluster), and plain-JSON calls over them.

The generated typed API validates every body into its own models; deployflow speaks plain manifests (dicts), the
API server's own language, through the client's authenticated connection pool instead. Every call takes either
an `ApiClient` or a cluster name, and a non-2xx answer raises `KubeError` (an `ApiException`, so code written
against the official client's error keeps working) carrying the status and the API server's own message.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, Unpack

from kubernetes import client, config
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

IN_CLUSTER = "in-cluster"

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# Hooks may call a Service's own endpoints through the proxy, which need not answer JSON.
ANY = "application/json, */*"

Obj = dict[str, Any]
Query = Mapping[str, Any] | Sequence[tuple[str, Any]]
Api = client.ApiClient | str  # a client, or the name of the cluster (kubeconfig context) to get one for


class UnknownCluster(ConfigException):
    """The kubeconfig has no context by the requested name, or there is no kubeconfig to read: no retry finds one."""


class KubeError(ApiException):
    """A non-2xx answer: `.status`, `.message` (the API server's own sentence) and `.body` (the raw Status)."""

    def __init__(self, status: int, message: str, body: str = "") -> None:
        super().__init__(status=status, reason=message)
        self.body = body
        self.message = message

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"

    @classmethod
    def of(cls, status: int, body: str) -> KubeError:
        """The API server's `message` from a Status body, or the whole body when it is not one."""
        message = body
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            message = str(json.loads(body).get("message") or body)
        return cls(status, message, body)


_lock = threading.Lock()
_clients: dict[tuple[str, str], client.ApiClient] = {}


def api_client(cluster: str) -> client.ApiClient:
    """The API client for a cluster named by its kubeconfig context (or 'in-cluster').

    Cached per (KUBECONFIG, context): building a client parses the kubeconfig and sets up a
    connection pool, which is too slow to repeat in every activity attempt.
    """
    kubeconfig = os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config"))
    key = (kubeconfig, cluster)
    with _lock:
        cached = _clients.get(key)
        if cached is not None:
            return cached
        if cluster == IN_CLUSTER:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            api = client.ApiClient(cfg)
        else:
            _check_context(kubeconfig, cluster)
            api = config.new_client_from_config(config_file=kubeconfig, context=cluster)
        _clients[key] = api
        return api


def resolve(api: Api) -> client.ApiClient:
    return api_client(api) if isinstance(api, str) else api


def _check_context(kubeconfig: str, cluster: str) -> None:
    """Raises UnknownCluster naming the contexts there are, rather than the client's bare "expected object"."""
    try:
        contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError) as err:
        raise UnknownCluster(f"cluster {cluster!r}: cannot read kubeconfig {kubeconfig}: {err}") from err
    names = sorted(str(c.get("name")) for c in contexts or [])
    if cluster not in names:
        raise UnknownCluster(
            f"cluster {cluster!r}: kubeconfig {kubeconfig} has no context of that name "
            f"(available: {', '.join(names) or 'none'})"
        )


def missing_namespace(err: ApiException) -> str | None:
    """The namespace an API error says does not exist, if that is what it says.

    Creating an object in a namespace that does not exist answers 404 with `details.kind: namespaces` (a read
    answers 404 about the object itself, so reads cannot tell).
    """
    if err.status != 404 or not err.body:
        return None
    try:
        status = json.loads(err.body)
    except (TypeError, ValueError):
        return None
    details = status.get("details") if isinstance(status, dict) else None
    if isinstance(details, dict) and details.get("kind") == "namespaces":
        return str(details.get("name") or "")
    return None


def reset_clients() -> None:
    """Forget cached clients (tests that point KUBECONFIG somewhere else)."""
    with _lock:
        _clients.clear()


# --- JSON over the client's connection -----------------------------------------------------------------------------


class Options(TypedDict, total=False):
    """How one request is sent: query parameters, a body and its type, the answer's accepted type, a timeout (30 s
    when not given)."""

    query: Query | None
    body: Any
    content_type: str
    accept: str
    timeout: float | tuple[float, float] | None


def send(api: Api, method: str, path: str, **options: Unpack[Options]) -> rest.RESTResponse:
    """One HTTP request to the API server, whatever the status of the answer (for callers that report it, such as
    hooks calling a Service through its proxy). The response body is not read."""
    api = resolve(api)
    body = options.get("body")
    headers = {"Accept": options.get("accept", JSON)}
    if body is not None:
        headers["Content-Type"] = options.get("content_type", JSON)
    query = options.get("query")
    pairs = query.items() if isinstance(query, Mapping) else query or []
    params = [(k, v) for k, v in pairs if v is not None]
    method, url, headers, body, post = api.param_serialize(
        method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
    )
    return api.call_api(
        method, url, header_params=headers, body=body, post_params=post, _request_timeout=options.get("timeout", 30.0)
    )


def request(api: Api, method: str, path: str, **options: Unpack[Options]) -> rest.RESTResponse:
    """One HTTP request to the API server; raises KubeError on a non-2xx answer. The body is not read."""
    response = send(api, method, path, **options)
    if not 200 <= response.status <= 299:
        data = response.read()
        raise KubeError.of(response.status, data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data))
    return response


def request_json(api: Api, method: str, path: str, **options: Unpack[Options]) -> Obj:
    data = request(api, method, path, **options).read()
    result: Obj = json.loads(data) if data else {}
    return result


def request_raw(
    api: Api, method: str, path: str, *, query: Query | None = None, body: Any = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    """One request whose answer need not be JSON nor 2xx (a Service's own endpoints through the proxy, a log)."""
    response = send(api, method, path, query=query, body=body, accept=ANY, timeout=timeout)
    return response.status, response.read() or b""


def get_or_none(api: Api, path: str) -> Obj | None:
    try:
        return request_json(api, "GET", path)
    except KubeError as err:
        if err.status == 404:
            return None
        raise


get = get_or_none


def merge_patch(api: Api, path: str, patch: Obj) -> Obj:
    return request_json(api, "PATCH", path, body=patch, content_type=MERGE_PATCH)


def replace_field(api: Api, path: str, pointer: str, value: Any) -> Obj:
    """Replaces one field whole (a JSON Patch), so keys missing from `value` are removed, unlike a merge patch."""
    return request_json(
        api, "PATCH", path, body=[{"op": "replace", "path": pointer, "value": value}], content_type=JSON_PATCH
    )


def create(api: Api, path: str, obj: Obj) -> Obj:
    """Creates the object; an existing one of the same name is returned instead (retries are idempotent)."""
    try:
        return request_json(api, "POST", path, body=obj)
    except KubeError as err:
        if err.status != 409:
            raise
        existing = get_or_none(api, f"{path}/{obj['metadata']['name']}")
        if existing is None:
            raise
        return existing


def delete(api: Api, path: str, propagation: str = "Background") -> bool:
    """Deletes the object and what it owns; False when it was already gone."""
    try:
        request_json(api, "DELETE", path, query={"propagationPolicy": propagation})
        return True
    except KubeError as err:
        if err.status != 404:
            raise
        return False


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# --- paths -----------------------------------------------------------------------------------------------------------


def apps_path(namespace: str, plural: str, name: str | None = None) -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def batch_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    return f"{base}/{name}" if name else base
