"""Subresources: `scale` (GET, PUT and every PATCH type), `log` of pods, and the Service `proxy` into simulated
traffic. (`status` is an update of one field and lives with the writes.)"""

from __future__ import annotations

import copy
from typing import Protocol

from aiohttp import web

from deployflow.sim import resources as R
from deployflow.sim.api.crud import Crud
from deployflow.sim.api.errors import invalid
from deployflow.sim.api.http import field_manager, is_dry_run, json_response, read_body
from deployflow.sim.api.patching import patched
from deployflow.sim.patch import merge_patch
from deployflow.sim.store import Obj, Resource, Store, StoreError, not_found


class TrafficLike(Protocol):
    def proxy(self, namespace: str, service: str, path: str) -> tuple[int, dict]: ...
    def metrics_text(self) -> str: ...


def pod_log(store: Store, res: Resource, namespace: str | None, name: str, request: web.Request) -> web.Response:
    pod = store.get(res, namespace, name)
    if pod is None:
        raise not_found(res, name)
    text = (pod.get("metadata", {}).get("annotations") or {}).get("sim.deployflow.io/log")
    if text is None:
        containers = [c.get("name") for c in pod.get("spec", {}).get("containers", [])]
        container = request.query.get("container") or (containers[0] if containers else "app")
        phase = pod.get("status", {}).get("phase", "Pending")
        image = next((c.get("image") for c in pod.get("spec", {}).get("containers", [])
                      if c.get("name") == container), "")
        text = (f"starting {container} ({image})\n"
                f"pod {name} phase {phase}\n")
        if phase == "Succeeded":
            text += "done: all checks passed\n"
        elif phase == "Failed":
            text += "error: exited with a non-zero code\n"
    lines = text.splitlines()
    if tail := request.query.get("tailLines"):
        lines = lines[-int(tail):]
    return web.Response(text="".join(line + "\n" for line in lines), content_type="text/plain")


def service_proxy(store: Store, traffic: TrafficLike | None, namespace: str, service: str,
                  rest: list[str]) -> web.Response:
    name = service.split(":", 1)[0]
    if store.get(R.SERVICES, namespace, name) is None:
        raise not_found(R.SERVICES, name)
    path = "/" + "/".join(rest)
    if traffic is None:
        raise StoreError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    code, body = traffic.proxy(namespace, name, path)
    return json_response(body, code)


def _scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    selector = (obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
        "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in selector.items())},
    }


async def scale(api: Crud, request: web.Request, res: Resource, namespace: str | None, name: str) -> web.Response:
    body = await read_body(request) if request.method in ("PUT", "PATCH") else None
    with api.store.lock:
        current = api.store.get(res, namespace, name)
        if current is None:
            raise not_found(res, name)
        scale = _scale_of(current)
        if request.method == "GET":
            return json_response(scale)
        if request.method == "PUT":
            new_scale = body
        elif request.method == "PATCH":
            if request.content_type == "application/apply-patch+yaml":
                new_scale = merge_patch(scale, body)
            else:
                new_scale = patched(request.content_type, R.DEPLOYMENTS if request.content_type.startswith(
                    "application/strategic") else res, scale, body)
        else:
            raise StoreError(405, "MethodNotAllowed", "the server does not allow this method on scale")
        if not isinstance(new_scale, dict):
            raise StoreError(400, "BadRequest", "a Scale object is required")
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(res, name, [("FieldValueInvalid", "spec.replicas",
                                       f"Invalid value: {replicas!r}: must be greater than or equal to 0")])
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if rv and str(rv) != current["metadata"]["resourceVersion"]:
            raise StoreError(409, "Conflict", f'Operation cannot be fulfilled on {res.key} "{name}": the object '
                             "has been modified; please apply your changes to the latest version and try again")
        new = copy.deepcopy(current)
        new.setdefault("spec", {})["replicas"] = replicas
        api.managers.record(res, current, new, field_manager(request), "Update", subresource="scale")
        if is_dry_run(request):
            return json_response(_scale_of(new))
        updated = api.store.update(res, new, check_rv=False)
        return json_response(_scale_of(updated))
