"""Server-side printing: the `Table` answers `kubectl get` (and `-o wide`) asks for with `Accept: ...;as=Table`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deployflow.sim.store import Obj, Resource


def human_age(timestamp: str | None) -> str:
    """kubectl's short durations: 45s, 3m12s, 5h, 2d3h."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<invalid>"
    secs = max(int((datetime.now(UTC) - then).total_seconds()), 0)
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = mins // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d{hours % 24}h" if hours % 24 and hours < 24 * 8 else f"{hours // 24}d"


def _containers(obj: Obj, template: bool = True) -> list[Obj]:
    spec = obj.get("spec") or {}
    pod_spec = ((spec.get("template") or {}).get("spec") or {}) if template else spec
    return list(pod_spec.get("containers") or [])


def _selector_text(obj: Obj) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    labels = sel.get("matchLabels", sel) if isinstance(sel, dict) else {}
    return ",".join(f"{k}={v}" for k, v in labels.items() if isinstance(v, str)) or "<none>"


def pod_status_text(pod: Obj) -> str:
    """The STATUS column: a waiting reason such as CrashLoopBackOff wins over the phase, as in kubectl."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        reason = (state.get("waiting") or {}).get("reason") or (state.get("terminated") or {}).get("reason")
        if reason and reason not in ("ContainerCreating",):
            return str(reason)
    return str(status.get("phase") or "Pending")


def _columns(kind: str) -> list[tuple[str, str, int]]:
    wide_pods = [("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)]
    return {
        "Deployment": [("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "integer", 0),
                       ("Available", "integer", 0), ("Age", "string", 0), *wide_pods],
        "ReplicaSet": [("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
                       ("Ready", "integer", 0), ("Age", "string", 0), *wide_pods],
        "StatefulSet": [("Name", "string", 0), ("Ready", "string", 0), ("Age", "string", 0),
                        ("Containers", "string", 1), ("Images", "string", 1)],
        "Pod": [("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
                ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1)],
        "Service": [("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0),
                    ("External-IP", "string", 0), ("Port(s)", "string", 0), ("Age", "string", 0),
                    ("Selector", "string", 1)],
        "Endpoints": [("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        "Job": [("Name", "string", 0), ("Status", "string", 0), ("Completions", "string", 0),
                ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1)],
        "Namespace": [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        "Event": [("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
                  ("Object", "string", 0), ("Message", "string", 0)],
    }.get(kind, [("Name", "string", 0), ("Age", "string", 0)])


def _cells(kind: str, obj: Obj) -> list[Any]:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    name, age = meta.get("name", ""), human_age(meta.get("creationTimestamp"))
    names = ",".join(c.get("name", "") for c in _containers(obj))
    images = ",".join(c.get("image", "") for c in _containers(obj))
    if kind == "Deployment":
        return [name, f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", status.get("updatedReplicas", 0),
                status.get("availableReplicas", 0), age, names, images, _selector_text(obj)]
    if kind == "ReplicaSet":
        return [name, spec.get("replicas", 0), status.get("replicas", 0), status.get("readyReplicas", 0), age, names,
                images, _selector_text(obj)]
    if kind == "StatefulSet":
        return [name, f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", age, names, images]
    if kind == "Pod":
        statuses = status.get("containerStatuses") or []
        ready = sum(1 for cs in statuses if cs.get("ready"))
        restarts = sum(int(cs.get("restartCount", 0)) for cs in statuses)
        return [name, f"{ready}/{len(_containers(obj, template=False))}", pod_status_text(obj), str(restarts), age,
                status.get("podIP") or "<none>", spec.get("nodeName") or "<none>"]
    if kind == "Service":
        ports = ",".join(f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/"
                         f"{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
        selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items()) or "<none>"
        return [name, spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>", "<none>", ports, age,
                selector]
    if kind == "Endpoints":
        addrs = [f"{a.get('ip')}:{p.get('port')}" for sub in obj.get("subsets") or []
                 for a in sub.get("addresses") or [] for p in sub.get("ports") or [{}]]
        return [name, ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "") or "<none>",
                age]
    if kind == "Job":
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        state = ("Complete" if conditions.get("Complete") == "True" else "Failed"
                 if conditions.get("Failed") == "True" else "Running")
        return [name, state, f"{status.get('succeeded', 0)}/{spec.get('completions', 1)}", age, names, images]
    if kind == "Namespace":
        return [name, status.get("phase", "Active"), age]
    if kind == "Event":
        involved = obj.get("involvedObject") or {}
        return [human_age(obj.get("lastTimestamp") or meta.get("creationTimestamp")), obj.get("type", ""),
                obj.get("reason", ""), f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
                obj.get("message", "")]
    return [name, age]


def table_for(res: Resource, items: list[Obj], list_meta: Obj, include_object: str = "Metadata") -> Obj:
    def row_object(obj: Obj) -> Obj | None:
        if include_object == "None":
            return None
        if include_object == "Object":
            return obj
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}

    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": n, "priority": p}
            for n, t, p in _columns(res.kind)
        ],
        "rows": [{"cells": _cells(res.kind, obj), "object": row_object(obj)} for obj in items],
    }
