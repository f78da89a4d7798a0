"""Steering a running release: updates, so a refusal comes back as a message and a non-zero exit; --no-wait sends
signals instead."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape

from deployflow.cli.base import app, console, fail, run_async
from deployflow.cli.client import connect_client, resolve_workflow_id
from deployflow.cli.output import failure_text, status_table
from deployflow.status import DeploymentStatus


def _message(name: str, ref: str, payload: BaseModel, no_wait: bool, namespace: str | None) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    async def go() -> None:
        client = await connect_client()
        wf_id = await resolve_workflow_id(client, ref, namespace)
        handle = client.get_workflow_handle(wf_id)
        try:
            if no_wait:
                await handle.signal(name, payload)
                console.print(f"sent {name} to {escape(wf_id)}")
                return
            result = await handle.execute_update(name, payload)
        except WorkflowUpdateFailedError as err:
            fail(f"{name} refused by {wf_id}: {failure_text(err.cause)}")
        except Exception as err:
            reason = failure_text(err)
            if "already completed" in reason or "not found" in reason.lower():
                fail(f"{name} refused: deployment {wf_id} is not running ({reason}); see `deployflow status {wf_id}`")
            fail(f"{name} to {wf_id} failed: {reason}")
        console.print(f"[green]{name}[/green] accepted by {escape(wf_id)}")
        try:
            st = DeploymentStatus.model_validate(result)
        except ValidationError:
            if result is not None:
                console.print(str(result))
            return
        console.print(status_table(st, wf_id, events=3))

    run_async(go)


RefArg = Annotated[str, typer.Argument(help="workflow id (deploy/<cluster>/<ns>/<app>) or app name")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="send a signal instead of an update (no answer)")]
NsOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="narrow an app name")]


@app.command()
def pause(ref: RefArg, reason: Annotated[str, typer.Option(help="why")] = "paused by operator",
          no_wait: NoWaitOpt = False, namespace: NsOpt = None) -> None:
    """Hold the deployment at its current step."""
    from deployflow.spec.control import PauseRequest

    _message("pause", ref, PauseRequest(reason=reason), no_wait, namespace)


@app.command()
def resume(ref: RefArg, no_wait: NoWaitOpt = False, namespace: NsOpt = None) -> None:
    """Continue a paused deployment."""
    from deployflow.spec.control import ResumeRequest

    _message("resume", ref, ResumeRequest(), no_wait, namespace)


@app.command()
def abort(ref: RefArg, reason: Annotated[str, typer.Option(help="why (recorded in the events and the failure)")],
          no_wait: NoWaitOpt = False, namespace: NsOpt = None) -> None:
    """Stop the deployment and send all traffic back to the stable version."""
    from deployflow.spec.control import AbortRequest

    _message("abort", ref, AbortRequest(reason=reason), no_wait, namespace)


@app.command()
def promote(ref: RefArg, full: Annotated[bool, typer.Option("--full", help="skip all remaining steps")] = False,
            no_wait: NoWaitOpt = False, namespace: NsOpt = None) -> None:
    """Pass the current gate (or, with --full, go straight to 100%)."""
    from deployflow.spec.control import PromoteRequest

    _message("promote", ref, PromoteRequest(full=full), no_wait, namespace)


@app.command()
def rollback(ref: RefArg, reason: Annotated[str, typer.Option(help="why")] = "rollback requested by operator",
             no_wait: NoWaitOpt = False, namespace: NsOpt = None) -> None:
    """Return to the previous version now, even after promotion."""
    from deployflow.spec.control import RollbackRequest

    _message("rollback", ref, RollbackRequest(reason=reason), no_wait, namespace)


@app.command()
def approve(ref: RefArg, approver: Annotated[str, typer.Option(help="who approves (recorded)")],
            comment: Annotated[str, typer.Option(help="note for the record")] = "",
            no_wait: NoWaitOpt = False, namespace: NsOpt = None) -> None:
    """Pass a manual approval gate."""
    from deployflow.spec.control import ApproveRequest

    _message("approve", ref, ApproveRequest(approver=approver, comment=comment), no_wait, namespace)
