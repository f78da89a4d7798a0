"""Endpoints and EndpointSlices: for every Service with a selector, the ready and not-ready pods it would send
traffic to (pods being deleted leave Endpoints at once; their slice keeps them as terminating endpoints)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from deployflow.sim.config import SimConfig
from deployflow.sim.controllers.base import Scope, in_scope
from deployflow.sim.controllers.endpointslices import slice_name, write_slice
from deployflow.sim.controllers.pods import is_ready, is_terminal
from deployflow.sim.resources import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES
from deployflow.sim.selectors import LabelIndex
from deployflow.sim.store import Obj, Store, StoreError

MANAGED_BY = "endpointslice.kubernetes.io/managed-by"  # marks Endpoints we own, so user-made ones stay


class EndpointsController:
    name = "endpoints"

    def __init__(self, store: Store, config: SimConfig) -> None:
        self.store = store
        self.config = config
        self._written: dict[tuple[str, str], tuple[Any, Any]] = {}

    scoped = True

    def next_wakeup(self) -> float:
        return math.inf

    def due_namespaces(self, now: float) -> set[str]:
        return set()

    def reconcile(self, now: float, scope: Scope = None) -> None:
        index = LabelIndex()
        pods: dict[str, Obj] = {}
        for pod in in_scope(self.store, PODS, scope):
            meta = pod["metadata"]
            # Terminating pods are kept for EndpointSlices (as terminating endpoints); Endpoints drop them.
            if is_terminal(pod) or not pod.get("status", {}).get("podIP"):
                continue
            key = f"{meta.get('namespace', '')}/{meta['name']}"
            pods[key] = pod
            index.add(meta.get("namespace", ""), key, meta.get("labels"))
        existing = {(ep["metadata"].get("namespace", ""), ep["metadata"]["name"]): ep
                    for ep in in_scope(self.store, ENDPOINTS, scope)}
        wanted: set[tuple[str, str]] = set()
        for svc in list(in_scope(self.store, SERVICES, scope)):
            selector = svc.get("spec", {}).get("selector")
            if not selector:
                continue  # Endpoints of selector-less Services are the user's to manage
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            wanted.add((ns, name))
            members = [pods[k] for k in sorted(index.select_map(ns, selector))]
            try:
                self._write(svc, members, existing.get((ns, name)))
            except StoreError:
                continue
        for ep in list(existing.values()):
            meta = ep["metadata"]
            if (meta.get("namespace"), meta["name"]) not in wanted and (meta.get("labels") or {}).get(MANAGED_BY):
                with contextlib.suppress(StoreError):
                    self.store.delete(ENDPOINTS, meta.get("namespace"), meta["name"])
                with contextlib.suppress(StoreError):
                    self.store.delete(ENDPOINTSLICES, meta.get("namespace"), slice_name(meta["name"]))
                self._written.pop((meta.get("namespace", ""), meta["name"]), None)

    def _write(self, svc: Obj, pods: list[Obj], current: Obj | None) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        # Skip the rebuild when neither the Service, its pods nor the Endpoints changed since our last write.
        signature = (svc["metadata"].get("resourceVersion"),
                     tuple(p["metadata"].get("resourceVersion") for p in pods),
                     tuple(p["metadata"]["name"] for p in pods))
        if current is not None and self._written.get((ns, name)) == (signature,
                                                                     current["metadata"].get("resourceVersion")):
            return
        serving = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        written = self._write_endpoints(svc, serving, current)
        ports = [_port(p, serving or pods) for p in svc.get("spec", {}).get("ports") or []]
        write_slice(self.store, svc, pods, ports)
        self._written[(ns, name)] = (signature, written["metadata"].get("resourceVersion"))

    def _write_endpoints(self, svc: Obj, pods: list[Obj], current: Obj | None) -> Obj:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        ready: list[Obj] = []
        not_ready: list[Obj] = []
        for pod in pods:
            meta = pod["metadata"]
            address = {
                "ip": pod["status"]["podIP"],
                "nodeName": pod.get("spec", {}).get("nodeName", ""),
                "targetRef": {"kind": "Pod", "namespace": ns, "name": meta["name"], "uid": meta["uid"]},
            }
            (ready if is_ready(pod) else not_ready).append(address)
        subsets = []
        if ready or not_ready:
            subset: Obj = {"ports": [_port(p, pods) for p in svc.get("spec", {}).get("ports") or []]}
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            subsets.append(subset)
        labels = dict(svc["metadata"].get("labels") or {})
        labels[MANAGED_BY] = "endpointslice-controller.k8s.io"
        if current is None:
            return self.store.create(ENDPOINTS, {"metadata": {"name": name, "namespace": ns, "labels": labels},
                                                 "subsets": subsets})
        if current.get("subsets", []) != subsets or (current["metadata"].get("labels") or {}) != labels:
            new = {**current, "subsets": subsets, "metadata": {**current["metadata"], "labels": labels}}
            return self.store.update(ENDPOINTS, new, check_rv=False)
        return current


def _port(port: Obj, pods: list[Obj]) -> Obj:
    """targetPort may name a containerPort; resolve it on the first pod that declares it."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, str) and not target.isdigit():
        resolved = None
        for pod in pods:
            for c in pod.get("spec", {}).get("containers") or []:
                for cp in c.get("ports") or []:
                    if cp.get("name") == target:
                        resolved = cp.get("containerPort")
                        break
        target = resolved if resolved is not None else port.get("port")
    out: Obj = {"port": int(target) if target is not None else 80, "protocol": port.get("protocol", "TCP")}
    if port.get("name"):
        out["name"] = port["name"]
    return out
