"""EndpointSlices (discovery.k8s.io/v1), as the endpointslice controller writes them beside Endpoints: one slice per
Service here, owned by the Service, whose endpoints carry the conditions kube-proxy and gateways read. A pod being
deleted stays in its slice as `ready: false, serving: <ready before>, terminating: true` until it is gone, which is
what lets a data plane drain it rather than cut it."""

from __future__ import annotations

from deployflow.sim.controllers.pods import is_ready, owner_reference
from deployflow.sim.resources import ENDPOINTSLICES
from deployflow.sim.store import Obj, Store

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"


def slice_name(service: str) -> str:
    return f"{service}-sim"


def write_slice(store: Store, svc: Obj, pods: list[Obj], ports: list[Obj]) -> None:
    """Creates or updates the Service's slice for `pods` (terminating ones included). Call under the store lock."""
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    endpoints = []
    for pod in pods:
        meta = pod["metadata"]
        terminating = bool(meta.get("deletionTimestamp"))
        ready = is_ready(pod)
        endpoints.append({
            "addresses": [pod["status"]["podIP"]],
            # A terminating pod turned not ready at its deletion: it served until then, and drains now.
            "conditions": {"ready": ready and not terminating, "serving": ready or terminating,
                           "terminating": terminating},
            "nodeName": pod.get("spec", {}).get("nodeName", ""),
            "targetRef": {"kind": "Pod", "namespace": ns, "name": meta["name"], "uid": meta["uid"]},
        })
    body = {
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{k: v for k, v in p.items() if k in ("name", "port", "protocol")} for p in ports],
    }
    labels = {SERVICE_NAME: name, MANAGED_BY: CONTROLLER}
    current = store.get(ENDPOINTSLICES, ns, slice_name(name))
    if current is None:
        svc_obj = {**svc, "apiVersion": "v1", "kind": "Service"}
        store.create(ENDPOINTSLICES, {"metadata": {"name": slice_name(name), "namespace": ns, "labels": labels,
                                                   "ownerReferences": [owner_reference(svc_obj)]}, **body})
        return
    if any(current.get(k) != v for k, v in body.items()) or (current["metadata"].get("labels") or {}) != labels:
        store.update(ENDPOINTSLICES, {**current, **body, "metadata": {**current["metadata"], "labels": labels}},
                     check_rv=False)
