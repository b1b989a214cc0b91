"""The caller's address: the socket peer, or ``X-Forwarded-For`` when a trusted proxy sent it.

``trusted_proxies`` lists the proxies (addresses or CIDR networks) whose
``X-Forwarded-For`` is believed. The header is read from the right: each hop a
trusted proxy appended is skipped, and the first address not in the list is the
client. With no trusted proxies (the default) the header is ignored entirely, so a
browser cannot choose its own rate-limit key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ADDRESS_CHARS = 64


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


class ClientAddress:
    """Resolves the client address of a request, believing only ``trusted_proxies``."""

    __slots__ = ("_networks",)

    def __init__(self, trusted_proxies: Iterable[Network] = ()) -> None:
        self._networks = tuple(trusted_proxies)

    def _is_trusted(self, address: str) -> bool:
        parsed = _parse_ip(address)
        return parsed is not None and any(parsed in network for network in self._networks)

    def of(self, scope: Scope) -> str | None:
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
                return _clean(hop)
        return _clean(hops[0])  # every hop is one of our proxies: the first one it saw


def _clean(hop: str) -> str:
    parsed = _parse_ip(hop)
    return str(parsed) if parsed is not None else hop[:MAX_ADDRESS_CHARS]
