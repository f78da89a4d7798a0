"""Schemas of the served types, from the official client's model classes.

Two consumers: the API layer (strategic merge patch and server-side apply need to know which lists merge by
which key, and unknown fields are pruned like the apiserver's decoder does) and kubectl, which reads the
`/openapi/v3` documents to validate manifests and to find list merge keys.

The `kubernetes` package's model classes (`openapi_types`, `attribute_map`) describe every built-in type; what
they leave out is the patch metadata Go keeps in struct tags, so the list below restores the tags of the fields
our resources use. Types without a model class (HTTPRoute, VirtualService) are served schemaless, as CRDs with
`x-kubernetes-preserve-unknown-fields`.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from typing import Any

from kubernetes.client import models

from deployflow.sim.store import Resource

# (model class, JSON field) -> (patch strategy, merge key). From the `patchStrategy`/`patchMergeKey` tags of
# k8s.io/api; a list absent here is atomic (replaced whole), as in Kubernetes.
PATCH_META: dict[tuple[str, str], tuple[str, str | None]] = {
    ("V1ObjectMeta", "finalizers"): ("merge", None),
    ("V1ObjectMeta", "ownerReferences"): ("merge", "uid"),
    ("V1PodSpec", "containers"): ("merge", "name"),
    ("V1PodSpec", "initContainers"): ("merge", "name"),
    ("V1PodSpec", "ephemeralContainers"): ("merge", "name"),
    ("V1PodSpec", "volumes"): ("merge,retainKeys", "name"),
    ("V1PodSpec", "imagePullSecrets"): ("merge", "name"),
    ("V1PodSpec", "hostAliases"): ("merge", "ip"),
    ("V1PodSpec", "topologySpreadConstraints"): ("merge", "topologyKey"),
    ("V1PodSpec", "resourceClaims"): ("merge,retainKeys", "name"),
    ("V1PodSpec", "schedulingGates"): ("merge", "name"),
    ("V1Container", "ports"): ("merge", "containerPort"),
    ("V1Container", "env"): ("merge", "name"),
    ("V1Container", "volumeMounts"): ("merge", "mountPath"),
    ("V1Container", "volumeDevices"): ("merge", "devicePath"),
    ("V1EphemeralContainer", "ports"): ("merge", "containerPort"),
    ("V1EphemeralContainer", "env"): ("merge", "name"),
    ("V1EphemeralContainer", "volumeMounts"): ("merge", "mountPath"),
    ("V1EphemeralContainer", "volumeDevices"): ("merge", "devicePath"),
    ("V1ServiceSpec", "ports"): ("merge", "port"),
    ("V1DeploymentSpec", "strategy"): ("retainKeys", None),
    ("V1DeploymentStatus", "conditions"): ("merge", "type"),
    ("V1ReplicaSetStatus", "conditions"): ("merge", "type"),
    ("V1StatefulSetStatus", "conditions"): ("merge", "type"),
    ("V1JobStatus", "conditions"): ("merge", "type"),
    ("V1PodStatus", "conditions"): ("merge", "type"),
    ("V1PodStatus", "podIPs"): ("merge", "ip"),
    ("V1PodStatus", "hostIPs"): ("merge", "ip"),
    ("V1NamespaceStatus", "conditions"): ("merge", "type"),
    ("V1ServiceStatus", "conditions"): ("merge", "type"),
    ("V1ServiceAccount", "secrets"): ("merge", "name"),
}

# The model class of each served kind; kinds missing here are schemaless.
KIND_MODELS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "Pod"): "V1Pod",
    ("v1", "Service"): "V1Service",
    ("v1", "Endpoints"): "V1Endpoints",
    ("discovery.k8s.io/v1", "EndpointSlice"): "V1EndpointSlice",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Event"): "CoreV1Event",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "ReplicaSet"): "V1ReplicaSet",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("apps/v1", "ControllerRevision"): "V1ControllerRevision",
    ("batch/v1", "Job"): "V1Job",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
}

_META_TYPES = {
    "V1ObjectMeta", "V1ListMeta", "V1OwnerReference", "V1ManagedFieldsEntry", "V1LabelSelector",
    "V1LabelSelectorRequirement", "V1Status", "V1StatusDetails", "V1StatusCause", "V1Condition",
}

_LIST_RE = re.compile(r"^List\[(.+)\]$")
_DICT_RE = re.compile(r"^Dict\[str, (.+)\]$")
_PRIMITIVES = {"str", "int", "bool", "float", "datetime", "date", "object", "bytes"}


@cache
def model_fields(model: str) -> dict[str, str]:
    """JSON field name -> client type string ('V1PodSpec', 'List[V1Container]', 'Dict[str, str]', 'str')."""
    cls = getattr(models, model, None)
    if cls is None:
        return {}
    return {cls.attribute_map[py]: typ for py, typ in cls.openapi_types.items()}


class Schema:
    """A position in a type's schema while walking an object: what its fields are and how its lists merge.

    `model` None means schemaless (any field allowed, lists atomic, maps merged), as for CRD-like types.
    """

    __slots__ = ("model", "type")

    def __init__(self, type_str: str | None) -> None:
        self.type = type_str
        self.model = type_str if type_str and type_str not in _PRIMITIVES and "[" not in type_str else None

    @classmethod
    def for_kind(cls, api_version: str, kind: str) -> Schema:
        return cls(KIND_MODELS.get((api_version, kind)))

    @property
    def schemaless(self) -> bool:
        return self.type is None or self.type == "object"

    def field(self, name: str) -> Schema:
        if self.model is None:
            return Schema(None)
        return Schema(model_fields(self.model).get(name))

    def knows(self, name: str) -> bool:
        return self.schemaless or self.model is None or name in model_fields(self.model)

    def is_map(self) -> bool:
        return bool(self.type and _DICT_RE.match(self.type))

    def item(self) -> Schema:
        """The schema of a list item or a map value."""
        if self.type:
            m = _LIST_RE.match(self.type) or _DICT_RE.match(self.type)
            if m:
                return Schema(m.group(1))
        return Schema(None)

    def list_meta(self, name: str) -> tuple[str, str | None]:
        """(strategy, merge key) of the list field `name`; strategy '' means atomic."""
        if self.model is None:
            return "", None
        return PATCH_META.get((self.model, name), ("", None))


# ---- OpenAPI v3 documents for kubectl --------------------------------------------------------------


def _definition_name(model: str, package: str) -> str:
    base = re.sub(r"^(V\d+(?:alpha\d+|beta\d+)?|CoreV1|AppsV1|RbacV1)", "", model)
    if model in _META_TYPES:
        return f"io.k8s.apimachinery.pkg.apis.meta.v1.{base}"
    return f"io.k8s.api.{package}.{base}"


_PACKAGES = {"": "core.v1", "apps": "apps.v1", "batch": "batch.v1", "networking.k8s.io": "networking.v1",
             "rbac.authorization.k8s.io": "rbac.v1"}


class _DocBuilder:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}
        self.names: dict[str, str] = {}

    def ref(self, model: str, package: str) -> dict[str, Any]:
        if model not in self.names:
            name = _definition_name(model, package)
            self.names[model] = name
            self.schemas[name] = {}  # placeholder against recursion (JSONSchemaProps and the like)
            self.schemas[name] = self.model_schema(model, package)
        return {"$ref": f"#/components/schemas/{self.names[model]}"}

    def type_schema(self, type_str: str, package: str) -> dict[str, Any]:
        if m := _LIST_RE.match(type_str):
            return {"type": "array", "items": self.type_schema(m.group(1), package)}
        if m := _DICT_RE.match(type_str):
            return {"type": "object", "additionalProperties": self.type_schema(m.group(1), package)}
        simple: dict[str, dict[str, Any]] = {
            "str": {"type": "string"},
            "int": {"type": "integer", "format": "int64"},
            "float": {"type": "number", "format": "double"},
            "bool": {"type": "boolean"},
            "datetime": {"type": "string", "format": "date-time"},
            "date": {"type": "string", "format": "date"},
            "bytes": {"type": "string", "format": "byte"},
            "object": {"x-kubernetes-preserve-unknown-fields": True},
        }
        if type_str in simple:
            return dict(simple[type_str])
        return {"allOf": [self.ref(type_str, package)]}

    def model_schema(self, model: str, package: str) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for name, typ in model_fields(model).items():
            prop = self.type_schema(typ, package)
            strategy, key = PATCH_META.get((model, name), ("", None))
            if strategy:
                prop["x-kubernetes-patch-strategy"] = strategy
            if key:
                prop["x-kubernetes-patch-merge-key"] = key
                prop["x-kubernetes-list-type"] = "map"
                prop["x-kubernetes-list-map-keys"] = [key]
            elif _LIST_RE.match(typ):
                prop["x-kubernetes-list-type"] = "set" if strategy == "merge" else "atomic"
            props[name] = prop
        schema: dict[str, Any] = {"type": "object", "properties": props}
        if model == "V1Container":
            schema["required"] = ["name"]
        return schema


def _resource_paths(res: Resource, defn_ref: dict[str, Any]) -> dict[str, Any]:
    # kubectl looks for a `fieldValidation` query parameter on these operations to decide that the server
    # validates; it then sends fieldValidation=Strict instead of validating client-side.
    params = [
        {"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for n in ("dryRun", "fieldManager", "fieldValidation")
    ]
    body = {"content": {"application/json": {"schema": defn_ref}}}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": defn_ref}}}}
    gvk = {"group": res.group, "version": res.version, "kind": res.kind}
    base = f"/{'api' if not res.group else 'apis/' + res.group}/{res.version}"
    coll = f"{base}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{base}/{res.plural}"
    op = {"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": ok}
    return {
        coll: {"post": {**op, "requestBody": body, "operationId": f"create{res.kind}"}},
        f"{coll}/{{name}}": {
            "get": {"x-kubernetes-group-version-kind": gvk, "responses": ok, "operationId": f"read{res.kind}"},
            "put": {**op, "requestBody": body, "operationId": f"replace{res.kind}"},
            "patch": {**op, "requestBody": {"content": {"application/merge-patch+json": {"schema": {}}}},
                      "operationId": f"patch{res.kind}"},
        },
    }


@cache
def group_version_document(group_version: str, resources: tuple[Resource, ...]) -> dict[str, Any]:
    """The `/openapi/v3/apis/<group>/<version>` document for the resources served in that group version."""
    builder = _DocBuilder()
    paths: dict[str, Any] = {}
    for res in resources:
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        model = KIND_MODELS.get((res.group_version, res.kind))
        if model:
            ref = builder.ref(model, _PACKAGES.get(res.group, "core.v1"))
            builder.schemas[builder.names[model]]["x-kubernetes-group-version-kind"] = [gvk]
        else:
            name = f"{'.'.join(reversed(res.group.split('.')))}.{res.version}.{res.kind}"
            builder.schemas[name] = {
                "type": "object",
                "x-kubernetes-group-version-kind": [gvk],
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": builder.ref("V1ObjectMeta", "meta.v1"),
                },
            }
            ref = {"$ref": f"#/components/schemas/{name}"}
        paths.update(_resource_paths(res, ref))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": builder.schemas},
    }


def document_hash(doc: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()
