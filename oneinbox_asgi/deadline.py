"""A deadline over one awaited operation, as cheap as the event loop allows.

Start-call awaits under a deadline once or more per request (the request body, each
Redis operation), so its cost counts: ``asyncio.timeout`` takes about 3 µs, anyio's
``fail_after`` about 10, and even one timer of the loop's own per operation is most of
the cost of reading a small body. On asyncio, ``within`` notes the operation in its
loop's ``Deadlines``, whose one timer is armed for the earliest deadline noted (all
deadlines come in nearly in order, so it is rarely moved), and forgets it when it is
done: a dict entry, no timer, per operation. Elsewhere (trio) it is anyio's
``fail_after``. Either way a cancellation from outside stays a cancellation.
"""

from __future__ import annotations

import asyncio
import weakref
from asyncio import _get_running_loop as asyncio_running_loop
from collections.abc import Awaitable
from typing import TypeVar

import anyio

T = TypeVar("T")


class _Waiting:
    """One operation under a deadline: its task, when it must be done, whether it fired."""

    __slots__ = ("fired", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        self.fired = False


class Deadlines:
    """One loop's operations under a deadline, with one timer for all of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: dict[int, _Waiting] = {}  # by id(): several per task may nest
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")

    def add(self, task: asyncio.Task[object], seconds: float) -> _Waiting:
        waiting = _Waiting(task, self._loop.time() + seconds)
        self._waiting[id(waiting)] = waiting
        if waiting.when < self._armed_for:
            self._arm(waiting.when)
        return waiting

    def discard(self, waiting: _Waiting) -> None:
        # The timer stays armed: when it fires it finds nothing due and re-arms or stops.
        self._waiting.pop(id(waiting), None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_for = float("inf")
        now = self._loop.time()
        earliest = float("inf")
        for key, waiting in list(self._waiting.items()):
            if waiting.when <= now:
                del self._waiting[key]
                waiting.fired = True
                waiting.task.cancel()
            elif waiting.when < earliest:
                earliest = waiting.when
        if earliest != float("inf"):
            self._arm(earliest)


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


def _deadlines(loop: asyncio.AbstractEventLoop) -> Deadlines:
    deadlines = _LOOPS.get(loop)
    if deadlines is None:
        deadlines = _LOOPS[loop] = Deadlines(loop)
    return deadlines


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
    deadlines = _deadlines(loop)
    waiting = deadlines.add(task, seconds)
    try:
        result = await operation
    except asyncio.CancelledError:
        # Ours (and only ours) becomes a TimeoutError, as in asyncio.timeout.
        if waiting.fired and task.uncancel() <= cancelling:
            raise TimeoutError from None
        raise
    finally:
        deadlines.discard(waiting)
    if waiting.fired:  # it fired as the operation finished: its cancellation is taken back
        task.uncancel()
    return result
