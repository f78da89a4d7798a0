"""Hooks: work that must run, and succeed, at fixed points of a deployment.

Points and what a failing hook does there (the same for every strategy):

- ``pre_deploy``: runs before anything in the cluster changes. A failure fails the deployment; nothing was
  changed, so nothing is rolled back.
- ``pre_promote``: runs when the new version is up but before it becomes the only one (before the last batch of a
  rolling deployment, before the switch of blue-green, before 100% of a canary). A failure rolls back to the
  recorded revision and fails the deployment.
- ``post_deploy``: runs once the new version serves everything. A failure still rolls back and fails: the
  previous revision is recorded and known good, and a release whose post-deploy checks fail is not one anyone
  wants to keep serving (the same choice as Argo Rollouts' post-promotion analysis).
- ``on_rollback``: runs after a rollback finished. A failure is recorded as a warning event; the rollback
  itself has completed and the deployment fails with the reason of the rollback, not of the hook.

Kinds:

- ``job``: a Kubernetes Job (database migrations). Given as a full Job manifest or as image + command. The
  deployment waits for it to complete, up to a timeout; a failing Job's error quotes its last log lines.
- ``http``: a smoke test: requests to a Service (through the API server's service proxy, as kubectl does) or to
  a URL; every answer must have an expected status.
- ``confirm``: a confirmation webhook (Flagger's confirm-rollout / confirm-promotion): the deployment proceeds only
  once an external system answers 2xx, asked again every interval until a timeout.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from deployflow.probes.proxy import check_path, check_port
from deployflow.security import secrets
from deployflow.security.credentials import check_env_name
from deployflow.spec.common import (
    DnsLabel,
    EnvVar,
    FetchableUrl,
    ImageReference,
    KubeName,
    StrictModel,
    check_pod_template,
    nested,
)


class HookPoint(StrEnum):
    PRE_DEPLOY = "pre_deploy"
    PRE_PROMOTE = "pre_promote"
    POST_DEPLOY = "post_deploy"
    ON_ROLLBACK = "on_rollback"


class JobHook(StrictModel):
    kind: Literal["job"] = "job"
    name: DnsLabel = Field(description="names the hook in events and errors, and its Job")
    manifest: dict[str, Any] | None = Field(default=None, description="a batch/v1 Job manifest")
    image: ImageReference | None = Field(default=None, description="image of a one-container Job")
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list, description="secrets by valueFrom.secretKeyRef, never literal")
    service_account: KubeName | None = Field(default=None, description="ServiceAccount the Job's pod runs as")
    backoff_limit: int = Field(default=0, ge=0, le=10, description="pod retries before the Job counts as failed")
    timeout_seconds: int = Field(default=600, ge=1, le=86_400, description="time allowed to complete")
    log_lines: int = Field(default=20, ge=1, le=500, description="last log lines quoted when the Job fails")

    @model_validator(mode="after")
    def _manifest_or_image(self) -> JobHook:
        if (self.manifest is None) == (self.image is None):
            raise ValueError("set exactly one of 'manifest' (a Job manifest) or 'image' (with 'command')")
        if self.manifest is not None:
            if self.manifest.get("kind") != "Job" or self.manifest.get("apiVersion") != "batch/v1":
                raise ValueError("manifest: must be a batch/v1 Job")
            containers = nested(self.manifest, "spec", "template", "spec", "containers")
            if not isinstance(containers, list) or not containers:
                raise ValueError("manifest: spec.template.spec.containers must list at least one container")
            if self.command or self.args or self.env:
                raise ValueError("command/args/env go into the manifest when 'manifest' is given")
            check_pod_template(self.manifest, "manifest")
        secrets.check_args(self.command, "command")
        secrets.check_args(self.args, "args")
        return self


class HttpHook(StrictModel):
    kind: Literal["http"] = "http"
    name: DnsLabel
    service: DnsLabel | None = Field(default=None, description="Service in the target namespace, reached via the API")
    port: int | str | None = Field(default=None, description="Service port (number or name); default: the first")
    url: FetchableUrl | None = Field(default=None, description="an absolute URL instead of a Service")
    path: str = Field(default="/", description="path requested on the Service")
    method: Literal["GET", "POST", "HEAD"] = "GET"
    requests: int = Field(default=5, ge=1, le=1000, description="requests sent")
    max_failures: int = Field(default=0, ge=0, description="failed requests tolerated")
    expect_status: list[int] = Field(default_factory=list, description="accepted status codes; default any 2xx")
    body_contains: str | None = Field(default=None, description="text every answer must contain")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="per request")

    @model_validator(mode="after")
    def _service_or_url(self) -> HttpHook:
        if (self.service is None) == (self.url is None):
            raise ValueError("set exactly one of 'service' or 'url'")
        if self.max_failures >= self.requests:
            raise ValueError("max_failures: must be below 'requests', or the test cannot fail")
        return self

    @field_validator("path")
    @classmethod
    def _proxy_path(cls, value: str) -> str:
        return check_path(value)

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | str | None) -> int | str | None:
        return check_port(value)


class ConfirmHook(StrictModel):
    kind: Literal["confirm"] = "confirm"
    name: DnsLabel
    url: FetchableUrl | None = Field(default=None, description="endpoint asked for confirmation (POST, JSON body)")
    url_env: str | None = Field(
        default=None, description="environment variable of the worker holding the URL; must start with DEPLOYFLOW_CRED_"
    )
    interval_seconds: float = Field(default=10.0, gt=0, le=3600, description="time between two asks")
    timeout_seconds: int = Field(default=600, ge=1, le=7 * 86_400, description="give up after this long")
    metadata: dict[str, str] = Field(default_factory=dict, description="sent along in the request body")

    @field_validator("url_env")
    @classmethod
    def _valid_env(cls, value: str | None) -> str | None:
        return None if value is None else check_env_name(value)

    @field_validator("metadata")
    @classmethod
    def _no_literal_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        secrets.check_mapping(value, "")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> ConfirmHook:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of 'url' or 'url_env'")
        return self


Hook = Annotated[JobHook | HttpHook | ConfirmHook, Field(discriminator="kind")]


class Hooks(StrictModel):
    pre_deploy: list[Hook] = Field(default_factory=list, description="before anything changes; failure: fail")
    pre_promote: list[Hook] = Field(
        default_factory=list, description="before the new version takes everything; failure: roll back"
    )
    post_deploy: list[Hook] = Field(
        default_factory=list, description="once the new version serves everything; failure: roll back"
    )
    on_rollback: list[Hook] = Field(
        default_factory=list, description="after a rollback; failure: a warning, the rollback stands"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Hooks:
        for point in HookPoint:
            names = [h.name for h in self.at(point)]
            dupes = sorted(n for n, seen in Counter(names).items() if seen > 1)  # linear: lists may be long
            if dupes:
                raise ValueError(f"{point.value}: hook names must be unique; repeated: {', '.join(dupes)}")
        return self

    def at(self, point: HookPoint | str) -> list[JobHook | HttpHook | ConfirmHook]:
        return list(getattr(self, HookPoint(point).value))


class HookContext(StrictModel):
    """What a hook knows about the deployment it belongs to."""

    point: HookPoint
    workflow_id: str
    run_id: str
    strategy: str = ""
    version: str = ""
    previous_version: str | None = None
