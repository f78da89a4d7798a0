"""Confirmation webhooks: an external system says whether the rollout may proceed (2xx: yes, anything else: not yet).

The URL comes from the spec or from a credential variable of the worker (`url_env`); either way the request goes
out under the outbound policy, and what is said about the answer is capped and masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from deployflow.security import outbound
from deployflow.security.credentials import CredentialMissing, CredentialRefused, Credentials
from deployflow.security.outbound import OutboundRefused
from deployflow.security.redact import Redactor
from deployflow.spec.hooks import ConfirmHook


class ConfirmConfigError(Exception):
    """The webhook cannot be asked as configured: asking again will not help."""


@dataclass
class ConfirmAnswer:
    confirmed: bool
    detail: str


def confirm_url(hook: ConfirmHook, credentials: Credentials) -> str:
    if hook.url is not None:
        return hook.url
    try:
        return credentials.env(hook.url_env or "", "url_env")
    except (CredentialRefused, CredentialMissing) as err:
        raise ConfirmConfigError(str(err)) from None


async def ask(hook: ConfirmHook, body: dict[str, Any], timeout: float = 10.0) -> ConfirmAnswer:
    redactor = Redactor()
    url = confirm_url(hook, Credentials(redactor))
    try:
        response = await outbound.post_json(url, body, timeout)
    except OutboundRefused as err:
        raise ConfirmConfigError(redactor(str(err))) from None
    except httpx.HTTPError as err:
        return ConfirmAnswer(False, f"unreachable ({type(err).__name__})")
    detail = f"answered {response.status_code}"
    text = redactor.excerpt(response.content)
    if text:
        detail += f": {text}"
    return ConfirmAnswer(200 <= response.status_code < 300, detail)
