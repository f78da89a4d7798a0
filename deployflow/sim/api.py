"""The simulator's Kubernetes REST API: the HTTP layer kubectl and the official client talk to.

Routes follow the apiserver's: discovery (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`), `/version`,
`/openapi/v3`, and per resource `/api/v1/namespaces/<ns>/<plural>[/<name>[/<subresource>]]` with list, watch,
create, update, the four patch types, delete with cascade, and the status, scale, log and service-proxy
subresources. Errors are `Status` bodies with the codes a real apiserver uses (404, 409, 410, 422...).

Why not kmock (0.8, the Kubernetes API emulator by kopf's author) as a base, checked against its source:
its `KubernetesEmulator` is built for scripting expected requests and answers in operator unit tests, and its
object tracking does not have the semantics our activities depend on:
- no resourceVersions: lists answer `resourceVersion: "..."`, objects get none, so there is no 409 Conflict on a
  stale update and no watch from a resourceVersion (a watch always replays every object as ADDED, then follows
  live events; no 410 Gone, no bookmarks, no `timeoutSeconds`, which it marks as a TODO);
- every PUT and PATCH is the same recursive dict merge: no JSON patch, no strategic merge (no list merge keys),
  no server-side apply or managedFields, no `dryRun`;
- no label or field selectors (only name and namespace filters), no owner-reference cascade, no status or scale
  subresources, no validation or 422 bodies, and creating in a missing namespace succeeds;
- no OpenAPI documents, so `kubectl apply` cannot validate or find merge keys against it;
- no controllers, traffic or service proxy.
What it would contribute (aiohttp routing, discovery lists, JSON patch via the `jsonpatch` package) is the small
part; the store, watch and patch semantics would have been written beside it anyway. So this module uses aiohttp
directly and `jsonpatch` for RFC 6902.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import yaml
from aiohttp import web

from deployflow.sim import protobuf
from deployflow.sim import resources as R
from deployflow.sim.faults import Faults
from deployflow.sim.openapi import Schema, document_hash, group_version_document
from deployflow.sim.patch import FieldManagers, apply_patch_obj, json_patch, merge_patch, strategic_merge
from deployflow.sim.store import Obj, Resource, Store, StoreError, WatchEvent, not_found, now_iso

log = logging.getLogger(__name__)

KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-deployflow-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}

DEFAULT_WATCH_TIMEOUT = 1800.0
BOOKMARK_INTERVAL = 1.0
CONTENT_JSON = "application/json"


class TrafficLike(Protocol):
    def proxy(self, namespace: str, service: str, path: str) -> tuple[int, dict]: ...
    def metrics_text(self) -> str: ...


class ApiError(StoreError):
    pass


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type=CONTENT_JSON,
        headers=headers,
    )


def error_response(err: StoreError) -> web.Response:
    headers = {"Retry-After": "1"} if err.code in (429, 503) else None
    return json_response(status_body(err.code, err.reason, err.message, err.details), err.code, headers)


def invalid(res: Resource, name: str, causes: list[tuple[str, str, str]]) -> StoreError:
    """422 Invalid with one cause per field, each (reason, field, message), as the apiserver's validation."""
    msg = "; ".join(f"{f}: {m}" for _, f, m in causes)
    return StoreError(
        422,
        "Invalid",
        f'{res.kind}.{res.group or "core"} "{name}" is invalid: {msg}'.replace(".core ", " "),
        {
            "name": name,
            "group": res.group,
            "kind": res.kind,
            "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes],
        },
    )


# ---- selectors ------------------------------------------------------------------------------------


_SELECTOR_TERM = re.compile(
    r"^\s*(?:(?P<nkey>!)\s*(?P<nexists>[^\s=!(),]+)"
    r"|(?P<key>[^\s=!(),]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s=!(),]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


def _split_terms(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        terms.append(cur)
    return terms


def _label_check(term: str) -> Callable[[dict[str, str]], bool]:
    m = _SELECTOR_TERM.match(term)
    if not m:
        raise StoreError(400, "BadRequest", f"unable to parse requirement: invalid label selector {term!r}")
    if m.group("nkey"):
        absent = m.group("nexists")
        return lambda labels: absent not in labels
    key = m.group("key")
    if m.group("op"):
        value, negate = m.group("value"), m.group("op") == "!="
        return lambda labels: (labels.get(key) == value) != negate
    if m.group("setop"):
        values = {x.strip() for x in m.group("values").split(",") if x.strip()}
        negate = m.group("setop") == "notin"
        return lambda labels: (labels.get(key) in values) != negate
    return lambda labels: key in labels


def parse_label_selector(selector: str) -> Callable[[dict[str, str]], bool]:
    """Equality (`=`, `==`, `!=`), set (`in`, `notin`) and existence (`key`, `!key`) terms, ANDed."""
    checks = [_label_check(term) for term in _split_terms(selector or "")]
    return lambda labels: all(c(labels) for c in checks)


def _dig(obj: Obj, dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def parse_field_selector(selector: str) -> Callable[[Obj], bool]:
    """`metadata.name=x`, `metadata.namespace!=y`, `status.phase=Running`...: fields compared as strings."""
    checks: list[Callable[[Obj], bool]] = []
    for term in _split_terms(selector or ""):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise StoreError(400, "BadRequest", f"invalid field selector: {term!r}")
        path, op, value = m.groups()

        def check(obj: Obj, path: str = path, op: str = op, value: str = value) -> bool:
            actual = _dig(obj, path)
            actual_s = "" if actual is None else str(actual)
            return actual_s != value if op == "!=" else actual_s == value

        checks.append(check)
    return lambda obj: all(c(obj) for c in checks)


def object_filter(request: web.Request) -> Callable[[Obj], bool]:
    labels = parse_label_selector(request.query.get("labelSelector", ""))
    fields = parse_field_selector(request.query.get("fieldSelector", ""))
    return lambda obj: labels(obj.get("metadata", {}).get("labels") or {}) and fields(obj)


# ---- validation, defaults, pruning ----------------------------------------------------------------

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def validate(res: Resource, obj: Obj, old: Obj | None = None) -> None:
    """The apiserver's validation for what our resources need: names, labels, selectors, containers."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes: list[tuple[str, str, str]] = []
    pattern, limit = (_DNS_LABEL, 63) if res.kind in ("Namespace", "Service") else (_DNS_SUBDOMAIN, 253)
    if name and (len(name) > limit or not pattern.match(name)):
        causes.append(("FieldValueInvalid", "metadata.name",
                       f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of lower case '
                       "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"))
    for where in ("labels", "annotations"):
        for k, v in (meta.get(where) or {}).items():
            if not isinstance(v, str):
                causes.append(("FieldValueInvalid", f"metadata.{where}", f"Invalid value: {v!r}: must be a string"))
            elif where == "labels" and (len(v) > 63 or not _LABEL_VALUE.match(v)):
                causes.append(("FieldValueInvalid", "metadata.labels", f'Invalid value: "{v}": a valid label '
                               "must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"))
            key_name = k.rsplit("/", 1)[-1]
            if not _LABEL_NAME.match(key_name) or len(key_name) > 63:
                causes.append(("FieldValueInvalid", f"metadata.{where}", f'Invalid value: "{k}": name part '
                               "must consist of alphanumeric characters, '-', '_' or '.'"))
    spec = obj.get("spec") or {}
    if res.kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        selector = spec.get("selector")
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            causes.append(("FieldValueRequired", "spec.selector", "Required value"))
        elif not _selector_matches(selector, template_labels):
            causes.append(("FieldValueInvalid", "spec.template.metadata.labels",
                           f"Invalid value: {json.dumps(template_labels)}: `selector` does not match template "
                           "`labels`"))
        if old is not None and res.kind != "ReplicaSet" and selector != (old.get("spec") or {}).get("selector"):
            causes.append(("FieldValueInvalid", "spec.selector", "Invalid value: field is immutable"))
        replicas = spec.get("replicas", 1)
        if isinstance(replicas, int) and replicas < 0:
            causes.append(("FieldValueInvalid", "spec.replicas",
                           f"Invalid value: {replicas}: must be greater than or equal to 0"))
        causes += _pod_spec_causes((spec.get("template") or {}).get("spec"), "spec.template.spec")
    elif res.kind == "Job":
        pod_spec = (spec.get("template") or {}).get("spec")
        causes += _pod_spec_causes(pod_spec, "spec.template.spec")
        if (pod_spec or {}).get("restartPolicy") not in ("Never", "OnFailure"):
            causes.append(("FieldValueRequired", "spec.template.spec.restartPolicy",
                           'Required value: valid values: "OnFailure", "Never"'))
    elif res.kind == "Pod":
        causes += _pod_spec_causes(spec, "spec")
    elif res.kind == "Service":
        for i, port in enumerate(spec.get("ports") or []):
            p = port.get("port")
            if not isinstance(p, int) or not 0 < p < 65536:
                causes.append(("FieldValueInvalid", f"spec.ports[{i}].port",
                               f"Invalid value: {p!r}: must be between 1 and 65535, inclusive"))
    if causes:
        raise invalid(res, name, causes)


def _pod_spec_causes(pod_spec: Obj | None, path: str) -> list[tuple[str, str, str]]:
    if not pod_spec or not pod_spec.get("containers"):
        return [("FieldValueRequired", f"{path}.containers", "Required value")]
    causes = []
    seen: set[str] = set()
    for i, c in enumerate(pod_spec["containers"]):
        cname = c.get("name")
        if not cname:
            causes.append(("FieldValueRequired", f"{path}.containers[{i}].name", "Required value"))
        elif cname in seen:
            causes.append(("FieldValueDuplicate", f"{path}.containers[{i}].name", f'Duplicate value: "{cname}"'))
        elif not _DNS_LABEL.match(cname):
            causes.append(("FieldValueInvalid", f"{path}.containers[{i}].name",
                           f'Invalid value: "{cname}": a lowercase RFC 1123 label must consist of lower case '
                           "alphanumeric characters or '-'"))
        seen.add(cname or "")
        if not c.get("image"):
            causes.append(("FieldValueRequired", f"{path}.containers[{i}].image", "Required value"))
    return causes


def apply_defaults(res: Resource, obj: Obj) -> None:
    """The defaults a real apiserver fills in, so objects read back look the same as on a cluster."""
    if res.kind == "Secret":
        obj.setdefault("type", "Opaque")
        # stringData is write-only: the apiserver folds it into data, base64-encoded.
        for key, value in (obj.pop("stringData", None) or {}).items():
            obj.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode()
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if res.kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
    if res.kind == "Deployment":
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxSurge", "25%")
            ru.setdefault("maxUnavailable", "25%")
        spec.setdefault("progressDeadlineSeconds", 600)
    if res.kind == "Job":
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
    if res.kind == "Service":
        spec.setdefault("type", "ClusterIP")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            if "targetPort" not in port and "port" in port:
                port["targetPort"] = port["port"]
    template = spec.get("template") if res.kind != "Pod" else {"spec": spec}
    pod_spec = (template or {}).get("spec") if isinstance(template, dict) else None
    if isinstance(pod_spec, dict):
        pod_spec.setdefault("restartPolicy", "Always")
        pod_spec.setdefault("terminationGracePeriodSeconds", 30)
        pod_spec.setdefault("dnsPolicy", "ClusterFirst")
        for c in pod_spec.get("containers") or []:
            if isinstance(c, dict):
                image = str(c.get("image", ""))
                c.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image
                             else "IfNotPresent")
                for p in c.get("ports") or []:
                    if isinstance(p, dict):
                        p.setdefault("protocol", "TCP")


_TYPE_NAMES = {"str": "string", "int": "int", "bool": "bool", "float": "float64"}


def prune(obj: Any, schema: Schema, path: str, unknown: list[str]) -> Any:
    """Drops fields the type does not have, as the apiserver's decoder does, and records them for warnings.

    A wrong JSON type (a string where an integer belongs) is a 400 like the decoder's error.
    """
    if schema.schemaless:
        return obj
    t = schema.type or ""
    if t in _TYPE_NAMES or t in ("datetime", "date", "bytes"):
        expected: Any = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str, "date": str,
                         "bytes": str}[t]
        if obj is not None and (not isinstance(obj, expected) or (t == "int" and isinstance(obj, bool))):
            raise StoreError(400, "BadRequest", f"json: cannot unmarshal {type(obj).__name__} into Go struct field "
                             f"{path} of type {_TYPE_NAMES.get(t, 'string')}")
        return obj
    if t.startswith("List["):
        if obj is None:
            return obj
        if not isinstance(obj, list):
            raise StoreError(400, "BadRequest", f"json: cannot unmarshal {type(obj).__name__} into Go struct field "
                             f"{path} of type array")
        return [prune(v, schema.item(), f"{path}[{i}]", unknown) for i, v in enumerate(obj)]
    if not isinstance(obj, dict):
        if obj is None:
            return obj
        raise StoreError(400, "BadRequest", f"json: cannot unmarshal {type(obj).__name__} into Go struct field "
                         f"{path} of type object")
    if schema.is_map():
        return {k: prune(v, schema.item(), f"{path}.{k}", unknown) for k, v in obj.items()}
    out = {}
    for k, v in obj.items():
        if schema.knows(k):
            out[k] = prune(v, schema.field(k), f"{path}.{k}" if path else k, unknown)
        else:
            unknown.append(f"{path}.{k}" if path else k)
    return out


# ---- the application ---------------------------------------------------------------------------------


def _parse_rv(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value or 0)
    except ValueError as e:
        raise StoreError(400, "BadRequest", f"invalid resource version {value!r}") from e


class ApiServer:
    """Routes Kubernetes REST requests onto the store."""

    def __init__(
        self,
        store: Store,
        faults: Faults,
        traffic: Callable[[], TrafficLike | None] = lambda: None,
        served: tuple[Resource, ...] = R.ALL,
    ) -> None:
        self.store = store
        self.faults = faults
        self.traffic = traffic
        self.served = served
        self.managers = FieldManagers()
        self._next_ip = 0
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    # -- plumbing --

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        try:
            return await self._route(request)
        except StoreError as e:
            return error_response(e)
        except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
            return error_response(StoreError(400, "BadRequest", f"the body of the request was in an unknown "
                                             f"format: {e}"))
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            raise
        except Exception as e:  # an unexpected bug must still answer like an apiserver, and be logged
            log.exception("simulator API: %s %s failed", request.method, request.path_qs)
            return error_response(StoreError(500, "InternalError", f"Internal error occurred: {e!r}"))

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/metrics", "/openapi/v3", "/version"]})
        head = parts[0]
        if head == "version":
            return json_response(KUBE_VERSION)
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if head == "metrics":
            traffic = self.traffic()
            return web.Response(text=traffic.metrics_text() if traffic else "", content_type="text/plain",
                                charset="utf-8")
        if head == "openapi":
            return self.openapi(parts[1:], request)
        if head == "api":
            if len(parts) == 1:
                return json_response({
                    "kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
                })
            if len(parts) == 2:
                return self.resource_list("", parts[1])
            return await self.resource_request(request, "", parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return json_response(self.group_list())
            if len(parts) == 2:
                group = next((g for g in self.group_list()["groups"] if g["name"] == parts[1]), None)
                if group is None:
                    raise StoreError(404, "NotFound", "the server could not find the requested resource")
                return json_response({"kind": "APIGroup", "apiVersion": "v1", **group})
            if len(parts) == 3:
                return self.resource_list(parts[1], parts[2])
            return await self.resource_request(request, parts[1], parts[2], parts[3:])
        raise StoreError(404, "NotFound", "the server could not find the requested resource")

    # -- discovery --

    def group_list(self) -> Obj:
        groups: dict[str, list[str]] = {}
        for res in self.served:
            if res.group:
                versions = groups.setdefault(res.group, [])
                if res.version not in versions:
                    versions.append(res.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                }
                for g, vs in groups.items()
            ],
        }

    def resource_list(self, group: str, version: str) -> web.Response:
        served = [r for r in self.served if r.group == group and r.version == version]
        if not served:
            raise StoreError(404, "NotFound", "the server could not find the requested resource")
        out = []
        for res in served:
            entry: Obj = {
                "name": res.plural,
                "singularName": res.singular or res.kind.lower(),
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": list(res.verbs),
                "storageVersionHash": document_hash({"k": res.key})[:12],
            }
            if res.short_names:
                entry["shortNames"] = list(res.short_names)
            if res.categories:
                entry["categories"] = list(res.categories)
            out.append(entry)
            for sub in res.subresources:
                sub_entry: Obj = {"name": f"{res.plural}/{sub}", "singularName": "", "namespaced": res.namespaced,
                                  "kind": res.kind, "verbs": ["get", "patch", "update"]}
                if sub == "scale":
                    sub_entry.update(group="autoscaling", version="v1", kind="Scale")
                elif sub == "log":
                    sub_entry.update(kind="Pod", verbs=["get"])
                elif sub == "proxy":
                    sub_entry.update(kind="ServiceProxyOptions",
                                     verbs=["create", "delete", "get", "patch", "update"])
                out.append(sub_entry)
        gv = f"{group}/{version}" if group else version
        return json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})

    def openapi(self, parts: list[str], request: web.Request) -> web.Response:
        if parts == ["v3"]:
            paths = {}
            for gv in sorted({r.group_version for r in self.served}):
                key = f"api/{gv}" if "/" not in gv else f"apis/{gv}"
                doc = self._gv_doc(gv)
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={document_hash(doc)}"}
            return json_response({"paths": paths})
        if len(parts) >= 3 and parts[0] == "v3":
            rest = parts[1:]
            gv = rest[1] if rest[0] == "api" and len(rest) == 2 else "/".join(rest[1:3]) if rest[0] == "apis" else ""
            if any(r.group_version == gv for r in self.served):
                return json_response(self._gv_doc(gv))
        raise StoreError(404, "NotFound", "the server could not find the requested resource")

    def _gv_doc(self, gv: str) -> Obj:
        return group_version_document(gv, tuple(r for r in self.served if r.group_version == gv))

    # -- resources --

    def _resource(self, group: str, version: str, plural: str) -> Resource:
        for res in self.served:
            if res.group == group and res.version == version and res.plural == plural:
                return res
        raise StoreError(404, "NotFound", "the server could not find the requested resource")

    def resolve(self, api_version: str, kind: str) -> Resource | None:
        return next((r for r in self.served if r.group_version == api_version and r.kind == kind), None)

    async def resource_request(
        self, request: web.Request, group: str, version: str, parts: list[str]
    ) -> web.StreamResponse:
        watch = request.query.get("watch") in ("1", "true", "True")
        if parts[0] == "watch":  # the deprecated /watch/ paths, still used by some clients
            watch, parts = True, parts[1:]
        namespace: str | None = None
        if len(parts) >= 3 and parts[0] == "namespaces" and any(
            r.plural == parts[2] and r.namespaced and r.group == group for r in self.served
        ):
            namespace, parts = parts[1], parts[2:]
        res = self._resource(group, version, parts[0])
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        if sub and sub not in res.subresources:
            raise StoreError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and name is not None and namespace is None:
            raise StoreError(404, "NotFound", "the server could not find the requested resource")

        fault = self.faults.draw(write=request.method not in ("GET", "HEAD"))
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.code is not None:
            reasons = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                       504: "Timeout"}
            raise StoreError(fault.code, reasons.get(fault.code, "InternalError"),
                             f"injected fault: {fault.code} for {request.method} {request.path}")

        method = request.method
        if sub == "proxy":
            return self.service_proxy(namespace or "", name or "", parts[3:])
        if sub == "log":
            return self.pod_log(res, namespace, name or "", request)
        if sub == "scale":
            return await self.scale(request, res, namespace, name or "")
        if name is None:
            if method == "GET":
                if watch:
                    return await self.watch(request, res, namespace)
                return self.list_objects(request, res, namespace)
            if method == "POST":
                return await self.create(request, res, namespace)
            if method == "DELETE":
                return await self.delete_collection(request, res, namespace)
        else:
            if method == "GET":
                obj = self.store.get(res, namespace, name)
                if obj is None:
                    raise not_found(res, name)
                if _wants_table(request):
                    return json_response(table_for(res, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                                   request.query.get("includeObject", "Metadata")))
                return json_response(obj)
            if method == "PUT":
                return await self.replace(request, res, namespace, name, sub)
            if method == "PATCH":
                return await self.patch(request, res, namespace, name, sub)
            if method == "DELETE" and sub is None:
                return await self.delete(request, res, namespace, name)
        raise StoreError(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                         f"resource: {method} {request.path}")

    # -- reads --

    def list_objects(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        keep = object_filter(request)
        with self.store.lock:
            items = self.store.list(res, namespace, keep)
            rv = str(self.store.resource_version)
        meta: Obj = {"resourceVersion": rv}
        limit = int(request.query.get("limit", "0") or 0)
        start = 0
        if cont := request.query.get("continue"):
            try:
                start, rv = (lambda d: (int(d["start"]), d["rv"]))(json.loads(base64.b64decode(cont)))
            except (ValueError, KeyError) as e:
                raise StoreError(400, "BadRequest", "invalid continue token") from e
            meta["resourceVersion"] = rv
        if limit > 0:
            rest = len(items) - start - limit
            items = items[start:start + limit]
            if rest > 0:
                token = {"start": start + limit, "rv": rv}
                meta["continue"] = base64.b64encode(json.dumps(token).encode()).decode()
                meta["remainingItemCount"] = rest
        else:
            items = items[start:]
        if _wants_table(request):
            return json_response(table_for(res, items, meta, request.query.get("includeObject", "Metadata")))
        body = {"kind": f"{res.kind}List", "apiVersion": res.group_version, "metadata": meta, "items": items}
        return json_response(body)

    async def watch(self, request: web.Request, res: Resource, namespace: str | None) -> web.StreamResponse:
        keep = object_filter(request)
        rv_param = request.query.get("resourceVersion")
        since = _parse_rv(rv_param)
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true", "True")
        timeout = float(request.query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()

        def enqueue(event: WatchEvent) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        initial: list[Obj] = []
        initial_keys: list[tuple[str, str]] = []
        error: StoreError | None = None

        def unsubscribe() -> None:
            return None

        with self.store.lock:
            if since in (None, 0):
                # No (or "any") resourceVersion: the current state as ADDED events, then changes, like the apiserver.
                initial = self.store.list(res, namespace)
                current_rv = self.store.resource_version
                unsubscribe = self.store.subscribe(res, namespace, enqueue)
            else:
                initial_keys = [_obj_key(o) for o in self.store.list(res, namespace, keep)]
                current_rv = since or 0
                try:
                    unsubscribe = self.store.subscribe(
                        res, namespace, enqueue, since=since)
                except StoreError as e:
                    error = e

        resp = web.StreamResponse(headers={"Content-Type": CONTENT_JSON, "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        selective = bool(request.query.get("labelSelector") or request.query.get("fieldSelector"))
        visibility = _Visibility(keep, initial_keys + [_obj_key(o) for o in initial if keep(o)]) if selective else None
        as_table = _wants_table(request)
        include = request.query.get("includeObject", "Metadata")

        async def send(etype: str, obj: Obj) -> None:
            if as_table and etype in ("ADDED", "MODIFIED", "DELETED"):
                obj = table_for(res, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")}, include)
            await resp.write(json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n")

        try:
            if error is not None:
                await send("ERROR", status_body(error.code, error.reason, error.message))
                return resp
            for obj in initial:
                if keep(obj):
                    await send("ADDED", obj)
            deadline = time.monotonic() + timeout
            last_rv = current_rv
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), min(remaining, BOOKMARK_INTERVAL))
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break  # the client went away; aiohttp does not cancel handlers for that
                    if bookmarks:
                        await send("BOOKMARK", {"kind": res.kind, "apiVersion": res.group_version,
                                                "metadata": {"resourceVersion": str(last_rv)}})
                    continue
                if event is None:
                    break
                last_rv = event.resource_version
                etype = visibility.translate(event.type, event.object, event.old) if visibility else (
                    event.type if keep(event.object) else None)
                if etype:
                    await send(etype, event.object)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
        return resp

    def pod_log(self, res: Resource, namespace: str | None, name: str, request: web.Request) -> web.Response:
        pod = self.store.get(res, namespace, name)
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

    def service_proxy(self, namespace: str, service: str, rest: list[str]) -> web.Response:
        name = service.split(":", 1)[0]
        if self.store.get(R.SERVICES, namespace, name) is None:
            raise not_found(R.SERVICES, name)
        traffic = self.traffic()
        path = "/" + "/".join(rest)
        if traffic is None:
            raise StoreError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        code, body = traffic.proxy(namespace, name, path)
        return json_response(body, code)

    # -- writes --

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        ctype = request.content_type
        if ctype == "application/vnd.kubernetes.protobuf":
            return protobuf.decode(raw)
        if "protobuf" in ctype or "cbor" in ctype:
            raise StoreError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                             f'accepted media types include: application/json, application/yaml; got "{ctype}"')
        if ctype.endswith("yaml"):
            return yaml.safe_load(raw)
        return json.loads(raw)

    def _manager(self, request: web.Request, default_from_agent: bool = True) -> str:
        manager = request.query.get("fieldManager")
        if manager:
            return manager
        agent = request.headers.get("User-Agent", "unknown")
        return agent.split("/", 1)[0] if default_from_agent else ""

    def _prepare(self, request: web.Request, res: Resource, obj: Any, namespace: str | None,
                 name: str | None) -> tuple[Obj, list[str]]:
        """Checks a request body for create or update: kind, names, namespace; prunes unknown fields."""
        if not isinstance(obj, dict):
            raise StoreError(400, "BadRequest", "the body of the request was in an unknown format")
        for field, expected in (("apiVersion", res.group_version), ("kind", res.kind)):
            if obj.get(field) and obj[field] != expected:
                raise StoreError(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) and "
                                 f"kind ({obj.get('kind')}) do not match the resource {res.key}")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise StoreError(400, "BadRequest", "metadata must be an object")
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise StoreError(400, "BadRequest", "the namespace of the provided object does not match the "
                                 "namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") and meta["name"] != name:
            raise StoreError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if name is not None:
            meta["name"] = name
        unknown: list[str] = []
        pruned = prune(obj, Schema.for_kind(res.group_version, res.kind), "", unknown)
        if unknown and request.query.get("fieldValidation") == "Strict":
            raise StoreError(400, "BadRequest", "strict decoding error: " + ", ".join(
                f'unknown field "{u}"' for u in unknown))
        return pruned, unknown

    def _allocate_cluster_ip(self, svc: Obj) -> None:
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName" or spec.get("clusterIP"):
            return
        self._next_ip += 1
        ip = f"10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    def _check_namespace(self, res: Resource, namespace: str | None) -> None:
        if res.namespaced and self.store.get(R.NAMESPACES, None, namespace or "") is None:
            raise StoreError(404, "NotFound", f'namespaces "{namespace}" not found',
                             {"name": namespace, "kind": "namespaces"})

    @staticmethod
    def _dry_run(request: web.Request) -> bool:
        return "All" in request.query.getall("dryRun", [])

    @staticmethod
    def _warnings(unknown: list[str]) -> dict[str, str] | None:
        if not unknown:
            return None
        return {"Warning": ", ".join(f'299 - "unknown field \\"{u}\\""' for u in unknown)}

    async def create(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        obj, unknown = self._prepare(request, res, await self._body(request), namespace, None)
        return self._create(request, res, namespace, obj, unknown, self._manager(request), "Update")

    def _create(self, request: web.Request, res: Resource, namespace: str | None, obj: Obj, unknown: list[str],
                manager: str, operation: str) -> web.Response:
        self._check_namespace(res, namespace)
        apply_defaults(res, obj)
        validate(res, obj)
        meta = obj["metadata"]
        if not meta.get("name") and not meta.get("generateName"):
            raise invalid(res, "", [("FieldValueRequired", "metadata.name", "Required value: name or "
                                     "generateName is required")])
        if "status" in res.subresources:
            obj.pop("status", None)
        if res.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if res.kind == "Service":
            self._allocate_cluster_ip(obj)
        if operation == "Update" or not meta.get("managedFields"):
            self.managers.record(res, None, obj, manager, operation)
        if self._dry_run(request):
            with self.store.lock:
                if self.store.get(res, namespace, meta.get("name", "")) is not None:
                    raise StoreError(409, "AlreadyExists", f'{res.key} "{meta["name"]}" already exists')
            meta.setdefault("uid", "00000000-0000-0000-0000-000000000000")
            meta["creationTimestamp"] = now_iso()
            obj["apiVersion"], obj["kind"] = res.group_version, res.kind
            return json_response(obj, 201, self._warnings(unknown))
        created = self.store.create(res, obj)
        return json_response(created, 201, self._warnings(unknown))

    async def replace(self, request: web.Request, res: Resource, namespace: str | None, name: str,
                      sub: str | None) -> web.Response:
        obj, unknown = self._prepare(request, res, await self._body(request), namespace, name)
        with self.store.lock:
            current = self.store.get(res, namespace, name)
            if current is None:
                raise not_found(res, name)
            return self._update(request, res, current, obj, unknown, sub, self._manager(request), "Update")

    def _update(self, request: web.Request, res: Resource, current: Obj, new: Obj, unknown: list[str],
                sub: str | None, manager: str, operation: str) -> web.Response:
        if sub == "status":
            merged = copy.deepcopy(current)
            merged["status"] = new.get("status", {})
            if new["metadata"].get("resourceVersion"):
                merged["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"]
            new = merged
        elif "status" in res.subresources:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        if res.kind == "Service" and isinstance(new.get("spec"), dict):
            for keep in ("clusterIP", "clusterIPs"):  # allocated once, kept when a client omits them
                if keep in (current.get("spec") or {}) and not new["spec"].get(keep):
                    new["spec"][keep] = current["spec"][keep]
        apply_defaults(res, new)
        validate(res, new, current)
        # A write that sets managedFields itself (kubectl's client-side-apply migration) is taken as sent.
        sent_fields = new["metadata"].get("managedFields")
        if operation == "Update" and (sent_fields is None or sent_fields == current["metadata"].get("managedFields")):
            new["metadata"]["managedFields"] = copy.deepcopy(current["metadata"].get("managedFields", []))
            self.managers.record(res, current, new, manager, operation, subresource=sub)
        if self._dry_run(request):
            rv = new["metadata"].get("resourceVersion")
            if rv and str(rv) != current["metadata"]["resourceVersion"]:
                raise StoreError(409, "Conflict", f'Operation cannot be fulfilled on {res.key} '
                                 f'"{current["metadata"]["name"]}": the object has been modified; please apply your '
                                 "changes to the latest version and try again")
            for keep in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                if keep in current["metadata"]:
                    new["metadata"][keep] = current["metadata"][keep]
            return json_response(new, 200, self._warnings(unknown))
        updated = self.store.update(res, new, subresource="status" if sub == "status" else None)
        return json_response(updated, 200, self._warnings(unknown))

    async def patch(self, request: web.Request, res: Resource, namespace: str | None, name: str,
                    sub: str | None) -> web.Response:
        body = await self._body(request)
        ctype = request.content_type
        with self.store.lock:
            current = self.store.get(res, namespace, name)
            if ctype == "application/apply-patch+yaml":
                return self._apply(request, res, namespace, name, sub, current, body)
            if current is None:
                raise not_found(res, name)
            patched = self._patched(ctype, res, current, body)
            obj, unknown = self._prepare(request, res, patched, namespace, name)
            manager = self._manager(request)
            return self._update(request, res, current, obj, unknown, sub, manager, "Update")

    @staticmethod
    def _patched(ctype: str, res: Resource, current: Obj, body: Any) -> Obj:
        if ctype == "application/merge-patch+json":
            if not isinstance(body, dict):
                raise StoreError(400, "BadRequest", "merge patch must be a JSON object")
            return merge_patch(current, body)
        if ctype == "application/json-patch+json":
            return json_patch(current, body)
        if ctype == "application/strategic-merge-patch+json":
            if not isinstance(body, dict):
                raise StoreError(400, "BadRequest", "strategic merge patch must be a JSON object")
            if Schema.for_kind(res.group_version, res.kind).schemaless:
                raise StoreError(415, "UnsupportedMediaType", "strategic merge patch is not supported for "
                                 f"{res.key}: use a JSON merge patch")
            result = strategic_merge(current, body, Schema.for_kind(res.group_version, res.kind))
            return result if isinstance(result, dict) else {}
        raise StoreError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                         f'accepted media types include: application/json-patch+json, application/merge-patch+json, '
                         f'application/apply-patch+yaml, application/strategic-merge-patch+json; got "{ctype}"')

    def _apply(self, request: web.Request, res: Resource, namespace: str | None, name: str, sub: str | None,
               current: Obj | None, body: Any) -> web.Response:
        manager = request.query.get("fieldManager")
        if not manager:
            raise StoreError(422, "Invalid", "fieldManager: Required value: is required for apply patch",
                             {"causes": [{"reason": "FieldValueRequired", "field": "fieldManager",
                                          "message": "Required value: is required for apply patch"}]})
        force = request.query.get("force") in ("true", "1", "True")
        if not isinstance(body, dict):
            raise StoreError(400, "BadRequest", "apply patch must be an object")
        applied, unknown = self._prepare(request, res, copy.deepcopy(body), namespace, name)
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise StoreError(400, "BadRequest", "apiVersion and kind must be set in an apply patch")
        schema = Schema.for_kind(res.group_version, res.kind)
        if current is None:
            if sub:
                raise not_found(res, name)
            obj = apply_patch_obj(None, applied, manager, force, schema, res)
            return self._create(request, res, namespace, obj, unknown, manager, "Apply")
        obj = apply_patch_obj(current, applied, manager, force, schema, res, subresource=sub)
        return self._update(request, res, current, obj, unknown, sub, manager, "Apply")

    async def delete(self, request: web.Request, res: Resource, namespace: str | None, name: str) -> web.Response:
        opts = await self._body(request) or {}
        policy = request.query.get("propagationPolicy") or (opts.get("propagationPolicy") if isinstance(
            opts, dict) else None)
        with self.store.lock:
            current = self.store.get(res, namespace, name)
            if current is None:
                raise not_found(res, name)
            pre = (opts.get("preconditions") or {}) if isinstance(opts, dict) else {}
            if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
                raise StoreError(409, "Conflict", f"Precondition failed: UID in precondition: {pre['uid']}, "
                                 f"UID in object meta: {current['metadata']['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != current["metadata"]["resourceVersion"]:
                raise StoreError(409, "Conflict", "Precondition failed: ResourceVersion in precondition: "
                                 f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                 f"{current['metadata']['resourceVersion']}")
            if res.kind == "Namespace" and name in ("default", "kube-system", "kube-public"):
                raise StoreError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be '
                                 "deleted", {"name": name, "kind": "namespaces"})
            if self._dry_run(request):
                return json_response(current)
            if policy == "Orphan":
                self._orphan(current["metadata"]["uid"])
            gone = self.store.delete(res, namespace, name, resolve=self.resolve)
        if res.kind == "Pod":  # pods are deleted gracefully: the apiserver answers with the object
            return json_response(gone)
        return json_response({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": res.group, "kind": res.plural, "uid": gone["metadata"]["uid"]},
        })

    def _orphan(self, uid: str) -> None:
        for other in self.served:
            for obj in self.store.list(other):
                owners = obj["metadata"].get("ownerReferences") or []
                if any(o.get("uid") == uid for o in owners):
                    meta = obj["metadata"]
                    self.store.mutate(other, meta.get("namespace"), meta["name"], lambda o: o["metadata"].update(
                        ownerReferences=[x for x in o["metadata"].get("ownerReferences", []) if x.get("uid") != uid]
                    ))

    async def delete_collection(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        keep = object_filter(request)
        items = self.store.list(res, namespace, keep)
        if not self._dry_run(request):
            for obj in items:
                try:
                    self.store.delete(res, obj["metadata"].get("namespace"), obj["metadata"]["name"],
                                      resolve=self.resolve)
                except StoreError as e:
                    if e.code != 404:  # already gone through a cascade
                        raise
        return json_response({"kind": f"{res.kind}List", "apiVersion": res.group_version,
                              "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": items})

    # -- scale subresource --

    def _scale_of(self, obj: Obj) -> Obj:
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

    async def scale(self, request: web.Request, res: Resource, namespace: str | None, name: str) -> web.Response:
        body = await self._body(request) if request.method in ("PUT", "PATCH") else None
        with self.store.lock:
            current = self.store.get(res, namespace, name)
            if current is None:
                raise not_found(res, name)
            scale = self._scale_of(current)
            if request.method == "GET":
                return json_response(scale)
            if request.method == "PUT":
                new_scale = body
            elif request.method == "PATCH":
                if request.content_type == "application/apply-patch+yaml":
                    new_scale = merge_patch(scale, body)
                else:
                    new_scale = self._patched(request.content_type, R.DEPLOYMENTS if request.content_type.startswith(
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
            self.managers.record(res, current, new, self._manager(request), "Update", subresource="scale")
            if self._dry_run(request):
                return json_response(self._scale_of(new))
            updated = self.store.update(res, new, check_rv=False)
            return json_response(self._scale_of(updated))


def _obj_key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class _Visibility:
    """What a watch with a selector has shown: an object that stops matching is DELETED for this watcher, one
    that starts matching is ADDED, as the apiserver's watch cache reports selector transitions."""

    def __init__(self, keep: Callable[[Obj], bool], visible: list[tuple[str, str]]) -> None:
        self.keep = keep
        self.visible = set(visible)

    def translate(self, etype: str, obj: Obj, old: Obj | None = None) -> str | None:
        key, matches = _obj_key(obj), self.keep(obj)
        was = self.keep(old) if old is not None else key in self.visible
        if etype == "DELETED":
            self.visible.discard(key)
            return "DELETED" if was or matches else None
        if matches:
            self.visible.add(key)
            return "MODIFIED" if was and etype == "MODIFIED" else "ADDED"
        if was:
            self.visible.discard(key)
            return "DELETED"
        return None


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


# ---- server-side printing (`kubectl get`, `-o wide`) --------------------------------------------------


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
