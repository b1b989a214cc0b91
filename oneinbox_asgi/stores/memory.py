"""The in-process limit store (the default): right for one process, however many tasks.

Every operation runs under one lock and never awaits inside it, so it is atomic for
asyncio tasks and for threads alike. Idle keys are swept out now and then, so memory
stays proportional to the callers active in the last window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from .base import (
    DAY_MS,
    ENDED_MEMORY_SECONDS,
    Admission,
    CallEntry,
    Clock,
    Ended,
    ScopeRule,
    Usage,
    duration_ms,
    entry_scope_keys,
    now_ms,
    scope_key,
)

SWEEP_EVERY_SECONDS = 60.0


class Day:
    """One scope's UTC day: calls admitted, call milliseconds, and the budgets last
    applied to it (for ``usage``)."""

    __slots__ = ("calls", "calls_per_day", "milliseconds", "minutes_per_day")

    def __init__(self) -> None:
        self.calls = 0
        self.milliseconds = 0
        self.calls_per_day: int | None = None
        self.minutes_per_day: float | None = None


class Leases:
    """One key's held slots and when each lease ends (ms), under the store's lock.

    Leases are nearly always taken in the order they end (one lease length, one clock),
    so the ended ones are dropped from the front of ``order`` as they go: each start-call
    costs O(1), not a scan of every slot its key holds. A lease that ends out of order (a
    clock stepped back, a 0.1 ``acquire`` with another lease) is still found: ``live``
    scans everything before it answers "at the cap".
    """

    __slots__ = ("ends", "order")

    def __init__(self) -> None:
        self.ends: dict[str, int] = {}  # slot -> when its lease ends
        self.order: deque[tuple[int, str]] = deque()  # (end, slot), in the order taken

    def add(self, slot: str, expires: int) -> None:
        self.ends[slot] = expires
        self.order.append((expires, slot))

    def drop(self, slot: str) -> int | None:
        """Forget a slot (its ``order`` entry goes when it reaches the front)."""
        return self.ends.pop(slot, None)

    def live(self, now: int, cap: int | None = None) -> int:
        """How many leases have not ended at ``now``; exact whenever the answer is
        ``cap`` or more (or when no cap is given)."""
        self.drop_ended(now)
        ends = self.ends
        if cap is None or len(ends) >= cap:
            for slot, expires in list(ends.items()):
                if expires <= now:
                    del ends[slot]
        return len(ends)

    def drop_ended(self, now: int) -> None:
        """Forget the leases ended by ``now`` that were taken first (amortized O(1))."""
        ends, order = self.ends, self.order
        while order and order[0][0] <= now:
            expires, slot = order.popleft()
            if ends.get(slot) == expires:
                del ends[slot]
        if len(order) > 2 * len(ends) + 16:  # many dropped early (calls that ended)
            self.order = deque(sorted((e, s) for s, e in ends.items()))


class MemoryStore:
    """Sliding-window rate limits and leased slots in dicts, for a single process.

    Several replicas each with their own ``MemoryStore`` each apply the limits on
    their own: use ``RedisStore`` to share one budget.
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        # key -> (period, attempt times), in ms as in Redis, so both answer the same waits
        self._hits: dict[str, tuple[int, deque[int]]] = {}
        self._slots: dict[str, Leases] = {}
        self._calls: dict[str, CallEntry] = {}  # live calls by id
        self._ended: dict[str, int] = {}  # call id -> when to forget it ended (ms)
        self._ended_entries: dict[str, CallEntry] = {}
        self._claims: dict[str, int] = {}  # lease name -> when it runs out (ms)
        self._days: dict[tuple[str, int], Day] = {}  # by (scope key, day number)
        self._paused: set[str] = set()
        self._next_sweep = clock() + SWEEP_EVERY_SECONDS

    def __repr__(self) -> str:
        return f"MemoryStore(keys={len(self._hits) + len(self._slots)})"

    async def hit(self, key: str, limit: int, period: float) -> float:
        with self._lock:
            seconds = self.clock()
            self._sweep(seconds)
            now = math.floor(seconds * 1000)
            period_ms = duration_ms(period)
            times = self._window(key, period_ms)
            wait_ms = _wait(times, limit, period_ms, now)
            if not wait_ms:
                times.append(now)
            return wait_ms / 1000

    def _window(self, key: str, period_ms: int) -> deque[int]:
        """A key's attempt times (ms) in its rate window, made empty if it has none."""
        entry = self._hits.get(key)
        if entry is None:
            entry = self._hits[key] = (period_ms, deque())
        return entry[1]

    def _leases(self, key: str) -> Leases:
        """A key's leases, made empty if it has none."""
        leases = self._slots.get(key)
        if leases is None:
            leases = self._slots[key] = Leases()
        return leases

    async def acquire(self, key: str, slot: str, cap: int, lease: float) -> int:
        with self._lock:
            now = self.clock()
            self._sweep(now)
            current = math.floor(now * 1000)
            leases = self._leases(key)
            if leases.live(current, cap) >= cap:
                return 0
            expires = current + duration_ms(lease)
            leases.add(slot, expires)
            return expires

    async def release(self, key: str, slot: str) -> bool:
        with self._lock:
            return self._free(key, slot)

    async def record_call(self, entry: CallEntry) -> None:
        with self._lock:
            self._calls[entry.call_id] = entry

    async def call(self, call_id: str) -> tuple[CallEntry, bool] | None:
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is not None:
                return entry, False
            ended = self._ended_entries.get(call_id)
            return (ended, True) if ended is not None else None

    async def live_calls(self, limit_key: str) -> list[str]:
        with self._lock:
            return [c.call_id for c in self._calls.values() if c.limit_key == limit_key]

    async def due_calls(self, now_ms: int, limit: int) -> list[str]:
        with self._lock:
            due = sorted(
                (c.deadline_ms, c.call_id) for c in self._calls.values() if c.deadline_ms <= now_ms
            )
            return [call_id for _, call_id in due[:limit]]

    async def finish(self, call_id: str, ended_ms: int, reason: str) -> Ended | None:
        with self._lock:
            entry = self._calls.pop(call_id, None)
            if entry is None:
                return None
            self._ended[call_id] = ended_ms + duration_ms(ENDED_MEMORY_SECONDS)
            self._ended_entries[call_id] = entry
            if entry.slot is not None:
                for key in entry_scope_keys(entry):
                    self._free(key, entry.slot)
            return Ended(entry, ended_ms, reason)

    def _free(self, key: str, slot: str) -> bool:
        """Drop a slot (under the lock); True if it was held and unexpired."""
        leases = self._slots.get(key)
        if leases is None:
            return False
        expires = leases.drop(slot)
        if not leases.ends:
            del self._slots[key]
        return expires is not None and expires > now_ms(self.clock)

    def _live(self, key: str, now: int, cap: int | None = None) -> int:
        leases = self._slots.get(key)
        return 0 if leases is None else leases.live(now, cap)

    async def admit(
        self,
        rules: tuple[ScopeRule, ...],
        *,
        slot: str,
        lease: float,
        pauses: tuple[str, ...],
        count_rate: bool = True,
    ) -> Admission:
        with self._lock:
            seconds = self.clock()
            if seconds >= self._next_sweep:
                self._sweep(seconds)
            now = math.floor(seconds * 1000)
            day = now // DAY_MS
            if self._paused and not self._paused.isdisjoint(pauses):
                return Admission(0, (0, "paused"), day=day)
            if len(rules) == 1:
                return self._admit_one(rules[0], slot, lease, count_rate, now, day)
            # One pass over the scopes: each one's state, and the first refusal of each
            # kind. A rate refusal outranks a cap, a cap a day's budget (as in Redis).
            scopes: list[tuple[str, deque[int] | None, Leases | None, Day | None]] = []
            by_rate = by_cap = by_day = None
            for index, rule in enumerate(rules):
                key = scope_key(rule.scope, rule.key)
                hits = self._hits.get(key)
                leases = self._slots.get(key)
                today = self._days.get((key, day))
                scopes.append((key, None if hits is None else hits[1], leases, today))
                rate, cap = rule.rate, rule.cap
                if by_rate is None and rate is not None and hits is not None:
                    wait_ms = _wait(hits[1], rate[0], duration_ms(rate[1]), now)
                    if wait_ms:
                        by_rate = (index, "rate", wait_ms)
                if by_cap is None and cap is not None and leases is not None:
                    by_cap = (index, "cap", 0) if leases.live(now, cap) >= cap else None
                budgeted = rule.calls_per_day is not None or rule.minutes_per_day is not None
                if by_day is None and budgeted and today is not None:
                    by_day = _over_budget(rule, today, index, (day + 1) * DAY_MS - now)
            refusal = by_rate or by_cap or by_day
            if count_rate and by_rate is None:
                for rule, (key, times, _, _) in zip(rules, scopes, strict=True):
                    if rule.rate is not None:
                        if times is None:
                            times = self._window(key, duration_ms(rule.rate[1]))
                        times.append(now)
            if refusal is not None:
                return Admission(0, (refusal[0], refusal[1]), refusal[2], day)
            expires = now + duration_ms(lease)
            counts = tuple(
                self._take(key, rule, leases, today, slot, expires, now)
                for rule, (key, _, leases, today) in zip(rules, scopes, strict=True)
            )
            return Admission(expires, None, 0, day, counts)

    def _admit_one(
        self, rule: ScopeRule, slot: str, lease: float, count_rate: bool, now: int, day: int
    ) -> Admission:
        """``admit`` of one scope (a caller's, with no tenant or global budget: the usual
        start-call), under the lock: the same checks in the same order, without the
        bookkeeping that lets several scopes be checked before any is taken."""
        key = rule.key if rule.scope == "caller" else scope_key(rule.scope, rule.key)
        rate, cap = rule.rate, rule.cap
        if rate is not None:
            period = duration_ms(rate[1])
            times = self._window(key, period) if count_rate else self._hits.get(key, (0, None))[1]
            if times is not None:
                wait_ms = _wait(times, rate[0], period, now)
                if wait_ms:
                    return Admission(0, (0, "rate"), wait_ms, day)
                if count_rate:
                    times.append(now)
        leases = self._slots.get(key)
        if cap is not None and leases is not None and leases.live(now, cap) >= cap:
            return Admission(0, (0, "cap"), 0, day)
        today = self._days.get((key, day))
        if today is not None and (
            rule.calls_per_day is not None or rule.minutes_per_day is not None
        ):
            refusal = _over_budget(rule, today, 0, (day + 1) * DAY_MS - now)
            if refusal is not None:
                return Admission(0, (0, refusal[1]), refusal[2], day)
        expires = now + duration_ms(lease)
        calls = self._take(key, rule, leases, today, slot, expires, now)
        return Admission(expires, None, 0, day, (calls,))

    def _take(
        self,
        key: str,
        rule: ScopeRule,
        leases: Leases | None,
        today: Day | None,
        slot: str,
        expires: int,
        now: int,
    ) -> int:
        """Hold ``slot`` at a scope until ``expires`` and count the call on its day, under
        the lock (every scope holds the slot, capped or not: its live count); the scope's
        calls that day. ``leases`` and ``today``: the scope's, if it has them already."""
        if leases is None:
            leases = self._leases(key)
        elif rule.cap is None:  # else checking the cap dropped the ended ones
            leases.drop_ended(now)
        leases.add(slot, expires)
        if today is None:
            today = self._day(key, now // DAY_MS)
        today.calls += 1
        today.calls_per_day = rule.calls_per_day
        today.minutes_per_day = rule.minutes_per_day
        return today.calls

    def _day(self, key: str, day: int) -> Day:
        today = self._days.get((key, day))
        if today is None:
            today = self._days[(key, day)] = Day()
        return today

    async def unadmit(self, rules: tuple[ScopeRule, ...], slot: str, day: int) -> None:
        with self._lock:
            for rule in rules:
                key = scope_key(rule.scope, rule.key)
                self._free(key, slot)
                today = self._days.get((key, day))
                if today is not None and today.calls > 0:
                    today.calls -= 1

    async def add_minutes(
        self, rules: tuple[ScopeRule, ...], milliseconds: int, day: int
    ) -> tuple[int, ...]:
        with self._lock:
            totals = []
            for rule in rules:
                today = self._day(scope_key(rule.scope, rule.key), day)
                today.milliseconds += milliseconds
                totals.append(today.milliseconds)
            return tuple(totals)

    async def usage(self, scope_key: str, day: int) -> Usage:
        with self._lock:
            live = self._live(scope_key, now_ms(self.clock))
            today = self._days.get((scope_key, day)) or Day()
            return Usage(
                live, today.calls, today.milliseconds, today.calls_per_day, today.minutes_per_day
            )

    async def set_paused(self, target: str, paused: bool) -> None:
        with self._lock:
            if paused:
                self._paused.add(target)
            else:
                self._paused.discard(target)

    async def paused(self) -> list[str]:
        with self._lock:
            return sorted(self._paused)

    async def now_ms(self) -> int:
        return now_ms(self.clock)

    async def claim(self, name: str, seconds: float) -> bool:
        with self._lock:
            now = now_ms(self.clock)
            if self._claims.get(name, 0) > now:
                return False
            self._claims[name] = now + duration_ms(seconds)
            return True

    async def unclaim(self, name: str) -> None:
        with self._lock:
            self._claims.pop(name, None)

    async def aclose(self) -> None:
        with self._lock:
            self._hits.clear()
            self._slots.clear()
            self._calls.clear()
            self._ended.clear()
            self._ended_entries.clear()
            self._claims.clear()
            self._days.clear()
            self._paused.clear()

    def _sweep(self, now: float) -> None:
        """Drop keys with nothing left in them (called under the lock)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_SECONDS
        current = math.floor(now * 1000)
        for key, (period, times) in list(self._hits.items()):
            if not times or times[-1] <= current - period:
                del self._hits[key]
        for call_id, forget in list(self._ended.items()):
            if forget <= current:
                del self._ended[call_id]
                self._ended_entries.pop(call_id, None)
        today = current // DAY_MS
        for day_key in [k for k in self._days if k[1] < today - 1]:
            del self._days[day_key]
        for name, until in list(self._claims.items()):
            if until <= current:
                del self._claims[name]
        for key, leases in list(self._slots.items()):
            if not leases.live(current):
                del self._slots[key]


def _wait(times: deque[int], limit: int, period: int, now: int) -> int:
    """Milliseconds until one more attempt fits a window of attempt ``times`` (0: now),
    as the Redis scripts count them."""
    while times and times[0] <= now - period:
        times.popleft()
    if len(times) >= limit:
        return max(times[len(times) - limit] + period - now, 1)
    return 0


def _over_budget(
    rule: ScopeRule, today: Day, index: int, until_tomorrow: int
) -> tuple[int, str, int] | None:
    """The refusal by a scope's daily budget in calls or minutes, if it has run out."""
    if rule.calls_per_day is not None and today.calls >= rule.calls_per_day:
        return (index, "calls", until_tomorrow)
    minutes = rule.minutes_per_day
    if minutes is not None and today.milliseconds >= minutes * 60_000:
        return (index, "minutes", until_tomorrow)
    return None
