"""Keep the voice server's media on the addresses it was told to use (loopback by default).

aioice gathers a host candidate on every interface *except* 127.0.0.1, and has no
option to choose. The emulator must do the opposite: offer only the media host
(127.0.0.1 in tests, which run in a network namespace that has nothing else), and never
send a connectivity check to an address that is not loopback.

The one way in is aioice's module-level ``get_host_addresses``, which
``Connection.gather_candidates`` looks up at call time. ``install()`` wraps it once, and the
wrapper only changes the answer inside a ``gather_only_on(...)`` block: a ContextVar marks
the voice server's own tasks (asyncio copies the context into every task those create), so
any other aiortc user in the same process keeps aioice's normal behaviour.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import aioice.ice

_HostLookup = Callable[[bool, bool], list[str]]

_media_hosts: ContextVar[tuple[str, ...] | None] = ContextVar("media_hosts", default=None)
_original_lookup: _HostLookup | None = None


def _scoped_lookup(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    hosts = _media_hosts.get()
    if hosts is None:
        assert _original_lookup is not None
        return _original_lookup(use_ipv4, use_ipv6)
    return [h for h in hosts if (use_ipv6 if ":" in h else use_ipv4)]


def install() -> None:
    """Wrap aioice's host-address lookup (idempotent; outside a block it changes nothing)."""
    global _original_lookup
    if _original_lookup is None:
        _original_lookup = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = _scoped_lookup


@contextmanager
def gather_only_on(hosts: tuple[str, ...]) -> Iterator[None]:
    """Within this block (and tasks started in it), ICE gathers candidates on ``hosts`` only."""
    install()
    token = _media_hosts.set(hosts)
    try:
        yield
    finally:
        _media_hosts.reset(token)


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a hostname, e.g. an mDNS ".local" name
        return False
