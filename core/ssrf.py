"""The SSRF address rules image downloads obey: the block list of private and reserved ranges (IPv6
forms that embed an IPv4 address are checked by that address too), the operator's ``tools.ssrfWhitelist``,
and async DNS. core/download.py applies them per connection and re-exports the public names."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

from core.errors import ConfigError

__all__ = ["IPAddress", "IPNetwork", "Resolver", "is_blocked_ip", "parse_whitelist", "resolve_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_BLOCKED_V4: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",  # 240/4 holds 255.255.255.255
    )
)
# IPv4-mapped addresses are checked as IPv4. Outside 2000::/3 only NAT64 (checked by its embedded IPv4)
# is allowed; ::/8 covers ::, ::1, IPv4-compatible (::/96) and SIIT (::ffff:0:0:0/96), refused outright.
_BLOCKED_V6: Final = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/8", "64:ff9b:1::/48", "100::/64", "2001:2::/48", "2001:10::/28", "2001:db8::/32",
        "3fff::/20", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)
_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")  # inside ::/8, but routes to its embedded IPv4


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address routes to: NAT64, 6to4, Teredo (server and xor-ed client)."""
    if ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


def is_blocked_ip(ip: IPAddress, whitelist: Sequence[IPNetwork] = ()) -> bool:
    """True unless ``ip`` is globally routable, or whitelisted; IPv6 forms embedding IPv4 check that too."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_blocked_ip(ip.ipv4_mapped, whitelist)
        if ip.scope_id:  # a zone index only makes sense for a local address
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
    if any(ip.version == net.version and ip in net for net in whitelist):
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return not ip.is_global or any(ip in net for net in _BLOCKED_V4)
    if ip not in _NAT64 and (any(ip in net for net in _BLOCKED_V6) or ip not in _GLOBAL_UNICAST):
        return True
    return any(is_blocked_ip(v4, whitelist) for v4 in _embedded_ipv4(ip))


def parse_whitelist(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``tools.ssrfWhitelist`` CIDRs as networks; a bad entry is an operator error naming the key."""
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            detail = f"tools.ssrfWhitelist: {entry!r} is not a CIDR such as 10.0.0.0/8"
            raise ConfigError(detail=detail) from None
    return tuple(networks)


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in resolver order, via the loop's non-blocking getaddrinfo."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found
