"""The address policy: refused addresses are never connected to, whatever redirects or DNS say.

Every test here runs under a tripwire on the event loop's `sock_connect`: an attempt to reach
anything outside 127.0.0.0/8 is recorded and refused (never made) and fails the test. Private
and link-local addresses come from a stub resolver, so no packet leaves the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver

from monitor.config import load_config
from monitor.errors import ConfigError, FetchError
from monitor.fetcher import Fetcher, FetchSettings
from monitor.netpolicy import AddressPolicy, parse_networks
from raqib.pipeline import fetch_settings
from tests.e2e_setup import ROOT, write_config
from tests.feedserver import FeedServer

RSS = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def settings(*allow: str) -> FetchSettings:
    return FetchSettings(connect_timeout=1, read_timeout=1, total_timeout=3, retries=0,
                         allow_networks=allow)


@pytest.fixture(autouse=True)
async def tripwire(monkeypatch):
    """Records every connect; refuses (and fails the test on) any outside 127.0.0.0/8."""
    loop = asyncio.get_running_loop()
    real = loop.sock_connect
    seen: list[str] = []
    outside: list[str] = []

    async def sock_connect(sock, address):
        host = address[0]
        seen.append(host)
        ip = ipaddress.ip_address(host.split("%")[0])
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip not in LOOPBACK:
            outside.append(host)
            raise ConnectionRefusedError(f"tripwire: test tried to connect to {host}")
        return await real(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    yield seen
    assert not outside, f"a connection outside 127.0.0.0/8 was attempted: {outside}"


class StubResolver(AbstractResolver):
    """Answers from a fixed table, like a DNS server the feed's owner controls."""

    def __init__(self, table: dict[str, list[str]]):
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.asked.append(host)
        return [{"hostname": host, "host": ip, "port": port,
                 "family": socket.AF_INET6 if ":" in ip else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for ip in self.table[host]]

    async def close(self):
        pass


@pytest.fixture
async def server2():
    """A feed server on 127.0.0.2: the one loopback address the fetcher is allowed to reach."""
    server = await FeedServer().start("127.0.0.2")
    try:
        yield server
    finally:
        await server.stop()


# ------------------------------------------------------------------ the policy itself


@pytest.mark.parametrize("address,kind", [
    ("127.0.0.1", "a loopback"), ("127.8.9.10", "a loopback"), ("::1", "a loopback"),
    ("0.0.0.0", "an unspecified"), ("::", "an unspecified"),
    ("10.0.0.1", "a private"), ("172.16.5.4", "a private"), ("192.168.1.1", "a private"),
    ("fd00::1", "a private"),
    ("169.254.169.254", "a link-local"), ("fe80::1", "a link-local"), ("fe80::1%eth0", "a link-local"),
    ("100.64.0.1", "a shared (CGNAT)"), ("100.127.255.254", "a shared (CGNAT)"),
    ("224.0.0.1", "a multicast"), ("ff02::1", "a multicast"),
    ("240.0.0.1", "a"), ("255.255.255.255", "a"), ("192.0.2.1", "a"), ("198.18.0.1", "a"),
    ("::ffff:127.0.0.1", "IPv4-mapped form of a loopback"), ("::ffff:10.0.0.1", "IPv4-mapped form of a private"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of a link-local"),
    ("::127.0.0.1", "IPv4-compatible form of a loopback"),
    ("64:ff9b::a00:1", "NAT64 form of a private"), ("64:ff9b::7f00:1", "NAT64 form of a loopback"),
    ("2002:a00:1::", "6to4 form of a private"),
])
def test_non_public_addresses_are_refused_by_default(address, kind):
    problem = AddressPolicy().problem(address)
    assert problem is not None and problem.startswith(f"refused: {address} is {kind}")
    assert problem.endswith("; add it to fetch.allow_networks to allow")


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111",
                                     "::ffff:93.184.216.34", "100.128.0.1",
                                     "64:ff9b::808:808"])  # DNS64 for 8.8.8.8
def test_public_addresses_are_allowed(address):
    assert AddressPolicy().problem(address) is None


def test_private_address_message_is_one_clear_line():
    assert AddressPolicy().problem("10.0.0.1") == (
        "refused: 10.0.0.1 is a private address; add it to fetch.allow_networks to allow")


def test_allow_networks_opts_in_exactly_those_networks():
    policy = AddressPolicy(["10.1.0.0/16", "127.0.0.2/32", "fd00:1::/32"])
    assert policy.problem("10.1.2.3") is None
    assert policy.problem("::ffff:10.1.2.3") is None  # the kernel connects to 10.1.2.3 itself
    assert policy.problem("127.0.0.2") is None
    assert policy.problem("fd00:1::5") is None
    assert "private" in policy.problem("10.2.0.1")
    assert "loopback" in policy.problem("127.0.0.1")
    assert "loopback" in policy.problem("::1")
    assert "NAT64" in policy.problem("64:ff9b::a01:203")  # allowing 10.1/16 is not allowing NAT64


@pytest.mark.parametrize("value,hint", [("10.0.0.1/8", "did you mean 10.0.0.0/8"), ("intranet", "CIDR"),
                                        ("10.0.0.0/33", "CIDR")])
def test_parse_networks_rejects_typos(value, hint):
    with pytest.raises(ValueError) as ei:
        parse_networks([value])
    assert hint in str(ei.value) and value in str(ei.value)


def test_config_allow_networks_is_validated(tmp_path):
    cfg = write_config(tmp_path, [("a", "http://example.org/rss")],
                       settings={"fetch": {"allow_networks": ["10.0.0.0/8", "10.0.0.1/8"]}})
    with pytest.raises(ConfigError) as ei:
        load_config(cfg, env={})
    assert "raqib.yaml" in str(ei.value) and "fetch.allow_networks" in str(ei.value)
    assert "10.0.0.1/8" in str(ei.value)


def test_shipped_config_allows_no_private_network():
    config = load_config(ROOT / "config", env={})
    assert config.settings.fetch.allow_networks == ()
    assert "loopback" in AddressPolicy(fetch_settings(config).allow_networks).problem("127.0.0.1")


# ------------------------------------------------------------------ through real connections


async def test_default_settings_refuse_a_loopback_feed_without_requesting_it(feed_server, tripwire):
    config = load_config(ROOT / "config", env={})
    feed_server.set_feed("/rss", RSS)
    async with Fetcher(fetch_settings(config)) as f:
        with pytest.raises(FetchError) as ei:
            await f.fetch(feed_server.url("/rss"))
    assert "refused: 127.0.0.1 is a loopback address" in str(ei.value)
    assert feed_server.requests == [] and tripwire == []


async def test_server_on_127_0_0_2_is_reachable_when_allowed(server2, tripwire):
    server2.set_feed("/rss", RSS)
    async with Fetcher(settings("127.0.0.2/32")) as f:
        res = await f.fetch(server2.url("/rss"))
    assert res.body == RSS and tripwire == ["127.0.0.2"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0.0.0.0"])
async def test_redirect_to_another_loopback_address_is_refused(server2, feed_server, tripwire, host):
    """Only 127.0.0.2 is allowed: a redirect to any other form of loopback must not be followed."""
    feed_server.set_feed("/internal", b"<rss>internal secrets</rss>")
    server2.set_redirect("/rss", f"http://{host}:{feed_server.port}/internal")
    async with Fetcher(settings("127.0.0.2/32")) as f:
        with pytest.raises(FetchError) as ei:
            await f.fetch(server2.url("/rss"))
    message = str(ei.value)
    assert "refused:" in message and "add it to fetch.allow_networks" in message, message
    assert ("loopback" in message) or ("unspecified" in message), message
    assert "\n" not in message
    assert feed_server.requests == []
    assert set(tripwire) == {"127.0.0.2"}  # nothing else was even attempted
    assert server2.hits["/rss"] == 1  # a refusal is final, not retried


@pytest.mark.parametrize("ip,kind", [("10.0.0.1", "a private"), ("192.168.0.10", "a private"),
                                     ("169.254.169.254", "a link-local"), ("fe80::1", "a link-local"),
                                     ("100.64.1.1", "a shared (CGNAT)"),
                                     ("::ffff:10.0.0.1", "IPv4-mapped form of a private")])
async def test_name_resolving_to_a_refused_address_is_never_connected(ip, kind, tripwire):
    resolver = StubResolver({"intranet.test": [ip]})
    async with Fetcher(settings("127.0.0.0/8"), resolver=resolver) as f:
        with pytest.raises(FetchError) as ei:
            await f.fetch("http://intranet.test/rss")
    assert f"refused: {ip} is {kind} address; add it to fetch.allow_networks to allow" in str(ei.value)
    assert resolver.asked == ["intranet.test"] and tripwire == []


@pytest.mark.parametrize("url,kind", [("http://10.0.0.1/rss", "a private"),
                                      ("http://169.254.169.254/latest/meta-data/", "a link-local"),
                                      ("http://[fe80::1]/rss", "a link-local"),
                                      ("http://[::ffff:192.168.1.1]/rss", "IPv4-mapped form of a private")])
async def test_literal_refused_address_is_never_connected(url, kind, tripwire):
    async with Fetcher(settings("127.0.0.0/8"), resolver=StubResolver({})) as f:
        with pytest.raises(FetchError) as ei:
            await f.fetch(url)
    assert f"is {kind} address" in str(ei.value)
    assert tripwire == []


async def test_redirect_to_a_name_that_resolves_privately_is_refused(server2, tripwire):
    """DNS rebinding in one hop: the name is fine, its address is not."""
    resolver = StubResolver({"feeds.example": ["127.0.0.2"], "rebind.example": ["10.0.0.7"]})
    server2.set_redirect("/rss", f"http://rebind.example:{server2.port}/rss2")
    async with Fetcher(settings("127.0.0.2/32"), resolver=resolver) as f:
        with pytest.raises(FetchError) as ei:
            await f.fetch(f"http://feeds.example:{server2.port}/rss")
    assert "refused: 10.0.0.7 is a private address" in str(ei.value)
    assert resolver.asked == ["feeds.example", "rebind.example"]
    assert tripwire == ["127.0.0.2"]


async def test_only_allowed_addresses_of_a_name_are_tried(server2, tripwire):
    server2.set_feed("/rss", RSS)
    resolver = StubResolver({"mixed.example": ["10.0.0.1", "127.0.0.2", "169.254.1.1"]})
    async with Fetcher(settings("127.0.0.2/32"), resolver=resolver) as f:
        res = await f.fetch(f"http://mixed.example:{server2.port}/rss")
    assert res.body == RSS and tripwire == ["127.0.0.2"]
