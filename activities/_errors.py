"""How library failures become Temporal errors: what a retry can fix stays retryable, the rest does not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from temporalio.exceptions import ApplicationError

from deployflow.kube import api_client
from deployflow.spec.common import Target
from deployflow.workloads import WorkloadError

# Failures of the release itself, or of its description: retrying the activity cannot change the outcome.
NON_RETRYABLE = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "ProgressDeadlineExceeded",
        "HealthTimeout",
        "InvalidManifest",
        "SelectorMismatch",
        "ServiceMissing",
        "NotFound",
        "ClusterNotFound",
        "Forbidden",
        "Unauthorized",
    }
)


def api_for(target: Target) -> client.ApiClient:
    try:
        return api_client(target.cluster)
    except (ConfigException, FileNotFoundError) as err:
        raise ApplicationError(
            f"cluster {target.cluster!r}: no such kubeconfig context or in-cluster config ({err})",
            type="ClusterNotFound",
            non_retryable=True,
        ) from err


@contextmanager
def as_activity_errors(what: str) -> Iterator[None]:
    """Turns WorkloadError and permanent API errors into ApplicationErrors the workflow can read."""
    try:
        yield
    except WorkloadError as err:
        raise ApplicationError(err.message, type=err.reason, non_retryable=err.reason in NON_RETRYABLE) from err
    except ApiException as err:
        status = int(err.status or 0)
        if status in (401, 403):
            kind = "Unauthorized" if status == 401 else "Forbidden"
            raise ApplicationError(
                f"{what}: the API server refused ({status} {err.reason}); check the worker's RBAC",
                type=kind,
                non_retryable=True,
            ) from err
        if 400 <= status < 500 and status not in (404, 409, 429):
            raise ApplicationError(
                f"{what}: rejected by the API server ({status}): {err.body!s:.500}",
                type="InvalidManifest",
                non_retryable=True,
            ) from err
        raise
