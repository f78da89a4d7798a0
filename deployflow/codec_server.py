"""The codec server: decrypts (and encrypts) payloads for the Temporal UI and the `temporal` CLI.

Temporal's remote codec protocol: `POST /decode` and `POST /encode` take and return the Payloads message in proto
JSON (`{"payloads": [{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}]}`); the UI also sends
`X-Namespace`. The UI calls it from the browser, so it answers CORS preflights for the configured UI origins only.

It holds the keys, so it is a decryption oracle: whoever can reach it reads every history. Hence it listens on
127.0.0.1 unless told otherwise, refuses to listen elsewhere without a bearer token (DEPLOYFLOW_CODEC_AUTH_TOKEN)
unless explicitly allowed, and refuses browser requests from origins not on the list (which also defeats DNS
rebinding against a local server).

    python -m deployflow.codec_server --port 8888 --ui-origin http://localhost:8233
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from deployflow.codec import CodecConfigError, PayloadDecryptionError, codec_from_env

AUTH_TOKEN_ENV = "DEPLOYFLOW_CODEC_AUTH_TOKEN"
CORS_ORIGINS_ENV = "DEPLOYFLOW_CODEC_CORS_ORIGINS"
# The dev server's UI (`temporal server start-dev`, `deployflow dev`).
DEFAULT_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888
# The UI decodes a page of events at once; Temporal caps one payload at 2 MB.
MAX_BODY_BYTES = 32 * 1024 * 1024
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"

log = logging.getLogger("deployflow.codec_server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    codec: PayloadCodec, *, auth_token: str | None = None, cors_origins: Sequence[str] = DEFAULT_ORIGINS
) -> web.Application:
    """The aiohttp application; `auth_token` None means no Authorization header is required."""
    origins = frozenset(o.rstrip("/") for o in cors_origins)
    expected = f"Bearer {auth_token}".encode() if auth_token else None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") not in origins:
            return web.Response(status=403, text=f"origin {origin} is not allowed to use this codec server")
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
        elif request.path != "/health" and expected is not None and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), expected
        ):
            response = web.Response(status=401, text="missing or wrong bearer token",
                                    headers={"WWW-Authenticate": "Bearer"})
        else:
            response = await handler(request)
        if origin is not None:
            response.headers.update({
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                # The UI's "include cross-origin credentials" option sends cookies; allowed for listed origins only.
                "Access-Control-Allow-Credentials": "true",
                "Vary": "Origin",
            })
        return response

    def endpoint(transform: Callable[[Sequence], Awaitable[list]]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                payloads = json_format.Parse(await request.read(), Payloads(), ignore_unknown_fields=True)
            except (json_format.ParseError, UnicodeDecodeError) as err:
                return web.Response(status=400, text=f"body is not a Payloads JSON message: {err}")
            try:
                out = Payloads(payloads=await transform(payloads.payloads))
            except PayloadDecryptionError as err:
                log.warning("%s for namespace %s: %s", request.path, request.headers.get("X-Namespace", "?"), err)
                return web.Response(status=400, text=str(err))
            return web.Response(text=json_format.MessageToJson(out), content_type="application/json")

        return handle

    async def health(_: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/encode", endpoint(codec.encode))
    app.router.add_post("/decode", endpoint(codec.decode))
    app.router.add_get("/health", health)
    for path in ("/encode", "/decode"):
        app.router.add_route("OPTIONS", path, health)  # answered by the guard; routed so aiohttp does not 405
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    cors_origins: Sequence[str] | None = None,
    auth_token: str | None = None,
    allow_unauthenticated: bool = False,
) -> None:
    """Serves until interrupted. Keys from DEPLOYFLOW_CODEC_KEY / _KEY_FILE; None arguments read the environment
    (DEPLOYFLOW_CODEC_AUTH_TOKEN, DEPLOYFLOW_CODEC_CORS_ORIGINS, comma-separated).

    Raises CodecConfigError when no key is configured, the key is unusable, or a non-loopback `host` would serve
    without a token and `allow_unauthenticated` is not set.
    """
    codec = codec_from_env()
    if codec is None:
        raise CodecConfigError("the codec server needs DEPLOYFLOW_CODEC_KEY or DEPLOYFLOW_CODEC_KEY_FILE")
    token = auth_token if auth_token is not None else os.environ.get(AUTH_TOKEN_ENV) or None
    if cors_origins is None:
        configured = os.environ.get(CORS_ORIGINS_ENV, "")
        cors_origins = [o.strip() for o in configured.split(",") if o.strip()] or list(DEFAULT_ORIGINS)
    if token is None and not is_loopback(host) and not allow_unauthenticated:
        raise CodecConfigError(
            f"refusing to serve decrypted payloads on {host} without {AUTH_TOKEN_ENV}: set a token, listen on "
            "127.0.0.1, or pass --allow-unauthenticated behind an authenticating proxy"
        )
    log.info("codec server on http://%s:%d (key ids %s, origins %s, bearer token %s)", host, port,
             codec.key_ids, list(cors_origins), "required" if token else "not required")
    web.run_app(create_app(codec, auth_token=token, cors_origins=cors_origins), host=host, port=port,
                print=None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployflow.codec_server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--ui-origin", action="append", dest="origins", metavar="URL",
                        help=f"a Temporal UI origin allowed by CORS (repeatable; default ${CORS_ORIGINS_ENV} "
                             f"or {', '.join(DEFAULT_ORIGINS)})")
    parser.add_argument("--allow-unauthenticated", action="store_true",
                        help=f"listen on a non-loopback address without ${AUTH_TOKEN_ENV}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        run(args.host, args.port, args.origins, allow_unauthenticated=args.allow_unauthenticated)
    except CodecConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
