"""Activities: small, idempotent, one job each. The worker registers exactly `ALL_ACTIVITIES`."""

from collections.abc import Callable
from typing import Any

from activities.services import switch_service
from activities.smoke import run_smoke_tests
from activities.workloads import apply_workload, delete_workload, read_workloads, scale_workload, wait_healthy

ALL_ACTIVITIES: list[Callable[..., Any]] = [
    read_workloads,
    apply_workload,
    wait_healthy,
    scale_workload,
    delete_workload,
    switch_service,
    run_smoke_tests,
]

__all__ = ["ALL_ACTIVITIES"]
