"""Reading requests and writing responses the way the apiserver does: bodies in JSON, YAML or protobuf, the field
manager, dry runs, warnings, and `as=Table` negotiation."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from deployflow.sim import protobuf
from deployflow.sim.store import StoreError

CONTENT_JSON = "application/json"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type=CONTENT_JSON,
        headers=headers,
    )


def json_list_response(head: dict[str, Any], items: list[bytes]) -> web.Response:
    """A list whose items are already JSON: `head` (kind, apiVersion, metadata) plus `"items": [...]`."""
    start = json.dumps(head, separators=(",", ":")).encode()[:-1]
    body = b"".join((start, b',"items":[', b",".join(items), b"]}"))
    return web.Response(body=body, content_type=CONTENT_JSON)


async def read_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    ctype = request.content_type
    if ctype == "application/vnd.kubernetes.protobuf":
        return protobuf.decode(raw)
    if "protobuf" in ctype or "cbor" in ctype:
        raise StoreError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                         f'accepted media types include: application/json, application/yaml; got "{ctype}"')
    if ctype.endswith("yaml"):
        return yaml.safe_load(raw)
    return json.loads(raw)


def field_manager(request: web.Request, default_from_agent: bool = True) -> str:
    manager = request.query.get("fieldManager")
    if manager:
        return manager
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/", 1)[0] if default_from_agent else ""


def is_dry_run(request: web.Request) -> bool:
    return "All" in request.query.getall("dryRun", [])


def warning_headers(unknown: list[str]) -> dict[str, str] | None:
    if not unknown:
        return None
    return {"Warning": ", ".join(f'299 - "unknown field \\"{u}\\""' for u in unknown)}


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")
