"""Activities: small, idempotent, one job each. The worker registers exactly `ALL_ACTIVITIES`."""

from collections.abc import Callable
from typing import Any

from activities.analysis import measure
from activities.hooks import ask_confirmation, run_http_hook, run_job_hook
from activities.notify import send_notification
from activities.rolling import ROLLING_ACTIVITIES
from activities.services import switch_service
from activities.smoke import run_smoke_tests
from activities.traffic import TRAFFIC_ACTIVITIES
from activities.workloads import apply_workload, delete_workload, read_workloads, scale_workload, wait_healthy

ALL_ACTIVITIES: list[Callable[..., Any]] = [
    read_workloads,
    apply_workload,
    wait_healthy,
    scale_workload,
    delete_workload,
    switch_service,
    run_smoke_tests,
    run_job_hook,
    run_http_hook,
    ask_confirmation,
    send_notification,
    *ROLLING_ACTIVITIES,
    *TRAFFIC_ACTIVITIES,
    measure,
]

__all__ = ["ALL_ACTIVITIES"]
