"""The resource types the simulator serves."""

from __future__ import annotations

from deployflow.sim.store import Resource

NAMESPACES = Resource("", "v1", "Namespace", "namespaces", namespaced=False, subresources=("status",),
                      short_names=("ns",), singular="namespace")
PODS = Resource("", "v1", "Pod", "pods", subresources=("status", "log"), short_names=("po",), singular="pod",
                categories=("all",))
SERVICES = Resource("", "v1", "Service", "services", subresources=("status", "proxy"), short_names=("svc",),
                    singular="service", categories=("all",))
ENDPOINTS = Resource("", "v1", "Endpoints", "endpoints", short_names=("ep",), singular="endpoints")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", singular="endpointslice")
CONFIGMAPS = Resource("", "v1", "ConfigMap", "configmaps", short_names=("cm",), singular="configmap")
SECRETS = Resource("", "v1", "Secret", "secrets", singular="secret")
SERVICEACCOUNTS = Resource("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",),
                           singular="serviceaccount")
EVENTS = Resource("", "v1", "Event", "events", short_names=("ev",), singular="event")
DEPLOYMENTS = Resource("apps", "v1", "Deployment", "deployments", subresources=("status", "scale"),
                       short_names=("deploy",), singular="deployment", categories=("all",))
REPLICASETS = Resource("apps", "v1", "ReplicaSet", "replicasets", subresources=("status", "scale"),
                       short_names=("rs",), singular="replicaset", categories=("all",))
STATEFULSETS = Resource("apps", "v1", "StatefulSet", "statefulsets", subresources=("status", "scale"),
                        short_names=("sts",), singular="statefulset", categories=("all",))
CONTROLLERREVISIONS = Resource("apps", "v1", "ControllerRevision", "controllerrevisions",
                               singular="controllerrevision")
JOBS = Resource("batch", "v1", "Job", "jobs", subresources=("status",), singular="job", categories=("all",))
INGRESSES = Resource("networking.k8s.io", "v1", "Ingress", "ingresses", subresources=("status",),
                     short_names=("ing",), singular="ingress")
HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", subresources=("status",),
                      singular="httproute")
VIRTUALSERVICES = Resource("networking.istio.io", "v1", "VirtualService", "virtualservices",
                           short_names=("vs",), singular="virtualservice")
# RBAC objects are stored, never enforced: the worker's manifests (deploy/kubernetes) apply as a whole.
RBAC = "rbac.authorization.k8s.io"
ROLES = Resource(RBAC, "v1", "Role", "roles", singular="role")
ROLEBINDINGS = Resource(RBAC, "v1", "RoleBinding", "rolebindings", singular="rolebinding")
CLUSTERROLES = Resource(RBAC, "v1", "ClusterRole", "clusterroles", namespaced=False, singular="clusterrole")
CLUSTERROLEBINDINGS = Resource(RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False,
                               singular="clusterrolebinding")

ALL: tuple[Resource, ...] = (
    NAMESPACES, PODS, SERVICES, ENDPOINTS, ENDPOINTSLICES, CONFIGMAPS, SECRETS, SERVICEACCOUNTS, EVENTS,
    DEPLOYMENTS, REPLICASETS, STATEFULSETS, CONTROLLERREVISIONS, JOBS,
    INGRESSES, HTTPROUTES, VIRTUALSERVICES, ROLES, ROLEBINDINGS, CLUSTERROLES, CLUSTERROLEBINDINGS,
)


def by_group_version_plural(group: str, version: str, plural: str) -> Resource | None:
    for res in ALL:
        if res.group == group and res.version == version and res.plural == plural:
            return res
    return None


def by_api_version_kind(api_version: str, kind: str) -> Resource | None:
    for res in ALL:
        if res.group_version == api_version and res.kind == kind:
            return res
    return None
