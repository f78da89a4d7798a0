"""How library failures become Temporal errors: what a retry can fix stays retryable, the rest does not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from temporalio.exceptions import ApplicationError

from deployflow import workloads
from deployflow.errors import NON_RETRYABLE, ErrorType
from deployflow.kube import api_client, missing_namespace
from deployflow.spec.common import Target
from deployflow.workloads import WorkloadError


def api_for(target: Target) -> client.ApiClient:
    try:
        return api_client(target.cluster)
    except (ConfigException, FileNotFoundError) as err:
        # UnknownCluster (a ConfigException) already names the context and the ones there are.
        message = str(err) if str(err).startswith(f"cluster {target.cluster!r}") else (
            f"cluster {target.cluster!r}: no such kubeconfig context or in-cluster config ({err})"
        )
        raise ApplicationError(message, type=ErrorType.CLUSTER_NOT_FOUND, non_retryable=True) from err


def namespace_not_found(target: Target, namespace: str | None = None) -> ApplicationError:
    namespace = namespace or target.namespace
    return ApplicationError(
        f"namespace {namespace!r} does not exist in cluster {target.cluster!r}: create it (or fix target.namespace "
        "or target.cluster) and start again",
        type=ErrorType.NAMESPACE_NOT_FOUND,
        non_retryable=True,
    )


def require_namespace(api: client.ApiClient, target: Target) -> None:
    """Fails for good, before anything is written, when the target namespace does not exist: no retry creates it."""
    with as_activity_errors(f"read namespace {target.namespace}", target):
        exists = workloads.namespace_exists(api, target.namespace)
    if exists is False:
        raise namespace_not_found(target)


@contextmanager
def as_activity_errors(what: str, target: Target | None = None) -> Iterator[None]:
    """Turns WorkloadError and permanent API errors into ApplicationErrors the workflow can read.

    With `target`, a write into a namespace that does not exist fails for good, naming the namespace and cluster.
    """
    try:
        yield
    except WorkloadError as err:
        cause = err.__cause__
        if target is not None and isinstance(cause, ApiException) and missing_namespace(cause) is not None:
            raise namespace_not_found(target, missing_namespace(cause)) from err
        raise ApplicationError(err.message, type=err.reason, non_retryable=err.reason in NON_RETRYABLE) from err
    except ApiException as err:
        status = int(err.status or 0)
        gone = missing_namespace(err)
        if target is not None and gone is not None:
            raise namespace_not_found(target, gone) from err
        if status in (401, 403):
            kind = ErrorType.UNAUTHORIZED if status == 401 else ErrorType.FORBIDDEN
            where = (
                f" in namespace {target.namespace!r} of cluster {target.cluster!r} (where no RoleBinding grants the "
                "worker's role, as in a namespace that does not exist, every call is refused)"
                if target is not None and status == 403 else ""
            )
            raise ApplicationError(
                f"{what}: the API server refused ({status} {err.reason}){where}; check the worker's RBAC",
                type=kind,
                non_retryable=True,
            ) from err
        if 400 <= status < 500 and status not in (404, 409, 429):
            raise ApplicationError(
                f"{what}: rejected by the API server ({status}): {err.body!s:.500}",
                type=ErrorType.INVALID_MANIFEST,
                non_retryable=True,
            ) from err
        raise
