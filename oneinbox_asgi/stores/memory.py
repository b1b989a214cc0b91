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

from .base import ENDED_MEMORY_SECONDS, CallEntry, Clock, Ended, duration_ms, now_ms

SWEEP_EVERY_SECONDS = 60.0


class MemoryStore:
    """Sliding-window rate limits and leased slots in dicts, for a single process.

    Several replicas each with their own ``MemoryStore`` each apply the limits on
    their own: use ``RedisStore`` to share one budget.
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, tuple[float, deque[float]]] = {}  # key -> (period, times)
        self._slots: dict[str, dict[str, int]] = {}  # key -> slot -> lease end (ms)
        self._calls: dict[str, CallEntry] = {}  # live calls by id
        self._ended: dict[str, int] = {}  # call id -> when to forget it ended (ms)
        self._ended_entries: dict[str, CallEntry] = {}
        self._claims: dict[str, int] = {}  # lease name -> when it runs out (ms)
        self._next_sweep = clock() + SWEEP_EVERY_SECONDS

    def __repr__(self) -> str:
        return f"MemoryStore(keys={len(self._hits) + len(self._slots)})"

    async def hit(self, key: str, limit: int, period: float) -> float:
        with self._lock:
            now = self.clock()
            self._sweep(now)
            entry = self._hits.get(key)
            if entry is None:
                entry = self._hits[key] = (period, deque())
            times = entry[1]
            while times and times[0] <= now - period:
                times.popleft()
            if len(times) >= limit:
                return max(times[len(times) - limit] + period - now, 0.001)
            times.append(now)
            return 0.0

    async def acquire(self, key: str, slot: str, cap: int, lease: float) -> int:
        with self._lock:
            now = self.clock()
            self._sweep(now)
            current = math.floor(now * 1000)
            slots = self._slots.setdefault(key, {})
            for taken, expires in list(slots.items()):
                if expires <= current:
                    del slots[taken]
            if len(slots) >= cap:
                return 0
            expires = slots[slot] = current + duration_ms(lease)
            return expires

    async def release(self, key: str, slot: str) -> bool:
        with self._lock:
            now = now_ms(self.clock)
            slots = self._slots.get(key)
            if slots is None:
                return False
            expires = slots.pop(slot, None)
            if not slots:
                del self._slots[key]
            return expires is not None and expires > now

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
                slots = self._slots.get(entry.limit_key)
                if slots is not None:
                    slots.pop(entry.slot, None)
                    if not slots:
                        del self._slots[entry.limit_key]
            return Ended(entry, ended_ms, reason)

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

    def _sweep(self, now: float) -> None:
        """Drop keys with nothing left in them (called under the lock)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_SECONDS
        for key, (period, times) in list(self._hits.items()):
            if not times or times[-1] <= now - period:
                del self._hits[key]
        current = math.floor(now * 1000)
        for call_id, forget in list(self._ended.items()):
            if forget <= current:
                del self._ended[call_id]
                self._ended_entries.pop(call_id, None)
        for name, until in list(self._claims.items()):
            if until <= current:
                del self._claims[name]
        for key, slots in list(self._slots.items()):
            if all(expires <= current for expires in slots.values()):
                del self._slots[key]
