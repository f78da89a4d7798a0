"""Pieces of the spec that every strategy shares."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending "
            "with a letter or digit, at most 63 characters"
        )
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]


class StrictModel(BaseModel):
    """Base of every spec model: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Target(StrictModel):
    """Where a deployment happens. One workflow runs per target at a time."""

    cluster: str = Field(
        min_length=1,
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
