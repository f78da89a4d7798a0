"""Kubernetes API clients for activities: one per cluster (kubeconfig context), over real HTTP."""

from __future__ import annotations

import os
import threading

from kubernetes import client, config

IN_CLUSTER = "in-cluster"

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
            api = config.new_client_from_config(config_file=kubeconfig, context=cluster)
        _clients[key] = api
        return api


def reset_clients() -> None:
    """Forget cached clients (tests that point KUBECONFIG somewhere else)."""
    with _lock:
        _clients.clear()
