"""Which network addresses a server may be sent to on a person's behalf (the SSRF policy).

One policy for every fetcher: the inference API's user links, the web's profile URLs, the crawler.
Pure functions, no I/O (resolving a name is the caller's job, at the moment it connects).
"""
from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address in their last 32 bits and reach it through a gateway.
_IPV4_EMBEDDING = (ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
                   ipaddress.IPv6Network("::/96"))  # IPv4-compatible (deprecated, still parsed)


def is_public_address(address: str | IPAddress) -> bool:
    """True for a globally routable unicast address; False for loopback, private, link-local (cloud
    metadata 169.254.169.254), carrier NAT, reserved, unspecified and multicast ones, also when an
    IPv6 address only wraps such an IPv4 address (mapped, NAT64, 6to4, Teredo, IPv4-compatible)."""
    ip = ipaddress.ip_address(address.split("%")[0] if isinstance(address, str) else address)  # drop a zone id
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not is_public_address(embedded):
            return False
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    if any(ip in network for network in _IPV4_EMBEDDING) and int(ip) > 1:  # :: and ::1 are IPv6's own
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host name denotes literally, or None for a name that needs DNS.

    Besides dotted quads and IPv6, IPv4 in the legacy forms that resolvers and browsers accept:
    a decimal or hex integer (http://2130706433/, http://0x7f000001/), octal parts (0177.0.0.1)
    and short forms (127.1); each is 127.0.0.1, and a check that only parsed dotted quads would
    let it through."""
    host = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # parses only; no lookup
    except (OSError, ValueError):
        return None
