"""Per-caller limits: a sliding-window rate limit and a cap on concurrent calls.

They are counted per *limit key*: ``id:<caller>`` when ``authorize`` returned an id
(a str or an int), else ``ip:<client address>``. Both limits live in one
``LimitStore``, so replicas sharing a Redis share one budget. A store that cannot
answer raises ``StoreUnavailable`` through here, and start-call fails closed (503
``limits_unavailable``): a limit not enforced is an open door.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

import anyio

from ..client_address import network_of
from ..errors import CallError, ConfigurationError
from ..stores.base import LimitStore, StoreUnavailable, duration_ms, now_ms

logger = logging.getLogger("oneinbox_asgi")

DEFAULT_RATE_LIMIT = "5/minute"
DEFAULT_MAX_CONCURRENT_CALLS = 1
DEFAULT_MAX_CALL_SECONDS = 900.0

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-zA-Z]+)\s*$")


def _unit_seconds(word: str) -> float | None:
    word = word.lower()
    if word not in _UNITS and len(word) > 2 and word.endswith("s"):
        word = word[:-1]  # plurals: minutes, hours, secs; never "ms"
    return _UNITS.get(word)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``limit`` attempts in any ``period`` seconds, e.g. ``RateLimit.parse("5/minute")``."""

    limit: int
    period: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"5/minute"``, ``"100/hour"``, ``"10/30 seconds"``, ``"2/s"``: count / [n] unit."""
        match = _RATE.match(text) if isinstance(text, str) else None
        unit = _unit_seconds(match.group(3)) if match else None
        if match is None or unit is None:
            raise ConfigurationError(
                f"rate_limit must look like '5/minute' (units: second, minute, hour, day) "
                f"or be None, not {text!r}"
            )
        limit = int(match.group(1))
        period = float(match.group(2) or 1) * unit
        if limit < 1 or period <= 0:
            raise ConfigurationError(f"rate_limit must allow at least 1 call, not {text!r}")
        return cls(limit, period)

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


def limit_key(caller: Any, client_ip: str | None) -> str:
    """``id:<what authorize returned>`` for a str or int, else ``ip:<client network>``: the
    address for IPv4, the ``/ipv6_subnet`` network for IPv6 (``client_address.network_of``)."""
    if isinstance(caller, str) or (isinstance(caller, int) and not isinstance(caller, bool)):
        return f"id:{caller}"
    return f"ip:{network_of(client_ip)}"


@dataclass(frozen=True, slots=True)
class Slot:
    """A concurrent-call slot taken for one call (``id`` None when there is no cap)."""

    id: str | None
    #: When the lease ends: milliseconds of the store's clock.
    expires_ms: int


class Limits:
    """The rate limit and the concurrent-call cap, applied through one store."""

    def __init__(
        self,
        store: LimitStore,
        *,
        rate: RateLimit | None,
        max_concurrent_calls: int | None,
        max_call_seconds: float,
    ) -> None:
        self.store = store
        self.rate = rate
        self.max_concurrent_calls = max_concurrent_calls
        self.max_call_seconds = max_call_seconds

    async def check_rate(self, key: str) -> None:
        """Count one attempt; ``rate_limited`` with the seconds to wait when over the limit."""
        if self.rate is None:
            return
        wait = await self.store.hit(key, self.rate.limit, self.rate.period)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise CallError(
                "rate_limited",
                f"Too many calls. Please try again in {retry_after} s.",
                retry_after=retry_after,
            )

    async def take_slot(self, key: str) -> Slot:
        """A slot for one call; ``too_many_calls`` at the cap. Without a cap, a slot with
        no id whose lease (the end handle's lifetime) is ``max_call_seconds``."""
        store = self.store
        if self.max_concurrent_calls is None:
            return Slot(None, now_ms(store.clock) + duration_ms(self.max_call_seconds))
        slot = secrets.token_urlsafe(12)
        taken = await store.acquire(key, slot, self.max_concurrent_calls, self.max_call_seconds)
        if type(taken) is bool:  # a store written for 0.1: the lease ends about now + lease
            taken = now_ms(store.clock) + duration_ms(self.max_call_seconds) if taken else 0
        if not taken:
            raise CallError(
                "too_many_calls",
                "You're already in a call, maybe in another tab. End it to start another."
                if self.max_concurrent_calls == 1
                else "You already have the most calls allowed at once. End one to start another.",
            )
        return Slot(slot, int(taken))

    async def give_back(self, key: str, slot: Slot) -> bool:
        """Free a slot; True if it was still held. Never raises, and finishes even when the
        request is cancelled: a slot left behind would lock its caller out for the lease."""
        if slot.id is None:
            return True
        with anyio.CancelScope(shield=True):
            try:
                return await self.store.release(key, slot.id)
            except StoreUnavailable as exc:
                logger.warning("slot not freed (its lease will free it): %s", exc)
        return False
