"""The one small interface every limit store implements, and how the ``store`` option picks one.

Two operations, each atomic in the store:

* ``hit``: a sliding-window rate limit. Records one attempt unless ``limit``
  attempts already fall in the last ``period`` seconds; then answers how many
  seconds until the oldest of them leaves the window.
* ``acquire`` / ``release``: a per-key set of leased slots. ``acquire`` adds a slot
  unless ``cap`` unexpired slots exist; a slot frees itself ``lease`` seconds
  after it was taken, or when released.

A store that cannot answer raises ``StoreUnavailable``; the caller fails closed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..errors import ConfigurationError

Clock = Callable[[], float]

REDIS_URL_ENV = "ONEINBOX_REDIS_URL"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class StoreUnavailable(Exception):
    """The limit store could not be asked (down, too slow); the message names why."""


@runtime_checkable
class LimitStore(Protocol):
    """Where rate-limit windows and concurrent-call slots live."""

    #: Seconds since the epoch (wall clock, shared by every replica); injectable for tests.
    clock: Clock

    async def hit(self, key: str, limit: int, period: float) -> float:
        """Record one attempt; 0.0 if allowed, else seconds until one would be."""
        ...

    async def acquire(self, key: str, slot: str, cap: int, lease: float) -> bool:
        """Take ``slot`` for ``lease`` seconds unless ``cap`` slots are taken already."""
        ...

    async def release(self, key: str, slot: str) -> bool:
        """Give ``slot`` back; False if it was not held (already released or expired)."""
        ...

    async def aclose(self) -> None:
        """Let go of connections; the store may not be used afterwards."""
        ...


def open_store(option: LimitStore | str | None) -> tuple[LimitStore, bool]:
    """The store the ``store`` option names, and whether the middleware owns (closes) it.

    ``None``: env ``ONEINBOX_REDIS_URL`` if set, else in-process. ``"memory"``:
    in-process. ``"redis://…"``, ``"rediss://…"``, ``"unix://…"``: Redis. A
    ``LimitStore`` instance is used as it is, and closed by whoever made it.
    """
    if option is None:
        option = os.environ.get(REDIS_URL_ENV) or "memory"
    if isinstance(option, str):
        if option == "memory":
            from .memory import MemoryStore

            return MemoryStore(), True
        if option.startswith(REDIS_SCHEMES):
            from .redis import RedisStore

            return RedisStore(option), True
        raise ConfigurationError(
            "store must be 'memory', a redis://, rediss:// or unix:// URL, or a LimitStore "
            f"(got a str starting {option[:8]!r})"
        )
    if isinstance(option, LimitStore):
        return option, False
    raise ConfigurationError(f"store must be a URL string or a LimitStore, not {option!r}")
