"""Confirmation webhooks: an external system says whether the rollout may proceed (2xx: yes, anything else: not yet)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from deployflow.spec.hooks import ConfirmHook


class ConfirmConfigError(Exception):
    """The webhook cannot be asked as configured: asking again will not help."""


@dataclass
class ConfirmAnswer:
    confirmed: bool
    detail: str


def confirm_url(hook: ConfirmHook) -> str:
    if hook.url is not None:
        return hook.url
    url = os.environ.get(hook.url_env or "", "").strip()
    if not url:
        raise ConfirmConfigError(f"environment variable {hook.url_env} of the worker is not set")
    return url


async def ask(hook: ConfirmHook, body: dict[str, Any], timeout: float = 10.0) -> ConfirmAnswer:
    url = confirm_url(hook)
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            response = await http.post(url, json=body)
    except httpx.HTTPError as err:
        return ConfirmAnswer(False, f"unreachable ({type(err).__name__})")
    detail = f"answered {response.status_code}"
    text = response.text.strip()[:200]
    if text:
        detail += f": {text}"
    return ConfirmAnswer(200 <= response.status_code < 300, detail)
