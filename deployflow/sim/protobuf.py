"""Decoding the protobuf bodies kubectl's typed clients send (`kubectl create namespace|deployment|...`).

client-go always encodes built-in types as `application/vnd.kubernetes.protobuf` for creates made through its
typed clientset, and does not fall back to JSON on 415, so the generators of `kubectl create` need this. Only the
messages and fields those generators fill are mapped (field numbers from k8s.io/api's generated.proto); any other
non-empty field is refused with 415 naming it, rather than silently dropped, so a user knows to use `-f`.
Responses are always JSON: kubectl accepts both.
"""

from __future__ import annotations

import base64
from typing import Any

from deployflow.sim.store import StoreError

MAGIC = b"k8s\x00"

# message -> field number -> (JSON name, type). Types: string, int, bool, bytes, map (string->string),
# bytesmap (string->bytes), quantitymap (string->Quantity), intorstr, time, or another message's name;
# a trailing "[]" marks repeated fields.
MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "string"),
                4: ("contentType", "string")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
                   4: ("selfLink", "string"), 5: ("uid", "string"), 6: ("resourceVersion", "string"),
                   7: ("generation", "int"), 8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
                   10: ("deletionGracePeriodSeconds", "int"), 11: ("labels", "map"), 12: ("annotations", "map"),
                   14: ("finalizers", "string[]")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"), 3: ("status", "skip")},
    "NamespaceSpec": {1: ("finalizers", "string[]")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map"), 3: ("binaryData", "bytesmap"),
                  4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "bytesmap"), 3: ("type", "string"),
               4: ("stringData", "map"), 5: ("immutable", "bool")},
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec"), 3: ("status", "skip")},
    "DeploymentSpec": {1: ("replicas", "int0"), 2: ("selector", "LabelSelector"), 3: ("template", "PodTemplateSpec"),
                       4: ("strategy", "DeploymentStrategy"), 5: ("minReadySeconds", "int"),
                       6: ("revisionHistoryLimit", "int0"), 7: ("paused", "bool"),
                       9: ("progressDeadlineSeconds", "int0")},
    "DeploymentStrategy": {1: ("type", "string"), 2: ("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "intorstr"), 2: ("maxSurge", "intorstr")},
    "LabelSelector": {1: ("matchLabels", "map"), 2: ("matchExpressions", "LabelSelectorRequirement[]")},
    "LabelSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", "string[]")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {2: ("containers", "Container[]"), 3: ("restartPolicy", "string"),
                4: ("terminationGracePeriodSeconds", "int0"), 5: ("activeDeadlineSeconds", "int0"),
                6: ("dnsPolicy", "string"), 7: ("nodeSelector", "map"), 8: ("serviceAccountName", "string"),
                9: ("serviceAccount", "string"), 10: ("nodeName", "string"), 11: ("hostNetwork", "bool"),
                12: ("hostPID", "bool"), 13: ("hostIPC", "bool"), 16: ("hostname", "string"),
                17: ("subdomain", "string"), 19: ("schedulerName", "string"), 20: ("initContainers", "Container[]"),
                24: ("priorityClassName", "string")},
    "Container": {1: ("name", "string"), 2: ("image", "string"), 3: ("command", "string[]"),
                  4: ("args", "string[]"), 5: ("workingDir", "string"), 6: ("ports", "ContainerPort[]"),
                  7: ("env", "EnvVar[]"), 8: ("resources", "ResourceRequirements"),
                  13: ("terminationMessagePath", "string"), 14: ("imagePullPolicy", "string"),
                  16: ("stdin", "bool"), 17: ("stdinOnce", "bool"), 18: ("tty", "bool"),
                  20: ("terminationMessagePolicy", "string")},
    "ContainerPort": {1: ("name", "string"), 2: ("hostPort", "int"), 3: ("containerPort", "int"),
                      4: ("protocol", "string"), 5: ("hostIP", "string")},
    "EnvVar": {1: ("name", "string"), 2: ("value", "string")},
    "ResourceRequirements": {1: ("limits", "quantitymap"), 2: ("requests", "quantitymap")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec"), 3: ("status", "skip")},
    "ServiceSpec": {1: ("ports", "ServicePort[]"), 2: ("selector", "map"), 3: ("clusterIP", "string"),
                    4: ("type", "string"), 5: ("externalIPs", "string[]"), 7: ("sessionAffinity", "string"),
                    8: ("loadBalancerIP", "string"), 10: ("externalName", "string"),
                    11: ("externalTrafficPolicy", "string"), 13: ("publishNotReadyAddresses", "bool")},
    "ServicePort": {1: ("name", "string"), 2: ("protocol", "string"), 3: ("port", "int"),
                    4: ("targetPort", "intorstr"), 5: ("nodePort", "int")},
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec"), 3: ("status", "skip")},
    "JobSpec": {1: ("parallelism", "int0"), 2: ("completions", "int0"), 3: ("activeDeadlineSeconds", "int0"),
                4: ("selector", "LabelSelector"), 6: ("template", "PodTemplateSpec"), 7: ("backoffLimit", "int0"),
                8: ("ttlSecondsAfterFinished", "int0")},
}

KINDS = {("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("apps/v1", "Deployment"),
         ("batch/v1", "Job")}


def unsupported(message: str) -> StoreError:
    return StoreError(415, "UnsupportedMediaType", f"{message}; send JSON instead (kubectl create -f / apply -f)")


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(data):
            raise unsupported("truncated protobuf body")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            n, i = _varint(data, i)
            value, i = data[i:i + n], i + n
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise unsupported(f"protobuf wire type {wire} is not supported")
        out.append((number, wire, value))
    return out


def _empty(value: Any) -> bool:
    return value in ("", 0, False, b"", None) or value == {} or value == []


def _decode(data: bytes, message: str) -> dict[str, Any]:
    fields = MESSAGES[message]
    out: dict[str, Any] = {}
    for number, _wire, raw in _fields(data):
        if number not in fields:
            if not _empty(raw):
                raise unsupported(f"protobuf field {number} of {message} is not supported by the simulator")
            continue
        name, typ = fields[number]
        repeated = typ.endswith("[]")
        base = typ[:-2] if repeated else typ
        value = _value(raw, base)
        if base == "skip":
            continue
        if repeated:
            out.setdefault(name, []).append(value)
        elif base in ("map", "bytesmap", "quantitymap"):
            out.setdefault(name, {}).update(value)
        elif base == "int0" or not _empty(value):
            out[name] = value
    return out


def _value(raw: Any, typ: str) -> Any:
    if typ == "skip":
        return None
    if typ == "string":
        return bytes(raw).decode()
    if typ in ("int", "int0"):
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if typ == "bool":
        return bool(raw)
    if typ == "bytes":
        return bytes(raw)
    if typ in ("map", "bytesmap", "quantitymap"):
        entry = {n: v for n, _, v in _fields(raw)}
        key = bytes(entry.get(1, b"")).decode()
        val = bytes(entry.get(2, b""))
        if typ == "bytesmap":
            return {key: base64.b64encode(val).decode()}
        if typ == "quantitymap":
            return {key: bytes(dict((n, v) for n, _, v in _fields(val)).get(1, b"")).decode()}
        return {key: val.decode()}
    if typ == "intorstr":
        parts = {n: v for n, _, v in _fields(raw)}
        return bytes(parts.get(3, b"")).decode() if parts.get(1, 0) == 1 else parts.get(2, 0)
    if typ == "time":
        return None  # timestamps in a create body are ignored by the apiserver too
    return _decode(raw, typ)


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf-encoded built-in object (the `k8s\\0` envelope) as the JSON the rest of the API speaks."""
    if not body.startswith(MAGIC):
        raise unsupported("protobuf body without the k8s envelope")
    envelope = _decode(body[len(MAGIC):], "Unknown")
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if (api_version, kind) not in KINDS:
        raise unsupported(f"protobuf bodies for {api_version} {kind} are not supported by the simulator")
    obj = _decode(envelope.get("raw", b""), kind)
    return {"apiVersion": api_version, "kind": kind, **obj}
