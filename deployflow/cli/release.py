"""Starting a release and looking at releases: `start`, `wait`, `status`, `list`, and the live follower the demo
reuses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from deployflow.cli.base import CliError, app, console, err_console, fail, run_async
from deployflow.cli.client import (
    _quote,
    connect_client,
    has_pollers,
    query_status,
    resolve_workflow_id,
    task_queue,
)
from deployflow.cli.output import FAILED_PHASES, event_line, failure_text, phase_text, progress_panel, status_table
from deployflow.cli.spec import STRICT_HELP, LoadedSpec, check_weights, load_spec_file
from deployflow.status import DeploymentStatus, Phase

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle


async def start_deployment(client: Client, loaded: LoadedSpec, workflow_id: str | None = None) -> WorkflowHandle:
    """Starts the deployment; refuses clearly when one is already running for the same target."""
    from temporalio.common import SearchAttributePair, TypedSearchAttributes
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from deployflow.temporal import DEPLOY_APP, DEPLOY_NAMESPACE, DEPLOY_PHASE, DEPLOY_STRATEGY

    target = loaded.spec.target  # type: ignore[attr-defined]
    wf_id = workflow_id or loaded.workflow_id
    attributes = TypedSearchAttributes(
        [
            SearchAttributePair(DEPLOY_APP, target.app),
            SearchAttributePair(DEPLOY_NAMESPACE, target.namespace),
            SearchAttributePair(DEPLOY_STRATEGY, loaded.strategy),
            SearchAttributePair(DEPLOY_PHASE, Phase.PENDING.value),
        ]
    )
    try:
        return await client.start_workflow(
            loaded.workflow_type,
            loaded.spec,
            id=wf_id,
            task_queue=task_queue(),
            search_attributes=attributes,
            static_summary=f"{loaded.strategy} deployment of {target.app} in {target.namespace} on {target.cluster}",
        )
    except WorkflowAlreadyStartedError as err:
        fail(
            f"a deployment of {target.app} is already running as workflow {err.workflow_id} "
            f"(type {err.workflow_type}, run {err.run_id or '?'}); only one deployment per app runs at a time.\n"
            f"Watch it with `deployflow status {err.workflow_id}`, or stop it with "
            f"`deployflow abort {err.workflow_id} --reason ...`."
        )


@dataclass
class Outcome:
    """How a followed deployment ended."""

    workflow_id: str
    execution_status: str  # COMPLETED, FAILED, CANCELED, TERMINATED, TIMED_OUT
    status: DeploymentStatus | None
    failure: str | None  # the failure chain, outermost first; None when the run completed

    @property
    def succeeded(self) -> bool:
        return (self.execution_status == "COMPLETED" and self.failure is None
                and (self.status is None or self.status.phase not in FAILED_PHASES))


async def follow(handle: WorkflowHandle[Any, Any], out: Console | None = None, poll: float = 0.5) -> Outcome:
    """Shows live progress (events as they happen, a panel with phase, step and weights) until the run closes."""
    from temporalio.client import WorkflowFailureError

    out = out or console
    printed = 0
    last: DeploymentStatus | None = None
    result_task = asyncio.ensure_future(handle.result())
    try:
        with Live(console=out, refresh_per_second=4, transient=True) as live:
            while True:
                try:
                    st = await query_status(handle)
                except Exception:  # not yet queryable (first workflow task still pending): keep waiting
                    st = None
                if st is not None:
                    if len(st.events) < printed:  # the event log was trimmed at its cap
                        printed = 0
                    for ev in st.events[printed:]:
                        live.console.print(event_line(ev))
                    printed = len(st.events)
                    live.update(progress_panel(st, handle.id))
                    last = st
                if result_task.done():
                    break
                await asyncio.wait({result_task}, timeout=poll)
    finally:
        if not result_task.done():  # interrupted (Ctrl-C, a caller's timeout): stop waiting on the server
            result_task.cancel()
            with contextlib.suppress(BaseException):
                await result_task
    failure: str | None = None
    try:
        await result_task
    except WorkflowFailureError as err:
        failure = failure_text(err.cause)
    final = await _final_status(handle, last)
    if final is not None:
        out.print(progress_panel(final, handle.id))
    desc = await handle.describe()
    return Outcome(handle.id, desc.status.name if desc.status else "UNKNOWN", final, failure)


async def watch(handle: WorkflowHandle[Any, Any], out: Console | None = None) -> DeploymentStatus:
    """`follow`, then a CliError with the reason unless the deployment succeeded."""
    outcome = await follow(handle, out)
    if outcome.failure is not None:
        fail(f"deployment {handle.id} failed: {outcome.failure}")
    if outcome.execution_status != "COMPLETED":
        fail(f"deployment {handle.id} ended {outcome.execution_status}")
    st = outcome.status
    if st is not None and st.phase in FAILED_PHASES:
        fail(f"deployment {handle.id} ended {st.phase}: {st.message or 'see the events above'}")
    return st or DeploymentStatus(strategy="?", app="?", namespace="?", cluster="?", version="?")


async def _final_status(handle: WorkflowHandle[Any, Any], last: DeploymentStatus | None) -> DeploymentStatus | None:
    try:
        return await query_status(handle)
    except Exception:
        return last


@app.command()
def start(
    spec_file: Annotated[Path, typer.Argument(help="deployment spec (YAML or JSON)")],
    wait: Annotated[bool, typer.Option("--wait", help="show live progress; exit non-zero unless it succeeds")] = False,
    workflow_id: Annotated[str | None, typer.Option("--id", help="workflow id (default: deploy/<cluster>/<ns>/<app>)")]
    = None,
    strict: Annotated[bool, typer.Option("--strict", help=STRICT_HELP)] = False,
) -> None:
    """Validate a spec and start its deployment (one per app at a time)."""

    async def go() -> None:
        loaded = load_spec_file(spec_file)
        check_weights(loaded, strict)
        client = await connect_client()
        handle = await start_deployment(client, loaded, workflow_id)
        console.print(f"started {loaded.workflow_type} [bold]{escape(handle.id)}[/bold] (run {handle.result_run_id})")
        if not await has_pollers(client, task_queue()):
            err_console.print(f"[yellow]warning:[/yellow] no worker polls task queue {task_queue()}: the deployment "
                              "waits until one does (`deployflow worker`, or `deployflow dev` locally)")
        if wait:
            st = await watch(handle)
            console.print(f"[green]{st.phase}[/green]: {escape(handle.id)}")

    run_async(go)


@app.command("wait")
def wait_cmd(ref: Annotated[str, typer.Argument(help="workflow id or app name")]) -> None:
    """Follow a running deployment live until it ends; non-zero exit unless it succeeded."""

    async def go() -> None:
        client = await connect_client()
        handle = client.get_workflow_handle(await resolve_workflow_id(client, ref))
        await watch(handle)

    run_async(go)


@app.command()
def status(
    ref: Annotated[str, typer.Argument(help="workflow id (deploy/<cluster>/<ns>/<app>) or app name")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="narrow an app name")] = None,
    events: Annotated[int, typer.Option(help="how many recent events to show")] = 10,
) -> None:
    """Show a deployment's phase, step, traffic weights, analysis and recent events."""

    async def go() -> None:
        client = await connect_client()
        wf_id = await resolve_workflow_id(client, ref, namespace)
        handle = client.get_workflow_handle(wf_id)
        try:
            desc = await handle.describe()
        except Exception as err:
            fail(f"no deployment {wf_id}: {err}")
        try:
            st = await query_status(handle)
        except CliError:
            raise
        except Exception as err:
            fail(f"deployment {wf_id} ({desc.status.name if desc.status else '?'}) did not answer the status query: "
                 f"{failure_text(err)}. Is a worker polling task queue {desc.task_queue}?")
        if json_out:
            doc = {"workflow_id": wf_id, "run_id": desc.run_id,
                   "execution_status": desc.status.name if desc.status else None,
                   **st.model_dump(mode="json")}
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            console.print(status_table(st, wf_id, events=events))
            console.print(f"[bold]workflow[/bold]  {desc.status.name if desc.status else '?'} (run {desc.run_id})")

    run_async(go)


@app.command("list")
def list_cmd(
    app_name: Annotated[str | None, typer.Option("--app", help="only this app")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="only this Kubernetes namespace")] = None,
    strategy: Annotated[str | None, typer.Option(help="only this strategy")] = None,
    running: Annotated[bool, typer.Option("--running", help="only running deployments")] = False,
    limit: Annotated[int, typer.Option(help="at most this many")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Recent deployments, newest first (from Temporal visibility and the Deploy* search attributes)."""
    from deployflow.temporal import DEPLOY_APP, DEPLOY_NAMESPACE, DEPLOY_PHASE, DEPLOY_STRATEGY, DEPLOY_VERSION

    clauses = ["DeployApp IS NOT NULL"]
    if app_name:
        clauses.append(f"DeployApp = {_quote(app_name)}")
    if namespace:
        clauses.append(f"DeployNamespace = {_quote(namespace)}")
    if strategy:
        clauses.append(f"DeployStrategy = {_quote(strategy)}")
    if running:
        clauses.append("ExecutionStatus = 'Running'")

    async def go() -> None:
        client = await connect_client()
        rows = []
        async for wf in client.list_workflows(" AND ".join(clauses), limit=limit):
            sa = wf.typed_search_attributes
            rows.append({
                "workflow_id": wf.id, "run_id": wf.run_id, "type": wf.workflow_type,
                "status": wf.status.name if wf.status else "?",
                "app": sa.get(DEPLOY_APP), "namespace": sa.get(DEPLOY_NAMESPACE),
                "strategy": sa.get(DEPLOY_STRATEGY), "phase": sa.get(DEPLOY_PHASE), "version": sa.get(DEPLOY_VERSION),
                "started": wf.start_time.isoformat() if wf.start_time else None,
                "closed": wf.close_time.isoformat() if wf.close_time else None,
            })
        if json_out:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return
        if not rows:
            console.print("no deployments found")
            return
        table = Table(show_edge=False)
        for col in ("workflow id", "strategy", "status", "phase", "version", "started", "closed"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["workflow_id"], r["strategy"] or "-", r["status"], phase_text(r["phase"] or "-"),
                          r["version"] or "-", (r["started"] or "-")[:19], (r["closed"] or "-")[:19])
        console.print(table)

    run_async(go)
