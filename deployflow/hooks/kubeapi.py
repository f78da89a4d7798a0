"""The Kubernetes calls hooks make, by cluster name: the same functions as `deployflow.kube`, kept importable here
for the hook modules that name them this way."""

from __future__ import annotations

from deployflow.kube.client import (
    KubeError,
    Obj,
    apps_path,
    batch_path,
    core_path,
    create,
    delete,
    get,
    merge_patch,
    replace_field,
    request_raw,
)
from deployflow.kube.client import request_json as request

__all__ = [
    "KubeError",
    "Obj",
    "apps_path",
    "batch_path",
    "core_path",
    "create",
    "delete",
    "get",
    "merge_patch",
    "replace_field",
    "request",
    "request_raw",
]
