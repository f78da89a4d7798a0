"""Pieces of the spec that every strategy shares."""

from __future__ import annotations

import functools
import math
import re
import types
import typing
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from deployflow.security import pods, secrets

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending "
            "with a letter or digit, at most 63 characters"
        )
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]

# A kubeconfig context name becomes part of the workflow ID: printable, no spaces, bounded. '/', ':' and '@' stay
# allowed because real context names use them (arn:aws:eks:...:cluster/prod, user@cluster).
_CONTEXT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")


def _context_name(value: str) -> str:
    if len(value) > 253 or not _CONTEXT_NAME.match(value):
        raise ValueError(
            "must be a kubeconfig context name: 1 to 253 characters, letters, digits and '.', '_', '-', ':', '@', "
            "'/', starting with a letter or digit (or 'in-cluster')"
        )
    return value


ContextName = Annotated[str, AfterValidator(_context_name)]


def _base_types(annotation: Any) -> set[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, Annotated):
        return set().union(*(_base_types(arg) for arg in typing.get_args(annotation)))
    return {annotation}


class StrictModel(BaseModel):
    """Base of every spec model: unknown fields are an error, not silently dropped; numbers are numbers (not
    true/false, which pydantic would otherwise read as 1/0) and finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            numeric = _numeric_fields(cls)
            for key, value in data.items():
                if isinstance(value, bool) and key in numeric:
                    raise ValueError(f"{key}: expected a number, not {str(value).lower()}")
        return data


@functools.cache
def _numeric_fields(model: type[StrictModel]) -> frozenset[str]:
    """Names (and aliases) of the fields that take a number or duration but never true/false."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        kinds = _base_types(info.annotation)
        if kinds & {int, float, timedelta} and not kinds & {bool, Any}:
            names.update(n for n in (name, info.alias) if n)
            choices = getattr(info.validation_alias, "choices", None) or [info.validation_alias]
            names.update(c for c in choices if isinstance(c, str))
    return frozenset(names)


class Target(StrictModel):
    """Where a deployment happens. One workflow runs per target at a time."""

    cluster: ContextName = Field(
        description="kubeconfig context of the cluster, or 'in-cluster' to use the worker's service account",
    )
    namespace: DnsLabel = Field(description="Kubernetes namespace of the app")
    app: DnsLabel = Field(description="name of the app; names its workloads and Services")
    container: DnsLabel | None = Field(
        default=None, description="container whose image changes; defaults to the app name"
    )

    @property
    def container_name(self) -> str:
        return self.container or self.app

    def workflow_id(self) -> str:
        return f"deploy/{self.cluster}/{self.namespace}/{self.app}"


# --- Kubernetes value rules, checked before anything touches a cluster --------------------------------------------

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# The distribution reference grammar, simplified: [host[:port]/]path[:tag][@algo:hex]
_IMAGE_REF = re.compile(
    r"^(?:(?P<host>[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WILDCARD_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IANA_SERVICE = re.compile(r"^(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")
MAX_DURATION = timedelta(days=365)
DURATION_FORMS = (
    "seconds as a number (90), Go-style text ('1h30m', '90s', '250ms', '2d') or ISO 8601 ('PT1H30M'), "
    "at most 365d"
)
MAX_ANNOTATION_BYTES = 256 * 1024  # Kubernetes' limit for all annotations of one object together
_timedelta: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"{value!r} is not a valid label value: at most 63 characters, letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    return value


def _qualified_name(value: str) -> str:
    """A label or annotation key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters."""
    prefix, _, name = value.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise ValueError(f"{value!r}: the prefix {prefix!r} is not a DNS subdomain")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(
            f"{value!r} is not a valid key: the name part must be at most 63 characters of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return value


def _image_reference(value: str) -> str:
    if len(value) > 4096 or not _IMAGE_REF.match(value):
        raise ValueError(
            f"{value!r} is not a valid image reference (expected [registry/]name[:tag][@sha256:digest], "
            "lower-case repository path)"
        )
    return value


def _seconds(seconds: float, shown: object) -> timedelta:
    if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION.total_seconds():
        raise ValueError(f"{shown!r} is too long a duration: at most 365d")
    return timedelta(seconds=seconds)


def parse_duration(value: object) -> timedelta:
    """Seconds (a number), Go-style '1h30m' / '90s' / '250ms' / '2d', or ISO 8601 ('PT1H'), at most 365 days."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _seconds(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration: {DURATION_FORMS}")
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"{value!r}: a duration cannot be negative")
    if len(text) > 64:
        raise ValueError(f"not a duration: use {DURATION_FORMS}")
    if text and _DURATION_PART.sub("", text) == "" and _DURATION_PART.search(text):
        unit_seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        return _seconds(sum(float(n) * unit_seconds[u] for n, u in _DURATION_PART.findall(text)), value)
    try:
        parsed = _timedelta.validate_python(text)
    except (ValidationError, OverflowError):
        raise ValueError(f"{value!r} is not a duration: use {DURATION_FORMS}") from None
    return _seconds(parsed.total_seconds(), value)


def _hostname(value: str) -> str:
    if len(value) > 253 or not _WILDCARD_HOST.match(value):
        raise ValueError(
            f"{value!r} is not a hostname: lower-case RFC 1123 names (shop.example.com), optionally with a leading "
            "'*.' wildcard, at most 253 characters"
        )
    return value


def _service_port(value: int | str) -> int | str:
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise ValueError("a port number is between 1 and 65535")
        return value
    if len(value) > 15 or not _IANA_SERVICE.match(value):
        raise ValueError(
            f"{value!r} is neither a port number nor a port name (an IANA service name: at most 15 lower-case "
            "letters, digits and single '-', with at least one letter)"
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes name: lower-case letters, digits, '-' and '.', starting and ending with "
            "a letter or digit, at most 253 characters"
        )
    return value


def check_annotations(annotations: object, field: str) -> None:
    """Kubernetes refuses an object whose annotations are over 256 KiB together; say so before anything changes."""
    if not isinstance(annotations, dict):
        return
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > MAX_ANNOTATION_BYTES:
        raise ValueError(f"{field}: {size} bytes of annotations; Kubernetes allows at most 256 KiB in total")


def nested(value: object, *path: str) -> Any:
    """value[path[0]][path[1]]..., or None as soon as a step is not a mapping holding the key."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _non_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


LabelValue = Annotated[str, AfterValidator(_label_value)]
QualifiedName = Annotated[str, AfterValidator(_qualified_name)]
ImageReference = Annotated[str, AfterValidator(_image_reference)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_non_negative)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
Port = Annotated[int, Field(ge=1, le=65535)]
ServicePort = Annotated[int | str, AfterValidator(_service_port)]
Hostname = Annotated[str, AfterValidator(_hostname)]
KubeName = Annotated[str, AfterValidator(_dns_subdomain)]


def image_tag(image: str) -> str | None:
    match = _IMAGE_REF.match(image)
    return match.group("tag") if match else None


def looks_secret(name: str) -> bool:
    return secrets.name_looks_secret(name)


def check_pod_template(manifest: dict[str, Any], field: str) -> None:
    """A workload manifest's pod: literal secrets in any container, baseline pod privileges, annotation sizes."""
    check_annotations(nested(manifest, "metadata", "annotations"), f"{field}.metadata.annotations")
    template = nested(manifest, "spec", "template")
    check_annotations(nested(template, "metadata", "annotations"), f"{field}.spec.template.metadata.annotations")
    pod_spec = nested(template, "spec")
    secrets.check_containers(pod_spec, f"{field}.spec.template.spec")
    pods.check_pod_spec(pod_spec, f"{field}.spec.template.spec")


# --- Pieces of a workload every strategy deploys ---------------------------------------------------------------


class EnvVar(StrictModel):
    """A container environment variable. Secrets are referenced (valueFrom.secretKeyRef), never inlined."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=253)
    value: str | None = None
    value_from: dict[str, Any] | None = Field(
        default=None, alias="valueFrom", description="a Kubernetes EnvVarSource, e.g. {secretKeyRef: {name, key}}"
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
        return name

    @model_validator(mode="after")
    def _no_literal_secrets(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name!r}: give either value or valueFrom, not both")
        reason = secrets.literal_secret(self.name, self.value)
        if reason:
            raise ValueError(secrets.secret_error("value", reason))
        return self

    def manifest(self) -> dict[str, Any]:
        if self.value_from is not None:
            return {"name": self.name, "valueFrom": self.value_from}
        return {"name": self.name, "value": self.value or ""}


class HttpProbe(StrictModel):
    """An HTTP readiness or liveness probe on the container port."""

    path: str = Field(default="/", pattern=r"^/", description="HTTP path, starting with '/'")
    port: Port | None = Field(default=None, description="defaults to the container port")
    initial_delay_seconds: int = Field(default=0, ge=0)
    period_seconds: int = Field(default=5, ge=1)
    failure_threshold: int = Field(default=3, ge=1)

    def manifest(self, default_port: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": self.path, "port": self.port or default_port},
            "initialDelaySeconds": self.initial_delay_seconds,
            "periodSeconds": self.period_seconds,
            "failureThreshold": self.failure_threshold,
        }


class Workload(StrictModel):
    """What runs: the new version's image (or a full Deployment manifest), its size and how it is checked healthy."""

    image: ImageReference | None = Field(
        default=None, description="new container image, e.g. registry.example.com/shop/web:1.4.2"
    )
    version: LabelValue | None = Field(
        default=None,
        description="version label (app.kubernetes.io/version); defaults to the image tag",
    )
    manifest: dict[str, Any] | None = Field(
        default=None,
        description="a full apps/v1 Deployment manifest instead of image; name, namespace and selector are managed",
    )
    replicas: int = Field(default=2, ge=1, le=1000)
    port: Port = Field(default=8080, description="container port the app listens on")
    service_port: Port = Field(default=80, description="port the Services expose")
    readiness_probe: HttpProbe | None = None
    liveness_probe: HttpProbe | None = None
    env: list[EnvVar] = Field(default_factory=list)
    pod_annotations: dict[QualifiedName, str] = Field(default_factory=dict)
    pod_labels: dict[QualifiedName, LabelValue] = Field(default_factory=dict)
    health_timeout: PositiveDuration = Field(
        default=timedelta(minutes=10),
        description="how long the new pods may take to become ready before the release is rolled back",
    )

    @model_validator(mode="after")
    def _image_or_manifest(self) -> Workload:
        if self.manifest is None and self.image is None:
            raise ValueError("image: required (or give a full Deployment manifest)")
        if self.manifest is not None:
            self._check_manifest(self.manifest)
        if self.resolved_version() is None:
            raise ValueError(
                "version: required when the image has no tag that is a valid label value "
                "(set version explicitly)"
            )
        reserved = {"app", "deployflow.io/color", "app.kubernetes.io/version"} & set(self.pod_labels)
        if reserved:
            raise ValueError(f"pod_labels: {sorted(reserved)} are managed by deployflow and cannot be set")
        check_annotations(self.pod_annotations, "pod_annotations")
        return self

    def _check_manifest(self, manifest: dict[str, Any]) -> None:
        if manifest.get("kind", "Deployment") != "Deployment":
            raise ValueError("manifest.kind: must be Deployment")
        if manifest.get("apiVersion", "apps/v1") != "apps/v1":
            raise ValueError("manifest.apiVersion: must be apps/v1")
        containers = nested(manifest, "spec", "template", "spec", "containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("manifest.spec.template.spec.containers: at least one container is required")
        for i, container in enumerate(containers):
            if not isinstance(container, dict) or not container.get("name") or not container.get("image"):
                raise ValueError(f"manifest.spec.template.spec.containers[{i}]: name and image are required")
            try:
                _image_reference(str(container["image"]))
            except ValueError as err:
                raise ValueError(f"manifest.spec.template.spec.containers[{i}].image: {err}") from None
        labels = nested(manifest, "spec", "template", "metadata", "labels")
        if labels is not None and not isinstance(labels, dict):
            raise ValueError("manifest.spec.template.metadata.labels: must be a mapping")
        check_pod_template(manifest, "manifest")

    def manifest_image(self, container: str) -> str | None:
        if self.manifest is None:
            return self.image
        containers = self.manifest["spec"]["template"]["spec"]["containers"]
        for c in containers:
            if c["name"] == container:
                return str(c["image"])
        return str(containers[0]["image"])

    def resolved_version(self, container: str | None = None) -> str | None:
        """The version label: explicit, else the image tag (when it is a valid label value)."""
        if self.version:
            return self.version
        if self.manifest is not None:
            labels = nested(self.manifest, "spec", "template", "metadata", "labels") or {}
            if labels.get("app.kubernetes.io/version"):
                return str(labels["app.kubernetes.io/version"])
        image = self.image if self.manifest is None else self.manifest_image(container or "")
        tag = image_tag(image or "")
        if tag and len(tag) <= 63 and _LABEL_VALUE.match(tag):
            return tag
        return None


class SmokeTest(StrictModel):
    """An HTTP check of the new version, through the preview Service via the API server's service proxy."""

    name: str = Field(default="", max_length=128)
    path: str = Field(default="/", pattern=r"^/", max_length=2048, description="HTTP path, starting with '/'")
    expected_status: int = Field(default=200, ge=100, le=599)
    expected_body: str | None = Field(default=None, description="a substring the response body must contain")
    attempts: int = Field(default=3, ge=1, le=100, description="tries before the test counts as failed")
    interval: Duration = Field(default=timedelta(seconds=1), description="pause between tries")
    timeout: PositiveDuration = Field(default=timedelta(seconds=5), description="per request")

    @property
    def label(self) -> str:
        return self.name or f"GET {self.path}"


# Tags pydantic puts in an error's location for a discriminated union: the strategy, the kind of a hook or provider,
# and a canary step's kind (which repeats the step's own key: `steps.1.pause.pause.duration`).
_UNION_TAGS = frozenset(
    {"blue-green", "canary", "rolling", "job", "http", "confirm", "prometheus", "web", "kubernetes"}
)
STEP_TAGS = frozenset({"set_weight", "pause", "analysis"})


def field_path(loc: Sequence[int | str]) -> tuple[int | str, ...]:
    """The location of a field as the spec writes it: union tags of pydantic's error locations dropped."""
    path: list[int | str] = []
    for i, part in enumerate(loc):
        if part in _UNION_TAGS:
            continue
        if part in STEP_TAGS and i >= 2 and loc[i - 2] == "steps" and isinstance(loc[i - 1], int):
            continue
        path.append(part)
    return tuple(path)


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem, each starting with the dotted path of the field, for messages people read."""
    lines = []
    for problem in err.errors(include_url=False):
        path = ".".join(str(part) for part in field_path(problem["loc"]))
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)
