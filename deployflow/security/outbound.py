"""The one policy for every URL the worker fetches: metric providers, HTTP hooks, confirmation webhooks,
notifications.

A spec author chooses these URLs, and the worker runs with credentials and network access of its own. So:

- only http and https, and no user:password in the URL;
- no loopback, link-local, unspecified or cloud-metadata address (169.254.169.254, fd00:ec2::254,
  metadata.google.internal), unless the worker's operator allows it in ``DEPLOYFLOW_ALLOWED_HOSTS`` (CIDRs and
  host names, comma-separated; the local stack allows 127.0.0.1);
- the check is made on the *resolved* addresses, every one of them, and the connection goes to the address that
  was checked (the request keeps its Host header and TLS server name), so DNS cannot move a request past it
  between the check and the connection;
- redirects are not followed; a client that follows them sends every hop through the same check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

ALLOWED_HOSTS_SETTING = "DEPLOYFLOW_ALLOWED_HOSTS"
SCHEMES = ("http", "https")
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(Exception):
    """The URL is not one the worker may fetch: asking again will not change that."""


def check_url(url: str) -> str:
    """What can be known of a URL without resolving it: raises ValueError naming the rule (spec validators).

    Template placeholders (``{{ args.x }}``) may stand in the host; the request is checked again once filled in.
    """
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as err:
        raise ValueError(f"not a valid URL: {err}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"only http:// and https:// URLs may be fetched, not {parts.scheme or 'a relative URL'}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("a URL must not carry user:password (it would be kept in the history in clear)")
    if not hostname:
        raise ValueError("the URL has no host")
    literal = _literal(hostname)
    if _is_metadata_host(hostname) or (literal is not None and _unmapped(literal) in METADATA_ADDRESSES):
        raise ValueError(f"{hostname} is a cloud metadata address, which the worker never fetches")
    return url


class OutboundPolicy:
    """The addresses the worker refuses, less what its operator allowed."""

    def __init__(self, allowed: str | None = None) -> None:
        raw = os.environ.get(ALLOWED_HOSTS_SETTING, "") if allowed is None else allowed
        self.networks: list[IPNetwork] = []
        self.hosts: set[str] = set()
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.hosts.add(item.lower().rstrip("."))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why `address` (which `host` resolved to) may not be fetched, or None when it may."""
        address = _unmapped(address)
        if host.lower().rstrip(".") in self.hosts or any(address in net for net in self.networks):
            return None
        if address in METADATA_ADDRESSES:
            kind = "a cloud metadata address"
        elif address.is_loopback:
            kind = "a loopback address"
        elif address.is_link_local:
            kind = "a link-local address"
        elif address.is_unspecified:
            kind = "the unspecified address"
        else:
            return None
        shown = host if host == str(address) else f"{host} ({address})"
        return (
            f"{shown} is {kind}, which the worker does not fetch unless {ALLOWED_HOSTS_SETTING} allows it"
        )

    def vet(self, url: httpx.URL) -> IPAddress:
        """Checks the URL and every address its host resolves to; returns the address to connect to."""
        try:
            check_url(str(url))
        except ValueError as err:
            raise OutboundRefused(f"{shown_url(url)}: {err}") from None
        host = url.host
        addresses = resolve_host(host, url.port or (443 if url.scheme == "https" else 80))
        if not addresses:
            raise OutboundRefused(f"{shown_url(url)}: {host} does not resolve to any address")
        for address in addresses:
            problem = self.refusal(host, address)
            if problem:
                raise OutboundRefused(f"{shown_url(url)}: {problem}")
        return addresses[0]


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address resolves to itself); tests replace this."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise httpx.ConnectError(f"cannot resolve {host}: {err.strerror}") from None
    seen: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in seen:
            seen.append(address)
    return seen


def _pinned(request: httpx.Request, address: IPAddress) -> httpx.Request:
    """The same request addressed to the vetted IP: Host header and TLS server name stay the original host's.
    A copy, so the caller's request (and the response's `.request`) keeps its URL."""
    headers = request.headers.copy()
    headers.setdefault("Host", request.url.netloc.decode("ascii"))
    return httpx.Request(
        request.method,
        request.url.copy_with(host=str(address)),
        headers=headers,
        stream=request.stream,
        extensions={**request.extensions, "sni_hostname": request.url.host},
    )


class PinnedTransport(httpx.HTTPTransport):
    """A transport that vets every request (redirect hops included) and connects to the address it vetted."""

    def __init__(self, policy: OutboundPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy or OutboundPolicy()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return super().handle_request(_pinned(request, self.policy.vet(request.url)))


class AsyncPinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: OutboundPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy or OutboundPolicy()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        address = await asyncio.to_thread(self.policy.vet, request.url)
        return await super().handle_async_request(_pinned(request, address))


def client(timeout: float, **kwargs: Any) -> httpx.Client:
    """An httpx client under the policy (read from the worker's settings now); redirects are not followed."""
    return httpx.Client(timeout=timeout, transport=PinnedTransport(), follow_redirects=False, **kwargs)


def async_client(timeout: float, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, transport=AsyncPinnedTransport(), follow_redirects=False, **kwargs)


async def post_json(url: str, body: Any, timeout: float) -> httpx.Response:
    """One JSON POST under the policy, whatever the status of the answer: raises OutboundRefused for a refused
    address and httpx.HTTPError when nothing answered."""
    async with async_client(timeout) as http:
        return await http.post(url, json=body)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_metadata_host(host: str) -> bool:
    return host.lower().rstrip(".") in METADATA_HOSTS


class _UrlWithoutPath(logging.Filter):
    """httpx logs every request's full URL at INFO; a webhook URL's path is a credential, so the worker's log gets
    the scheme, host and port only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) > 1 and isinstance(record.args[1], httpx.URL):
            record.args = (record.args[0], shown_url(record.args[1]), *record.args[2:])
        return True


logging.getLogger("httpx").addFilter(_UrlWithoutPath())


def shown_url(url: httpx.URL) -> str:
    """The URL without its path or query, which may carry a credential (a webhook URL's token)."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}" + (f":{url.port}" if url.port else "")

