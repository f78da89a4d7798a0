"""Kubernetes API clients for activities: one per cluster (kubeconfig context), over real HTTP."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kubernetes import client, config
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

IN_CLUSTER = "in-cluster"


class UnknownCluster(ConfigException):
    """The kubeconfig has no context by the requested name, or there is no kubeconfig to read: no retry finds one."""

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
# The generated typed API validates every body into its own models; deployflow speaks plain manifests (dicts), the
# API server's own language, through the client's authenticated connection pool instead.

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


Query = Mapping[str, Any] | Sequence[tuple[str, Any]]


def send(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    query: Query | None = None,
    body: Any = None,
    content_type: str = JSON,
    accept: str = JSON,
    timeout: float | tuple[float, float] | None = 30.0,
) -> rest.RESTResponse:
    """One HTTP request to the API server, whatever the status of the answer (for callers that report it, such as
    hooks calling a Service through its proxy). The response body is not read, so watches can stream it."""
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    pairs = query.items() if isinstance(query, Mapping) else query or []
    params = [(k, v) for k, v in pairs if v is not None]
    method, url, headers, body, post = api.param_serialize(
        method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
    )
    return api.call_api(method, url, header_params=headers, body=body, post_params=post, _request_timeout=timeout)


def request(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    query: Query | None = None,
    body: Any = None,
    content_type: str = JSON,
    accept: str = JSON,
    timeout: float | tuple[float, float] | None = 30.0,
    error: Callable[[int, str], Exception] | None = None,
) -> rest.RESTResponse:
    """One HTTP request to the API server; raises ApiException (with .status and .body) on a non-2xx answer, or
    `error(status, body text)` when given (callers with an error type of their own).

    The response body is not read, so watches can stream it.
    """
    response = send(
        api, method, path, query=query, body=body, content_type=content_type, accept=accept, timeout=timeout
    )
    if not 200 <= response.status <= 299:
        data = response.read()
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if error is not None:
            raise error(response.status, text)
        raise ApiException.from_response(http_resp=response, body=text, data=None)
    return response


def request_json(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    query: Query | None = None,
    body: Any = None,
    content_type: str = JSON,
    accept: str = JSON,
    timeout: float | None = 30.0,
    error: Callable[[int, str], Exception] | None = None,
) -> dict[str, Any]:
    response = request(
        api, method, path, query=query, body=body, content_type=content_type, accept=accept, timeout=timeout,
        error=error,
    )
    data = response.read()
    result: dict[str, Any] = json.loads(data) if data else {}
    return result


def get_or_none(api: client.ApiClient, path: str) -> dict[str, Any] | None:
    try:
        return request_json(api, "GET", path)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def watch_events(
    api: client.ApiClient, path: str, *, query: dict[str, Any], timeout_seconds: int
) -> Iterator[dict[str, Any]]:
    """Streams watch events (`{"type", "object"}`) from a list path until the server closes the watch."""
    query = {**query, "watch": "true", "timeoutSeconds": timeout_seconds, "allowWatchBookmarks": "false"}
    response = request(api, "GET", path, query=query, timeout=(10.0, timeout_seconds + 10.0))
    raw = response.response
    buffer = b""
    try:
        for chunk in raw.stream(4096, decode_content=True):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiException(status=int(status.get("code") or 500), reason=status.get("message"))
                    yield event
    finally:
        raw.release_conn()


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
