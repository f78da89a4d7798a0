"""The path of a request to a Service through the API server's proxy, and the rules that keep it there.

`/api/v1/namespaces/{ns}/services/{name}:{port}/proxy/{path}` is sent with the worker's own token. A path that
climbs out of the proxy prefix (`..`, `%2e%2e`, an encoded slash or backslash the API server decodes) reaches any
other object the worker may read, Secrets included. So the path is decoded, checked segment by segment and
refused with the rule, and the built path is checked once more against the prefix.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import quote, unquote

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# An IANA service name, as Kubernetes validates a port name: letters, digits, '-', at least one letter.
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)
PATH_RULE = (
    "a proxy path must stay under the Service's proxy prefix: an absolute path without '.' or '..' segments "
    "(encoded or not), encoded slashes, backslashes or a scheme and host"
)


def check_port(port: int | str | None) -> int | str | None:
    """A port number (1-65535) or a port name of the Service; raises ValueError naming the rule."""
    if port is None:
        return None
    if isinstance(port, int) and not isinstance(port, bool):
        if 1 <= port <= 65535:
            return port
        raise ValueError(f"port {port} is out of range: a port is 1-65535 or a port name")
    text = str(port)
    if text.isdigit():
        return check_port(int(text))
    if len(text) > 15 or not _PORT_NAME.match(text):
        raise ValueError(
            f"port {text!r} is neither a number nor a port name (at most 15 lower-case letters, digits and '-')"
        )
    return text


def check_path(path: str) -> str:
    """The path, normalised (repeated slashes collapsed); raises ValueError naming the rule when it would leave
    the proxy prefix. A query string is kept as given: the API server does not route on it."""
    raw_path, sep, query = path.partition("?")
    raw_path = raw_path.partition("#")[0]
    if not raw_path.startswith("/") or raw_path.startswith("//") or "://" in raw_path:
        raise ValueError(f"{path!r} is refused: {PATH_RULE}")
    if "\\" in raw_path or any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        raise ValueError(f"{path!r} is refused: {PATH_RULE}")
    decoded = raw_path
    for _ in range(3):  # a double-encoded dot is a dot to whoever decodes twice
        if _ENCODED_SEPARATOR.search(decoded):
            raise ValueError(f"{path!r} is refused: {PATH_RULE}")
        decoded, previous = unquote(decoded), decoded
        if "\\" in decoded or any(segment in (".", "..") for segment in decoded.split("/")):
            raise ValueError(f"{path!r} is refused: {PATH_RULE}")
        if decoded == previous:
            break
    normalised = re.sub(r"/{2,}", "/", raw_path)
    return normalised + (sep + query if sep else "")


def service_proxy_path(namespace: str, service: str, port: int | str | None, path: str) -> str:
    """The one way a probe path to a Service is built."""
    for what, name in (("namespace", namespace), ("service", service)):
        if len(name) > 63 or not _DNS_LABEL.match(name):
            raise ValueError(f"{what} {name!r} is not a DNS label")
    checked_port = check_port(port)
    target = quote(f"{service}:{checked_port}" if checked_port is not None else service, safe=":")
    prefix = f"/api/v1/namespaces/{namespace}/services/{target}/proxy"
    full = prefix + check_path(path)
    # Defence in depth: whatever the checks above missed, the normalised path must still be under the prefix.
    if not posixpath.normpath(unquote(full.partition("?")[0])).startswith(prefix):
        raise ValueError(f"{path!r} is refused: {PATH_RULE}")
    return full
