"""A deadline over one awaited operation, as cheap as the event loop allows.

Start-call awaits under a deadline once or more per request (the request body, each
Redis operation), so its cost counts: ``asyncio.timeout`` takes about 3 µs, anyio's
``fail_after`` about 10, and even one timer of the loop's own per operation is most of
the cost of reading a small body. On asyncio, ``within`` queues the operation in its
loop's ``Deadlines``, one queue per duration (a queue of one duration is in deadline
order by construction), under one timer armed for the earliest deadline; an operation
that finishes is only marked done. Per operation: an append and a flag, no timer, and no
scan of the others ever (a marked one leaves its queue when it reaches the front).
Elsewhere (trio) it is anyio's ``fail_after``. Either way a cancellation from outside
stays a cancellation.

On asyncio, before any of that, the operation's first step runs at once, as an eager
task's does (Python 3.12's ``asyncio.eager_task_factory``): a deadline can only come due
while the operation waits, so one that finishes without waiting (a request body the
server has already read, the usual case) needs no deadline at all, and gets none. (Not
under trio: a cancel scope the operation opens in that step would not nest inside ours.)
"""

from __future__ import annotations

import asyncio
import types
import weakref
from asyncio import _get_running_loop as asyncio_running_loop
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class _Waiting:
    """One operation under a deadline: its task (until done), its deadline, and whether
    the deadline fired."""

    __slots__ = ("done", "fired", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task: asyncio.Task[object] | None = task
        self.when = when
        self.done = False
        self.fired = False


class Deadlines:
    """One loop's operations under a deadline. It holds no reference to its loop (it is
    kept by a weak mapping from the loop, and by ``_last`` for the loop ``within`` ran on
    last), and none to the task of a finished operation."""

    def __init__(self) -> None:
        self._queues: dict[float, deque[_Waiting]] = {}  # by duration, each in time order
        self._armed_for = float("inf")

    def add(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object], seconds: float
    ) -> _Waiting:
        waiting = _Waiting(task, loop.time() + seconds)
        queue = self._queues.get(seconds)
        if queue is None:
            queue = self._queues[seconds] = deque()
        while queue and queue[0].done:  # finished ones at the front leave as they go
            queue.popleft()
        queue.append(waiting)
        if waiting.when < self._armed_for:
            # A timer already armed for later is left to fire: it finds nothing due.
            self._armed_for = waiting.when
            loop.call_at(waiting.when, self._fire)
        return waiting

    @staticmethod
    def discard(waiting: _Waiting) -> None:
        waiting.done = True
        waiting.task = None

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        earliest = float("inf")
        for seconds, queue in list(self._queues.items()):
            while queue and (queue[0].done or queue[0].when <= now):
                waiting = queue.popleft()
                if not waiting.done and waiting.task is not None:
                    waiting.fired = True
                    waiting.task.cancel()
            if queue:
                earliest = min(earliest, queue[0].when)
            else:
                del self._queues[seconds]
        if earliest < self._armed_for or self._armed_for <= now:
            self._armed_for = earliest
            if earliest != float("inf"):
                loop.call_at(earliest, self._fire)


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)
#: The loop ``within`` ran on last, weakly, and its ``Deadlines``: nearly every call comes
#: from the same loop, and a look-up in ``_LOOPS`` makes a new weak reference each time.
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], Deadlines] | None = None


def _switch_to(
    loop: asyncio.AbstractEventLoop,
) -> tuple[weakref.ref[asyncio.AbstractEventLoop], Deadlines]:
    global _last
    deadlines = _LOOPS.get(loop)
    if deadlines is None:
        deadlines = _LOOPS[loop] = Deadlines()
    _last = (weakref.ref(loop), deadlines)
    return _last


async def within(seconds: float, operation: Awaitable[T]) -> T:
    """Await ``operation`` (a coroutine or a future); ``TimeoutError`` if it has not
    finished after ``seconds``."""
    loop = asyncio_running_loop()
    if loop is None:  # trio: its cancel scopes must nest, so the whole operation is inside
        with anyio.fail_after(seconds):
            return await operation
    steps: Any = operation.__await__()
    try:
        waiting_on = steps.send(None)
    except StopIteration as finished:
        result: T = finished.value  # it never waited: no deadline could have come due
        return result
    rest: Awaitable[T] = _rest(steps, waiting_on)
    task = asyncio.current_task(loop)
    if task is None:  # a coroutine driven by hand, outside any task: nothing to cancel
        return await rest
    last = _last
    if last is None or last[0]() is not loop:
        last = _switch_to(loop)
    cancelling = task.cancelling()
    waiting = last[1].add(loop, task, seconds)
    try:
        result = await rest
    except asyncio.CancelledError:
        # Ours (and only ours) becomes a TimeoutError, as in asyncio.timeout.
        if waiting.fired and task.uncancel() <= cancelling:
            raise TimeoutError from None
        raise
    finally:
        Deadlines.discard(waiting)
    if waiting.fired:  # it fired as the operation finished: its cancellation is taken back
        task.uncancel()
    return result


@types.coroutine
def _rest(steps: Any, waiting_on: Any) -> Any:  # an awaitable of the operation's result
    """The rest of an operation whose first step has run and is ``waiting_on`` something:
    what ``yield from`` does, from there. Whatever the event loop sends or throws in goes
    to the operation, and what the operation waits on next goes to the loop."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:  # this coroutine is closed: so is the operation
            steps.close()
            raise
        except BaseException as thrown:  # a cancellation
            try:
                waiting_on = steps.throw(thrown)
            except StopIteration as finished:
                return finished.value
        else:
            try:
                waiting_on = steps.send(sent)
            except StopIteration as finished:
                return finished.value
