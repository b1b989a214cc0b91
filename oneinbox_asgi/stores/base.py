"""The one small interface every limit store implements.

Two kinds of state, each operation atomic in the store:

* ``hit``: a sliding-window rate limit. Records one attempt unless ``limit``
  attempts already fall in the last ``period`` seconds; then answers how many
  seconds until the oldest of them leaves the window.
* ``acquire`` / ``release``: a per-key set of leased slots. ``acquire`` adds a slot
  unless ``cap`` unexpired slots exist; a slot frees itself ``lease`` seconds
  after it was taken, or when released.

Times are the store's ``clock`` (seconds since the epoch); a lease's end is given in
whole milliseconds of it, the unit end-call handles carry, so that a handle lives
exactly as long as its slot. A store that cannot answer raises ``StoreUnavailable``;
the caller fails closed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Clock = Callable[[], float]


class StoreUnavailable(Exception):
    """The limit store could not be asked (down, too slow); the message names why."""


def now_ms(clock: Clock) -> int:
    """The clock in whole milliseconds (rounded down)."""
    return math.floor(clock() * 1000)


def duration_ms(seconds: float) -> int:
    """A duration in whole milliseconds (rounded up, at least 1)."""
    return max(math.ceil(seconds * 1000), 1)


@runtime_checkable
class LimitStore(Protocol):
    """Where rate-limit windows and concurrent-call slots live."""

    #: Seconds since the epoch (wall clock, shared by every replica); injectable for tests.
    clock: Clock

    async def hit(self, key: str, limit: int, period: float) -> float:
        """Record one attempt; 0.0 if allowed, else seconds until one would be."""
        ...

    async def acquire(self, key: str, slot: str, cap: int, lease: float) -> int | bool:
        """Take ``slot`` for ``lease`` seconds unless ``cap`` slots are taken already.

        Answers when the lease ends, in milliseconds of ``clock`` (0 when at the cap).
        A store may answer True / False instead (stores written for 0.1); the lease's
        end is then taken as ``clock() + lease``.
        """
        ...

    async def release(self, key: str, slot: str) -> bool:
        """Give ``slot`` back; False if it was not held (already released or expired)."""
        ...

    async def aclose(self) -> None:
        """Let go of connections; the store may not be used afterwards."""
        ...


@dataclass(slots=True)  # not frozen: made on every start-call, where frozen costs 3x
class CallEntry:
    """What the broker remembers of a call it started, until some path sees it end."""

    call_id: str
    #: The limits' key of the caller, and the slot the call holds (None: no cap).
    limit_key: str
    slot: str | None
    #: What ``authorize`` returned, as JSON (``str()`` of it when JSON cannot carry it).
    caller: Any
    agent_id: str
    #: The agent's name as the browser asked for it (None: the default agent).
    agent: str | None
    #: Milliseconds of the store's clock: when start-call took the slot, and when the call
    #: must be over (``max_call_seconds`` later: the slot's lease ends then too).
    started_ms: int
    deadline_ms: int
    #: The tenant the call counts against (the ``tenant`` hook), if any.
    tenant: str | None = None


def scope_key(scope: str, key: str) -> str:
    """Where a scope's slots and day live: the caller's limit key as in 0.1 (``id:…``,
    ``ip:…``), ``tenant:<name>``, ``global``."""
    if scope == "caller":
        return key
    if scope == "tenant":
        return f"tenant:{key}"
    return "global"


def entry_scope_keys(entry: CallEntry) -> tuple[str, ...]:
    """Every scope a call holds a slot in (a scope without a cap holds none: no harm)."""
    keys = [entry.limit_key, "global"]
    if entry.tenant is not None:
        keys.insert(1, scope_key("tenant", entry.tenant))
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class Ended:
    """The first (and only) report that a call ended: whoever gets it tells the host."""

    entry: CallEntry
    ended_ms: int
    reason: str


#: How long an ended call is remembered, so that late or repeated reports of its end
#: (a webhook retried for hours, a second end-call) change nothing.
ENDED_MEMORY_SECONDS = 24 * 3600.0


@runtime_checkable
class CallLedger(Protocol):
    """The calls a broker started and has not yet seen end, shared like the limits.

    ``finish`` is the one door to "this call ended": atomic in the store, it answers the
    entry once (and frees the call's slot with it), then None for every later report,
    from any path and any replica.
    """

    async def record_call(self, entry: CallEntry) -> None:
        """Remember a started call (its slot already taken)."""
        ...

    async def call(self, call_id: str) -> tuple[CallEntry, bool] | None:
        """The call's entry and whether it has ended; None for a call we never started
        (or ended over a day ago)."""
        ...

    async def live_calls(self, limit_key: str) -> list[str]:
        """The ids of the caller's calls not yet seen to end."""
        ...

    async def due_calls(self, now_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` ids of live calls whose deadline has passed, oldest first."""
        ...

    async def finish(self, call_id: str, ended_ms: int, reason: str) -> Ended | None:
        """Mark the call ended and free its slot; the entry the first time only."""
        ...

    async def claim(self, name: str, seconds: float) -> bool:
        """Take a short lease named ``name`` unless someone holds it: one replica at a
        time for a job, or one in-flight request per call."""
        ...

    async def unclaim(self, name: str) -> None:
        """Give a lease back before it runs out."""
        ...


DAY_MS = 86_400_000


@dataclass(slots=True)  # not frozen: made on every start-call, where frozen costs 3x
class ScopeRule:
    """The limits of one scope for one start-call (``None``: no such limit there).

    ``scope`` is ``caller``, ``tenant`` or ``global``; ``key`` names the budget within
    it (the caller's limit key, the tenant's name, ``all``).
    """

    scope: str
    key: str
    rate: tuple[int, float] | None = None
    cap: int | None = None
    calls_per_day: int | None = None
    minutes_per_day: float | None = None


@dataclass(slots=True)  # not frozen: made on every start-call, where frozen costs 3x
class Admission:
    """What ``admit`` decided. Admitted: ``expires_ms`` > 0, when the slot's lease ends.

    Refused: ``refused`` names the scope (an index into the rules) and what refused
    (``paused``, ``rate``, ``cap``, ``calls``, ``minutes``); ``retry_ms`` is how long
    until it may pass (0: unknown). ``calls_today`` is each scope's count of admitted
    calls today after this one (for budget alerts), ``day`` the UTC day number.
    """

    expires_ms: int
    refused: tuple[int, str] | None = None
    retry_ms: int = 0
    day: int = 0
    calls_today: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """One scope's usage: calls live now, calls and call milliseconds on one day, and the
    daily budgets last applied to it (None: none, or none seen that day)."""

    live: int
    calls: int
    milliseconds: int
    calls_per_day: int | None = None
    minutes_per_day: float | None = None


def pause_target(scope: str, name: str | None = None) -> str:
    """The kill switch's name for a scope: ``global``, ``tenant:<name>``, ``agent:<id>``."""
    if scope == "global":
        return "global"
    if scope not in ("tenant", "agent") or not name:
        raise ValueError("pause global, or a tenant or an agent by name")
    return f"{scope}:{name}"


@runtime_checkable
class BudgetStore(Protocol):
    """A store that applies every scope's limits in one atomic step per start-call, and
    keeps the kill switch and the day's usage, shared like the limits."""

    async def admit(
        self,
        rules: tuple[ScopeRule, ...],
        *,
        slot: str,
        lease: float,
        pauses: tuple[str, ...],
        count_rate: bool = True,
    ) -> Admission:
        """Check every scope (the kill switch, then rate, cap, calls and minutes per day)
        and, only if all pass, count the attempt, take ``slot`` at every capped scope
        and count the call today; atomically. A refused admission takes nothing (the
        rate attempts are counted unless ``count_rate`` is False)."""
        ...

    async def unadmit(self, rules: tuple[ScopeRule, ...], slot: str, day: int) -> None:
        """Undo an admission whose call was never made: its slots and its count today."""
        ...

    async def add_minutes(
        self, rules: tuple[ScopeRule, ...], milliseconds: int, day: int
    ) -> tuple[int, ...]:
        """Count an ended call's duration at each scope; each scope's total today (ms)."""
        ...

    async def usage(self, scope_key: str, day: int) -> Usage:
        """A scope's live calls (slots held), and its calls and call time on ``day``."""
        ...

    async def set_paused(self, target: str, paused: bool) -> None:
        """Switch new calls off (or on again) for a ``pause_target``."""
        ...

    async def paused(self) -> list[str]:
        """The targets switched off now."""
        ...

    async def now_ms(self) -> int:
        """The store's own clock, in ms (Redis: the server's TIME)."""
        ...
