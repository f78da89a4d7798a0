"""`deployflow`: validate, start, watch and steer deployments; run the worker, the simulator and the local stack.

Exit codes: 0 success, 1 the operation failed or was refused (a rollout rolled back, an update rejected, Temporal
unreachable), 2 bad input (a spec that does not validate, a missing file, a YAML syntax error).

Commands register on `app` when their module is imported.
"""

from __future__ import annotations

import os
import sys

# The import order is the order of the commands in --help.
# isort: off
from deployflow.cli import spec as _spec  # noqa: F401  schema, validate
from deployflow.cli import release as _release  # noqa: F401  start, wait, status, list
from deployflow.cli import steer as _steer  # noqa: F401  pause, resume, abort, promote, rollback, approve
from deployflow.cli import stack as _stack  # noqa: F401  worker, sim, dev, demo
from deployflow.cli import codec as _codec  # noqa: F401  codec-key, codec-server
from deployflow.cli import report as _report  # noqa: F401  report
# isort: on
from deployflow.cli.base import EXIT_BAD_INPUT, EXIT_FAILED, CliError, app, console, err_console, fail, run_async
from deployflow.cli.client import connect_client, has_pollers, query_status, resolve_workflow_id, task_queue
from deployflow.cli.output import status_table
from deployflow.cli.release import Outcome, follow, start_deployment, watch
from deployflow.cli.spec import LoadedSpec, format_validation_errors, load_spec_file, schema_markdown, validate_spec

__all__ = [
    "EXIT_BAD_INPUT", "EXIT_FAILED", "CliError", "LoadedSpec", "Outcome", "app", "connect_client", "console",
    "err_console", "fail", "follow", "format_validation_errors", "has_pollers", "load_spec_file", "main",
    "query_status", "resolve_workflow_id", "run_async", "schema_markdown", "start_deployment", "status_table",
    "task_queue", "validate_spec", "watch",
]


def main() -> None:
    code: int = 0
    try:
        app()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    # The Temporal client's native runtime threads can still call into Python while the interpreter finalizes,
    # which aborts the process (SIGABRT) after the command already succeeded. Nothing is left to clean up here
    # (every command stops what it started before returning), so leave without finalizing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
