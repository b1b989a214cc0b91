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
from typing import Protocol, runtime_checkable

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
