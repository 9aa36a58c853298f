"""Which IP addresses Raqib may connect to: public ones, plus networks the operator allows.

The operator chooses feed URLs, but every feed's host chooses where it redirects and what its
name resolves to, so the check runs on the *resolved* address of every connection: a resolver
drops refused addresses (for a clear error), and the connector's socket factory checks the
address again right before the socket is created, which also covers literal IPs (aiohttp does
not resolve those) and DNS rebinding. `fetch.allow_networks` (CIDRs) opts intranet feeds in.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class AddressRefused(OSError):
    """A connection to this address is not allowed by the policy (an OSError, so aiohttp
    reports it like any other connect failure, keeping it as `os_error`)."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) from the config; a typo is a ValueError naming the value."""
    out = []
    for value in values:
        text = str(value).strip()
        try:
            out.append(ipaddress.ip_network(text, strict=True))
        except ValueError as e:
            try:
                hint = f"; did you mean {ipaddress.ip_network(text, strict=False)}?"
            except ValueError:
                hint = ""
            raise ValueError(f"{text!r} is not a network in CIDR form like 10.0.0.0/8 ({e}){hint}") from None
    return tuple(out)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _V4_COMPATIBLE and int(ip) > 1:
        return low32, "IPv4-compatible"
    if any(ip in net for net in _NAT64):
        return low32, "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip.teredo is not None:
        return ip.teredo[1], "Teredo"
    return None


def _kind(ip: IPAddress) -> str | None:
    """What makes an address non-public, or None for an ordinary public address."""
    if ip.is_unspecified:
        return "an unspecified"
    if ip.is_loopback:
        return "a loopback"
    if ip.is_link_local:
        return "a link-local"
    if ip.is_multicast:
        return "a multicast"
    if ip.version == 4 and ip in _CGNAT:
        return "a shared (CGNAT)"
    if ip.is_private:
        return "a private"
    if ip.is_reserved:
        return "a reserved"
    if not ip.is_global:
        return "a non-public"
    return None


class AddressPolicy:
    """Refuses non-public addresses unless they fall in one of `allow_networks`."""

    def __init__(self, allow_networks: Iterable[str | IPNetwork] = ()):
        self.allow = tuple(n if isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network)
                           else parse_networks([n])[0] for n in allow_networks)

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow)

    def problem(self, address: str) -> str | None:
        """Why `address` is refused (one line), or None if a connection to it is allowed."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"refused: {address!r} is not an IP address"
        form = ""
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip, form = ip.ipv4_mapped, "IPv4-mapped form of "  # the kernel connects to the IPv4 address
        if self._allowed(ip):
            return None
        inner = _embedded_ipv4(ip) if ip.version == 6 else None
        if inner is not None and (inner_kind := _kind(inner[0])) is not None:
            kind: str | None = f"{inner[1]} form of {inner_kind}"
        elif inner is not None and inner[1] == "NAT64":
            kind = None  # DNS64 on an IPv6-only network: the public IPv4 address it stands for
        else:
            kind = _kind(ip)
        if kind is None:
            return None
        return (f"refused: {address} is {form}{kind} address; "
                f"add it to fetch.allow_networks to allow")

    def check(self, address: str) -> None:
        """Raise AddressRefused unless a connection to `address` is allowed."""
        problem = self.problem(address)
        if problem is not None:
            raise AddressRefused(problem)

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """For `TCPConnector(socket_factory=...)`: the last check before any connect."""
        family, type_, proto, _, sockaddr = addr_info
        self.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)


class PolicyResolver(AbstractResolver):
    """Resolves with `inner` and keeps only allowed addresses, so a refused host fails with the
    policy's message rather than a connect error; the socket factory still checks each connect."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None):
        self.policy = policy
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        if not results:  # aiohttp expects at least one address or an OSError
            raise OSError(f"{host} resolved to no usable address")
        allowed = [r for r in results if self.policy.problem(r["host"]) is None]
        if not allowed:
            raise AddressRefused(self.policy.problem(results[0]["host"]))
        return allowed

    async def close(self) -> None:
        await self.inner.close()
