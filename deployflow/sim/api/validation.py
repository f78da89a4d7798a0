"""What the apiserver does to an object before storing it: validation (422 with causes), defaulting, and pruning
fields the type does not have (with warnings, or 400 under `fieldValidation=Strict`)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from deployflow.sim.api.errors import invalid
from deployflow.sim.openapi import Schema
from deployflow.sim.store import Obj, Resource, StoreError

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
