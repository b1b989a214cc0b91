"""Per-caller limits: a sliding-window rate limit and a cap on concurrent calls.

The caller's key is what ``authorize`` returned when that is an id (a str or an
int), else the client address. Both limits live in one ``LimitStore``, so replicas
sharing a Redis share one budget. A store that cannot answer makes start-call fail
closed (503 ``limits_unavailable``): no limit is better not enforced than an open door.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

import anyio

from ..errors import CallError, ConfigurationError
from .store import LimitStore, StoreUnavailable

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


def caller_key(caller: Any, client_ip: str | None) -> str:
    """``id:<what authorize returned>`` for a str or int, else ``ip:<client address>``."""
    if isinstance(caller, str) or (isinstance(caller, int) and not isinstance(caller, bool)):
        return f"id:{caller}"
    return f"ip:{client_ip or 'unknown'}"


def limits_unavailable(exc: StoreUnavailable) -> CallError:
    logger.warning("limits unavailable, failing closed: %s", exc)
    return CallError(
        503, "limits_unavailable", "Calls are paused for a moment. Please try again shortly."
    )


def check_max_concurrent_calls(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"max_concurrent_calls must be a positive int or None, not {value!r}"
        )
    return value


def check_max_call_seconds(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(
            f"max_call_seconds must be a positive number of seconds, not {value!r}"
        )
    if not math.isfinite(value):
        raise ConfigurationError("max_call_seconds must be finite: a slot must free itself")
    return float(value)


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
        """Count one attempt; 429 ``rate_limited`` with ``Retry-After`` when over the limit."""
        if self.rate is None:
            return
        try:
            wait = await self.store.hit(key, self.rate.limit, self.rate.period)
        except StoreUnavailable as exc:
            raise limits_unavailable(exc) from None
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise CallError(
                429,
                "rate_limited",
                f"Too many calls. Please try again in {retry_after} s.",
                [("Retry-After", str(retry_after))],
            )

    async def take_slot(self, key: str) -> str | None:
        """A new slot id (or None when there is no cap); 429 ``too_many_calls`` at the cap."""
        if self.max_concurrent_calls is None:
            return None
        slot = secrets.token_urlsafe(12)
        try:
            taken = await self.store.acquire(
                key, slot, self.max_concurrent_calls, self.max_call_seconds
            )
        except StoreUnavailable as exc:
            raise limits_unavailable(exc) from None
        if not taken:
            raise CallError(
                429,
                "too_many_calls",
                "You already have the most calls allowed at once. End one to start another.",
            )
        return slot

    async def give_back(self, key: str, slot: str) -> bool:
        """Free a slot; True if it was still held. Never raises: the lease frees it anyway."""
        freed = False
        with anyio.CancelScope(shield=True):
            try:
                freed = await self.store.release(key, slot)
            except StoreUnavailable as exc:
                logger.warning("slot not freed (its lease will free it): %s", exc)
        return freed
