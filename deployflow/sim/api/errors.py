"""Errors as the apiserver answers them: `Status` bodies with its codes and reasons, 422 with one cause per field."""

from __future__ import annotations

from aiohttp import web

from deployflow.sim.api.http import json_response
from deployflow.sim.store import Obj, Resource, StoreError


class ApiError(StoreError):
    pass


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def error_response(err: StoreError) -> web.Response:
    headers = {"Retry-After": "1"} if err.code in (429, 503) else None
    return json_response(status_body(err.code, err.reason, err.message, err.details), err.code, headers)


def invalid(res: Resource, name: str, causes: list[tuple[str, str, str]]) -> StoreError:
    """422 Invalid with one cause per field, each (reason, field, message), as the apiserver's validation."""
    msg = "; ".join(f"{f}: {m}" for _, f, m in causes)
    return StoreError(
        422,
        "Invalid",
        f'{res.kind}.{res.group or "core"} "{name}" is invalid: {msg}'.replace(".core ", " "),
        {
            "name": name,
            "group": res.group,
            "kind": res.kind,
            "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes],
        },
    )
