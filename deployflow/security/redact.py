"""Keeping credentials and remote bodies out of messages.

Every message an activity produces may end up in workflow history, the `status` query, notifications and the
worker's log, all of which are readable by more people than the credentials are. A `Redactor` remembers the
credential values fetched while one activity runs and replaces them with `***` wherever they turn up: in an error
raised by a library, in a body a remote server echoed back, in a URL quoted by an exception.
"""

from __future__ import annotations

import base64
import contextlib
import json
from urllib.parse import quote, urlsplit

MASK = "***"
BODY_EXCERPT = 200

# Parts of a credential shorter than this (a URL's path "/", a scheme word) are too common to mask on their own;
# the whole value is always masked, whatever its length.
_MIN_PART = 6


class Redactor:
    """Masks the credential values it was told about; one per activity attempt."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str) -> str:
        """Remembers `value` (and the forms it travels in: URL-quoted, base64, its URL path, a token after
        'Bearer ') so it is masked from now on; returns it unchanged."""
        for form in _forms(value):
            if form:
                self._values.add(form)
        return value

    @property
    def active(self) -> bool:
        return bool(self._values)

    def __call__(self, text: str) -> str:
        # Longest first, so a value containing another one is masked whole.
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text

    def excerpt(self, body: bytes | str | None, limit: int = BODY_EXCERPT) -> str:
        """A remote body fit for a message: compact JSON where it is JSON, credentials masked, then cut to `limit`
        characters (masking first, so a cut never leaves half a credential behind)."""
        return excerpt(body, limit, self)


def excerpt(body: bytes | str | None, limit: int = BODY_EXCERPT, redactor: Redactor | None = None) -> str:
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    text = text.strip()
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    if redactor is not None:
        text = redactor(text)
    # Control characters from a remote body would let it forge lines in logs.
    text = "".join(c if c.isprintable() else " " for c in text)
    return text[:limit] + ("..." if len(text) > limit else "")


def _forms(value: str) -> list[str]:
    stripped = value.strip()
    forms = [value, stripped, quote(stripped, safe=""), quote(stripped), json.dumps(stripped)[1:-1]]
    forms.append(base64.b64encode(stripped.encode()).decode())
    scheme, _, token = stripped.partition(" ")
    if token and scheme.isalpha():
        forms.append(token.strip())  # "Bearer abc": the token alone is the secret part
    with contextlib.suppress(ValueError):
        url = urlsplit(stripped)
        if url.scheme in ("http", "https") and url.netloc:
            # The path and query of a webhook URL are its secret (Slack's /services/T/B/xyz).
            rest = url.path + (f"?{url.query}" if url.query else "")
            forms += [rest, url.path, url.query]
    return [f for f in forms if f in (value, stripped) or len(f) >= _MIN_PART]
