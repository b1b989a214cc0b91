"""A deadline over one awaited operation, as cheap as the event loop allows.

Start-call awaits under a deadline several times (the request body, each store
operation), so its cost counts: ``asyncio.timeout`` takes about 3 µs, anyio's
``fail_after`` about 10. On asyncio, ``within`` arms one timer of the loop's own
(uvloop's is in C) and nothing else; elsewhere (trio) it is anyio's ``fail_after``.
Either way the operation's own cancellation from outside stays a cancellation.
"""

from __future__ import annotations

import asyncio
from asyncio import _get_running_loop as asyncio_running_loop
from collections.abc import Awaitable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def within(seconds: float, operation: Awaitable[T]) -> T:
    """Await ``operation``; ``TimeoutError`` if it has not finished after ``seconds``."""
    loop = asyncio_running_loop()
    if loop is None:
        with anyio.fail_after(seconds):
            return await operation
    task = asyncio.current_task(loop)
    if task is None:  # a coroutine driven by hand, outside any task: nothing to cancel
        return await operation
    cancelling = task.cancelling()
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = loop.call_later(seconds, expire)
    try:
        return await operation
    except asyncio.CancelledError:
        # Ours (and only ours) becomes a TimeoutError, as in asyncio.timeout.
        if fired and task.uncancel() <= cancelling:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()
