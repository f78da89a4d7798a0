"""The outbound policy: what the worker may fetch, decided on the resolved address, and what spec validation
refuses before anything runs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from deployflow.security import outbound
from deployflow.security.outbound import ALLOWED_HOSTS_SETTING, OutboundPolicy, OutboundRefused, check_url
from deployflow.spec.analysis import Metric
from deployflow.spec.hooks import Hooks
from tests.security_support import Server, serve


@pytest.fixture
def server() -> Iterator[Server]:
    with serve() as s:
        yield s


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Replaces the resolver; returns the list of names looked up."""
    asked: list[str] = []
    real = outbound.resolve_host

    def resolve(host: str, port: int) -> list[Any]:
        asked.append(host)
        if host in table:
            return [ipaddress.ip_address(a) for a in table[host]]
        return real(host, port)

    monkeypatch.setattr(outbound, "resolve_host", resolve)
    return asked


# --- static checks (spec validation) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("file:///etc/passwd", "only http:// and https://"),
        ("gopher://example.com/", "only http:// and https://"),
        ("/relative", "only http:// and https://"),
        ("http://user:pw@example.com/", "user:password"),
        ("https://token@example.com/", "user:password"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
        ("http://METADATA.google.internal./", "cloud metadata"),
    ],
)
def test_static_check_refuses_with_the_rule(url: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        check_url(url)


def test_static_check_leaves_addresses_to_the_worker() -> None:
    # Loopback may be allowed by the worker's operator, and a template is only known once filled in.
    for url in ("http://127.0.0.1:9090", "https://prometheus.monitoring:9090", "http://{{ args.host }}/x"):
        assert check_url(url) == url


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"pre_deploy": [{"kind": "http", "name": "h", "url": "file:///etc/shadow"}]}, "pre_deploy.0.http.url"),
        ({"pre_deploy": [{"kind": "confirm", "name": "c", "url": "http://169.254.169.254/"}]},
         "pre_deploy.0.confirm.url"),
    ],
)
def test_hook_urls_are_checked_when_the_spec_is_read(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        Hooks.model_validate(spec)
    assert field in str(err.value)


def test_provider_urls_are_checked_when_the_spec_is_read() -> None:
    with pytest.raises(ValidationError, match="provider.web.url") as err:
        Metric.model_validate({"name": "m", "provider": {"kind": "web", "url": "http://a:b@metrics.example/x"}})
    assert "user:password" in str(err.value)
    with pytest.raises(ValidationError, match="provider.prometheus.address"):
        Metric.model_validate(
            {"name": "m", "provider": {"kind": "prometheus", "address": "http://169.254.169.254", "query": "up"}}
        )


# --- literal and resolved addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:9090/", "loopback"),
        ("http://127.8.9.10/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://169.254.10.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://[::]/", "unspecified"),
    ],
)
def test_literal_addresses_are_refused_by_default(url: str, kind: str) -> None:
    with pytest.raises(OutboundRefused, match=kind) as err:
        OutboundPolicy("").vet(httpx.URL(url))
    assert ALLOWED_HOSTS_SETTING in str(err.value)


def test_ordinary_addresses_pass() -> None:
    for url in ("http://10.0.0.7:9090/", "https://93.184.216.34/", "http://[2001:db8::1]/"):
        assert str(OutboundPolicy("").vet(httpx.URL(url))) == httpx.URL(url).host


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {"metrics.example": ["10.0.0.5", "169.254.169.254"], "ok.example": ["10.0.0.6"]})
    with pytest.raises(OutboundRefused, match=r"metrics.example \(169.254.169.254\) is a cloud metadata address"):
        OutboundPolicy("").vet(httpx.URL("https://metrics.example/api"))
    assert str(OutboundPolicy("").vet(httpx.URL("https://ok.example/api"))) == "10.0.0.6"
    assert asked == ["metrics.example", "ok.example"]


def test_a_name_resolving_to_loopback_is_refused_then_allowed_by_name_or_cidr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"internal.example": ["127.0.0.1"]})
    url = httpx.URL("http://internal.example:8080/")
    with pytest.raises(OutboundRefused, match="loopback"):
        OutboundPolicy("").vet(url)
    assert str(OutboundPolicy("internal.example").vet(url)) == "127.0.0.1"
    assert str(OutboundPolicy("10.0.0.0/8, 127.0.0.0/8").vet(url)) == "127.0.0.1"
    with pytest.raises(OutboundRefused):
        OutboundPolicy("other.example,10.0.0.0/8").vet(url)


def test_the_setting_is_read_from_the_worker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWED_HOSTS_SETTING, "127.0.0.1")
    assert str(OutboundPolicy().vet(httpx.URL("http://127.0.0.1:1/"))) == "127.0.0.1"
    monkeypatch.delenv(ALLOWED_HOSTS_SETTING)
    with pytest.raises(OutboundRefused):
        OutboundPolicy().vet(httpx.URL("http://127.0.0.1:1/"))


# --- the transport: connects to the checked address, follows no redirect unchecked -------------------------------


def test_the_connection_goes_to_the_vetted_address_with_the_original_host(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name the real DNS does not know: the request can only arrive if it was sent to the address that was vetted.
    fake_dns(monkeypatch, {"metrics.invalid": ["127.0.0.1"]})
    monkeypatch.setenv(ALLOWED_HOSTS_SETTING, "127.0.0.1/32")
    with outbound.client(5) as http:
        response = http.get(f"http://metrics.invalid:{server.port}/x")
    assert response.status_code == 200
    assert server.seen[-1].headers["Host"] == f"metrics.invalid:{server.port}"


async def test_the_async_client_refuses_before_connecting(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOWED_HOSTS_SETTING, raising=False)
    async with outbound.async_client(5) as http:
        with pytest.raises(OutboundRefused, match="loopback"):
            await http.get(f"{server.url}/x")
    assert server.seen == []


def test_dns_cannot_move_the_request_after_the_check(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver answering differently on each lookup (DNS rebinding): the transport looks up once, checks,
    and connects to what it checked, so a later answer cannot redirect the connection."""
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])
    monkeypatch.setattr(outbound, "resolve_host", lambda host, port: [ipaddress.ip_address(a) for a in next(answers)])
    monkeypatch.setenv(ALLOWED_HOSTS_SETTING, "127.0.0.1")
    with outbound.client(5) as http:
        assert http.get(f"http://rebind.invalid:{server.port}/").status_code == 200
        with pytest.raises(OutboundRefused, match="metadata"):
            http.get(f"http://rebind.invalid:{server.port}/")
    assert len(server.seen) == 1


def test_redirects_are_not_followed_and_a_following_client_checks_every_hop(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOWED_HOSTS_SETTING, "127.0.0.1")
    server.redirect("/go", "http://169.254.169.254/latest/meta-data/iam/")
    with outbound.client(5) as http:
        response = http.get(f"{server.url}/go")
    assert response.status_code == 302  # answered as is: the caller judges a 302
    with httpx.Client(transport=outbound.PinnedTransport(), follow_redirects=True) as http, pytest.raises(
        OutboundRefused, match="cloud metadata"
    ):
        http.get(f"{server.url}/go")
    server.redirect("/loop", "http://127.0.0.2:1/elsewhere")
    monkeypatch.setenv(ALLOWED_HOSTS_SETTING, "127.0.0.1/32")
    with httpx.Client(transport=outbound.PinnedTransport(), follow_redirects=True) as http, pytest.raises(
        OutboundRefused, match="127.0.0.2 is a loopback address"
    ):
        http.get(f"{server.url}/loop")
