"""The one way deployflow talks to Kubernetes.

- `client`: an API client per cluster (kubeconfig context or in-cluster) and plain-JSON calls that raise `KubeError`;
- `health`: whether pods and their workload are healthy, still progressing, or failed for good, and why;
- `wait`: waiting for a condition on watches (async, resumable, heartbeating), for every wait an activity does.

`from deployflow import kube; kube.request_json(...)` keeps working: the client's names are re-exported here.
"""

from deployflow.kube.client import (
    ANY,
    IN_CLUSTER,
    JSON,
    JSON_PATCH,
    MERGE_PATCH,
    Api,
    KubeError,
    Obj,
    Query,
    UnknownCluster,
    api_client,
    apps_path,
    batch_path,
    core_path,
    create,
    delete,
    get,
    get_or_none,
    label_selector,
    merge_patch,
    missing_namespace,
    replace_field,
    request,
    request_json,
    request_raw,
    reset_clients,
    resolve,
    send,
)
from deployflow.kube.wait import watch_events

__all__ = [
    "ANY",
    "IN_CLUSTER",
    "JSON",
    "JSON_PATCH",
    "MERGE_PATCH",
    "Api",
    "KubeError",
    "Obj",
    "Query",
    "UnknownCluster",
    "api_client",
    "apps_path",
    "batch_path",
    "core_path",
    "create",
    "delete",
    "get",
    "get_or_none",
    "label_selector",
    "merge_patch",
    "missing_namespace",
    "replace_field",
    "request",
    "request_json",
    "request_raw",
    "reset_clients",
    "resolve",
    "send",
    "watch_events",
]
