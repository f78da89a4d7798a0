"""Pieces of the spec that every strategy shares."""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deployflow.probes.proxy import check_path
from deployflow.security import pods, secrets
from deployflow.security.outbound import check_url
from deployflow.spec.values import ENV_NAME, LABEL_VALUE, image_reference, nested
from deployflow.spec.values import MAX_DURATION as MAX_DURATION  # the spec modules import these from here
from deployflow.spec.values import ContextName as ContextName
from deployflow.spec.values import DnsLabel as DnsLabel
from deployflow.spec.values import Duration as Duration
from deployflow.spec.values import Hostname as Hostname
from deployflow.spec.values import ImageReference as ImageReference
from deployflow.spec.values import KubeName as KubeName
from deployflow.spec.values import LabelValue as LabelValue
from deployflow.spec.values import Port as Port
from deployflow.spec.values import PositiveDuration as PositiveDuration
from deployflow.spec.values import QualifiedName as QualifiedName
from deployflow.spec.values import check_annotations as check_annotations
from deployflow.spec.values import image_tag as image_tag
from deployflow.spec.values import parse_duration as parse_duration
from deployflow.spec.values import shown as shown

# A URL the worker will fetch (a provider, a hook, Prometheus): checked by the rules the worker applies when it
# fetches, so a refused one fails when the spec is read, before anything in a cluster changes.
FetchableUrl = Annotated[str, AfterValidator(check_url)]


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
        if not ENV_NAME.match(name):
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
                image_reference(str(container["image"]))
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
        if tag and len(tag) <= 63 and LABEL_VALUE.match(tag):
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

    @field_validator("path")
    @classmethod
    def _stays_under_the_proxy(cls, value: str) -> str:
        # Checked here too, not only when the probe runs, so a traversal fails before anything in a cluster changes.
        return check_path(value)

    @property
    def label(self) -> str:
        return self.name or f"GET {self.path}"


# Tags pydantic puts in an error's location for a discriminated union: the strategy, the kind of a hook or provider,
# and a canary step's kind (which repeats the step's own key: `steps.1.pause.pause.duration`).
_UNION_TAGS = frozenset(
    {"blue-green", "canary", "rolling", "train", "job", "http", "confirm", "prometheus", "web", "kubernetes"}
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


class Source(StrictModel):
    """The change a release ships, for lead time (`deployflow report`): from the commit to the release's end."""

    commit: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z._/-]+$", description="commit id")
    committed_at: datetime | None = Field(default=None, description="when the commit was made (ISO 8601)")


SOURCE_DESCRIPTION = "the commit this release ships (optional; read by `deployflow report` for lead time)"
