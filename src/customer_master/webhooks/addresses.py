"""Where a webhook may be sent (SSRF): only to globally routable addresses, checked as they are connected to.

A webhook URL is user input that the server will call from inside the network. The host is resolved on
every attempt (`loop.getaddrinfo`, which reads every spelling the C library accepts: `0x7f.0.0.1`,
`2130706433`, `127.1`, …), every address it gives must be globally routable, and the attempt connects to
the first of exactly those addresses: no second lookup that a DNS rebinding could answer differently.
An IPv6 address that carries an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by the IPv4 address too, and multicast is refused
(Python's `is_global` counts it global).

With `CM_WEBHOOK_ALLOW_LOOPBACK=1` (local receivers, tests) loopback addresses (127.0.0.0/8, `::1`) are
allowed too, with `http` as well as `https` — and nothing else that is not global.
"""

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESOLVE_TIMEOUT_S = 5.0
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


HTTPS_ONLY = "must be an https URL (http only to a loopback address, with CM_WEBHOOK_ALLOW_LOOPBACK=1)"


class UnsafeUrl(Exception):
    """A URL the server will not send to; the message says why."""


class Unresolved(UnsafeUrl):
    """The host does not resolve (now)."""


@dataclass(frozen=True)
class Target:
    """A URL taken apart: what to connect to, and what to tell the receiver it is."""

    scheme: str
    host: str  # as the URL names it (IDNA-encoded): the `Host` header and the TLS server name
    port: int
    path: str  # path and query, as given
    host_header: str

    def request_url(self, address: IpAddress) -> httpx.URL:
        """The URL with the checked address in place of the host name."""
        return httpx.URL(scheme=self.scheme, host=str(address), port=self.port, raw_path=self.path.encode("ascii"))


@functools.lru_cache(maxsize=1024)
def parse_url(url: str) -> Target:
    """`http(s)://host[:port]/path?query`; else `UnsafeUrl` (the scheme rule depends on the addresses).

    Remembered per URL (taking one apart costs more than the rest of an attempt's own work; what it leads to
    is still resolved and checked every time)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeUrl("must be an https URL")
    if not parsed.raw_host:
        raise UnsafeUrl("must name a host")
    if parsed.userinfo:
        raise UnsafeUrl("must not carry a user name or password")
    host = unquote(parsed.raw_host.decode("ascii"))
    default_port = 443 if parsed.scheme == "https" else 80
    port = parsed.port or default_port
    shown_host = f"[{host}]" if ":" in host else host
    host_header = shown_host if port == default_port else f"{shown_host}:{port}"
    return Target(parsed.scheme, host, port, parsed.raw_path.decode("ascii"), host_header)


def refusal(address: IpAddress, allow_loopback: bool) -> str | None:
    """Why the server will not connect to `address`, or None when it may."""
    for embedded in _embedded_ipv4(address):  # must be global itself: a mapped loopback is no loopback
        reason = refusal(embedded, allow_loopback=False)
        if reason:
            return f"{address} carries {reason}"
    if allow_loopback and address.is_loopback:
        return None
    if address.is_multicast or not address.is_global:
        return f"{address} is not a globally routable address"
    return None


def _embedded_ipv4(address: IpAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    embedded = [address.ipv4_mapped, address.sixtofour]
    if address in NAT64 or (address in IPV4_COMPATIBLE and int(address) > 1):
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ipv4 for ipv4 in embedded if ipv4 is not None]


def _literal(host: str) -> list[IpAddress]:
    """The address a host in an address's standard spelling (`203.0.113.7`, `2001:db8::1`) is, without a lookup:
    the C library would answer the same, but in a thread of its own, which costs more than the attempt's own
    work on a busy machine. Every other spelling, and every name, is looked up."""
    if "%" in host:
        return []
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        return []


async def resolve(target: Target, allow_loopback: bool) -> list[IpAddress]:
    """Every address of the target's host, each one allowed; else `UnsafeUrl` (`Unresolved`: no address)."""
    if target.scheme != "https" and not allow_loopback:
        raise UnsafeUrl(HTTPS_ONLY)
    addresses = _literal(target.host)
    if not addresses:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
            )
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise Unresolved(f"host {target.host} does not resolve: {exc}") from None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise Unresolved(f"host {target.host} does not resolve")
    for address in addresses:
        reason = refusal(address, allow_loopback)
        if reason:
            raise UnsafeUrl(f"host {target.host}: {reason}")
    if target.scheme != "https" and not all(address.is_loopback for address in addresses):
        raise UnsafeUrl(HTTPS_ONLY)
    return addresses
