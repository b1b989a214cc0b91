"""The caller's address: the socket peer, or ``X-Forwarded-For`` when a trusted proxy sent it.

``trusted_proxies`` lists the proxies (addresses or CIDR networks) whose
``X-Forwarded-For`` is believed. The header is read from the right: each hop a
trusted proxy appended is skipped, and the first address not in the list is the
client. With no trusted proxies (the default) the header is ignored entirely, so a
browser cannot choose its own rate-limit key.

An IPv6 client is limited by its network, not its address: one subscriber or one
server usually holds a whole /64 and can rotate through it at will. ``ipv6_subnet``
(default 64; 128 means per address) is that network's prefix length. IPv4 clients,
and IPv4-mapped IPv6 ones (``::ffff:a.b.c.d``), are limited per address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ADDRESS_CHARS = 64
#: IPv6 callers are limited per /64 unless ``ipv6_subnet`` says otherwise.
DEFAULT_IPV6_SUBNET = 64


@functools.lru_cache(maxsize=4096)  # the same few addresses (and proxies) again and again
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientIP(str):
    """A client address, as hooks see it (``CallRequest.client_ip``), that also knows the
    network its per-caller limits count under (``network``)."""

    network: str

    def __new__(cls, address: str, network: str | None = None) -> ClientIP:
        self = super().__new__(cls, address)
        self.network = address if network is None else network  # copy and pickle restore it
        return self


def network_of(client_ip: str | None, ipv6_subnet: int = DEFAULT_IPV6_SUBNET) -> str:
    """What per-address limits count: an IPv6 address's ``/ipv6_subnet`` network
    (``2001:db8:1:2::/64``), an IPv4 address itself; ``unknown`` without an address.

    A ``ClientIP`` answers the network it was resolved with (the middleware's
    ``ipv6_subnet``); other text is parsed with ``ipv6_subnet``. Text that is not an
    address is its own key.
    """
    if client_ip is None or client_ip == "":
        return "unknown"
    if isinstance(client_ip, ClientIP):
        return client_ip.network
    return _client_ip(client_ip, ipv6_subnet).network


def _network(address: ipaddress.IPv4Address | ipaddress.IPv6Address, ipv6_subnet: int) -> str:
    if isinstance(address, ipaddress.IPv4Address) or ipv6_subnet >= 128:
        return str(address)
    host_bits = 128 - ipv6_subnet
    base = ipaddress.IPv6Address(int(address) >> host_bits << host_bits)  # drops a %zone
    return f"{base}/{ipv6_subnet}"


@functools.lru_cache(maxsize=4096)  # on every start-call, for the same few addresses
def _client_ip(address: str, ipv6_subnet: int) -> ClientIP:
    parsed = _parse_ip(address)
    if parsed is None:
        text = address[:MAX_ADDRESS_CHARS]
        return ClientIP(text, text or "unknown")
    return ClientIP(str(parsed), _network(parsed, ipv6_subnet))


class ClientAddress:
    """Resolves the client address of a request, believing only ``trusted_proxies``."""

    __slots__ = ("_ipv6_subnet", "_networks")

    def __init__(
        self, trusted_proxies: Iterable[Network] = (), *, ipv6_subnet: int = DEFAULT_IPV6_SUBNET
    ) -> None:
        self._networks = tuple(trusted_proxies)
        self._ipv6_subnet = ipv6_subnet

    def _is_trusted(self, address: str) -> bool:
        parsed = _parse_ip(address)
        return parsed is not None and any(parsed in network for network in self._networks)

    def of(self, scope: Scope) -> ClientIP | None:
        """The client's address (IPv4-mapped IPv6 written as IPv4), with its limits' network."""
        address = self._address(scope)
        if address is None:
            return None
        return _client_ip(address, self._ipv6_subnet)

    def _address(self, scope: Scope) -> str | None:
        client = scope.get("client")
        peer: str | None = str(client[0]) if client else None
        if not self._networks or peer is None or not self._is_trusted(peer):
            return peer
        forwarded: list[str] = []
        for key, value in scope["headers"]:
            if key == b"x-forwarded-for":
                forwarded += value.decode("latin-1").split(",")
        hops = [hop.strip() for hop in forwarded if hop.strip()]
        if not hops:
            return peer
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0]  # every hop is one of our proxies: the first one it saw
