"""The failure vocabulary shared by activities and workflows.

An `ApplicationError.type` is a contract: activities raise these names, workflows' retry policies and failure path
read them, recorded histories keep them, and CI scripts may match on them. Keep the strings stable.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    # The new version itself is broken: waiting or retrying cannot make it healthy.
    CRASH_LOOP = "CrashLoopBackOff"
    IMAGE_PULL_BACKOFF = "ImagePullBackOff"
    ERR_IMAGE_PULL = "ErrImagePull"
    INVALID_IMAGE_NAME = "InvalidImageName"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    CREATE_CONTAINER_ERROR = "CreateContainerError"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    HEALTH_TIMEOUT = "HealthTimeout"
    UNHEALTHY = "Unhealthy"
    BATCH_UNHEALTHY = "BatchUnhealthy"
    BATCH_TIMED_OUT = "BatchTimedOut"

    # The request or the cluster is not what the spec says: a person must fix it.
    INVALID_SPEC = "InvalidSpec"
    INVALID_MANIFEST = "InvalidManifest"
    INVALID_WORKLOAD = "InvalidWorkload"
    BAD_REQUEST = "BadRequest"
    SELECTOR_MISMATCH = "SelectorMismatch"
    SERVICE_MISSING = "ServiceMissing"
    FOREIGN_SERVICE = "ForeignService"
    ROUTING_ERROR = "RoutingError"
    NOT_FOUND = "NotFound"
    WORKLOAD_NOT_FOUND = "WorkloadNotFound"
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    NAMESPACE_NOT_FOUND = "NamespaceNotFound"
    FORBIDDEN = "Forbidden"
    UNAUTHORIZED = "Unauthorized"
    REQUEST_REJECTED = "KubernetesRequestRejected"
    CONFLICT = "Conflict"
    POLICY_VIOLATION = "PolicyViolation"

    # Checks the release runs.
    SMOKE_TEST_FAILED = "SmokeTestFailed"
    ANALYSIS_FAILED = "AnalysisFailed"
    HOOK_FAILED = "HookFailed"
    HOOK_TIMED_OUT = "HookTimedOut"
    HOOK_MISCONFIGURED = "HookMisconfigured"
    NOTIFIER_MISCONFIGURED = "NotifierMisconfigured"

    # How a run ends when it does not succeed.
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"
    ABORTED = "Aborted"
    PROMOTION_TIMEOUT = "PromotionTimeout"
    APPROVAL_TIMED_OUT = "ApprovalTimedOut"
    DEPLOYMENT_FAILED = "DeploymentFailed"
    SNAPSHOT_FAILED = "SnapshotFailed"


# Container waiting reasons that mean "this pod will not become ready by waiting". One list for every strategy: a
# missing ConfigMap or Secret (CreateContainerConfigError) fails as fast as a bad image. Hook Jobs use it less
# CrashLoopBackOff, since a Job's restarts count against its own backoffLimit.
FATAL_WAITING_REASONS: frozenset[str] = frozenset(
    {
        ErrorType.CRASH_LOOP,
        ErrorType.IMAGE_PULL_BACKOFF,
        ErrorType.ERR_IMAGE_PULL,
        ErrorType.INVALID_IMAGE_NAME,
        ErrorType.CREATE_CONTAINER_CONFIG_ERROR,
        ErrorType.CREATE_CONTAINER_ERROR,
    }
)

# Failures no retry of the same activity can fix. Retry policies are built from this one set.
NON_RETRYABLE: frozenset[str] = frozenset(
    {
        *FATAL_WAITING_REASONS,
        ErrorType.PROGRESS_DEADLINE_EXCEEDED,
        ErrorType.HEALTH_TIMEOUT,
        ErrorType.UNHEALTHY,
        ErrorType.BATCH_UNHEALTHY,
        ErrorType.BATCH_TIMED_OUT,
        ErrorType.INVALID_SPEC,
        ErrorType.INVALID_MANIFEST,
        ErrorType.INVALID_WORKLOAD,
        ErrorType.BAD_REQUEST,
        ErrorType.SELECTOR_MISMATCH,
        ErrorType.SERVICE_MISSING,
        ErrorType.FOREIGN_SERVICE,
        ErrorType.ROUTING_ERROR,
        ErrorType.NOT_FOUND,
        ErrorType.WORKLOAD_NOT_FOUND,
        ErrorType.CLUSTER_NOT_FOUND,
        ErrorType.NAMESPACE_NOT_FOUND,
        ErrorType.FORBIDDEN,
        ErrorType.UNAUTHORIZED,
        ErrorType.REQUEST_REJECTED,
        ErrorType.POLICY_VIOLATION,
        ErrorType.SMOKE_TEST_FAILED,
        ErrorType.ANALYSIS_FAILED,
        ErrorType.HOOK_FAILED,
        ErrorType.HOOK_TIMED_OUT,
        ErrorType.HOOK_MISCONFIGURED,
        ErrorType.NOTIFIER_MISCONFIGURED,
    }
)


def fatal_waiting_message(pod: str, reason: str, detail: str | None = None) -> str:
    """The one sentence every strategy uses for a pod that will not start."""
    text = f"pod {pod} cannot start: {reason}"
    return f"{text} ({detail})" if detail else text
