"""Payload encryption: make a key, and serve the codec endpoint the Temporal UI and the `temporal` CLI decode with."""

from __future__ import annotations

from typing import Annotated

import typer

from deployflow.cli.base import EXIT_BAD_INPUT, app, console, err_console


@app.command("codec-key")
def codec_key() -> None:
    """Print a fresh key for DEPLOYFLOW_CODEC_KEY (store it in a Secret, never in a spec or a repository)."""
    from deployflow.codec import generate_key

    console.print(generate_key(), markup=False)


@app.command("codec-server")
def codec_server(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8888,
    ui_origin: Annotated[
        list[str] | None, typer.Option(help="a Temporal UI origin allowed by CORS (repeatable)")
    ] = None,
    allow_unauthenticated: Annotated[
        bool, typer.Option("--allow-unauthenticated", help="serve a non-loopback address without a bearer token")
    ] = False,
) -> None:
    """Serve /encode and /decode for `temporal --codec-endpoint` and the UI (keys from DEPLOYFLOW_CODEC_KEY[_FILE])."""
    from deployflow.codec import CodecConfigError
    from deployflow.codec_server import run

    try:
        run(host, port, ui_origin or None, allow_unauthenticated=allow_unauthenticated)
    except CodecConfigError as err:
        err_console.print(f"error: {err}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
