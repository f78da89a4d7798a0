"""What every command shares: the typer app, the consoles, exit codes and the CliError that becomes one."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="deployflow",
    help="Zero-downtime Kubernetes deployments (blue-green, canary, rolling) as durable Temporal workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Logs and CI are not terminals: rich would wrap them at 80 columns, cutting workflow ids and tables apart.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
# Values from specs and clusters are printed as written: no markup, no :emoji: codes (see the print calls).
console = Console(highlight=False, emoji=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, emoji=False, width=_WIDTH)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

T = TypeVar("T")


class CliError(Exception):
    """An error the user can act on: printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    raise CliError(message, code)


ENCRYPTED_HINT = (
    "this deployment's payloads are encrypted: set DEPLOYFLOW_CODEC_KEY (or DEPLOYFLOW_CODEC_KEY_FILE) to the key its "
    "worker uses"
)


def is_encrypted_payload_error(err: BaseException) -> bool:
    """The SDK's payload converter names the encoding it does not know; encrypted payloads need the key."""
    return isinstance(err, KeyError) and "binary/encrypted" in str(err)


def run_async(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Runs one command's coroutine, turning CliError into a clean message and exit code."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except CliError as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", markup=True, soft_wrap=True)
        raise typer.Exit(err.code) from None
    except KeyError as err:
        if not is_encrypted_payload_error(err):
            raise
        err_console.print(f"error: {ENCRYPTED_HINT}", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        err_console.print("interrupted (a deployment that started keeps running: see `deployflow status`)")
        raise typer.Exit(130) from None
