"""Auto-pipelining: the Redis scripts of every request in flight, sent together.

Under load many start-calls want a script run at the same moment (an admission, a call
to record). Sent one by one, each pays redis-py's whole path: a connection taken from
the pool and given back, its command written, its answer read, on both sides of the
socket. ``ScriptBatch`` collects the scripts asked for while the event loop runs the
tasks that are ready, and sends them as one non-transactional pipeline (one write, one
read, one connection) as soon as those tasks have had their turn; each caller gets its
own answer or its own error. A lone script goes as itself. Nothing waits for a batch to
fill: a batch is whatever arrived in one turn of the loop. On a Redis Cluster each script
goes as itself (redis-py's cluster pipelines refuse scripts).

Each script stays atomic on the server and each caller's scripts run in the order it
asked for them (a caller waits for each answer before it asks again); scripts of
different callers were never ordered. A script the server has forgotten (NOSCRIPT,
after a restart or ``SCRIPT FLUSH``) is loaded and run again, as redis-py does for one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..deadline import within

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.commands.core import AsyncScript

#: Runs a client's pipeline ``execute`` with the store's guards (``redis_connect.guarded``).
Guard = Callable[
    [Any, Callable[..., Awaitable[Any]], tuple[Any, ...], dict[str, Any]], Awaitable[Any]
]


class _Pending:
    __slots__ = ("args", "future", "keys", "script")

    def __init__(
        self,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[str | int],
        future: asyncio.Future[Any],
    ) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.future = future


class ScriptBatch:
    """Runs scripts on ``client``, those asked for in one turn of the loop as one pipeline."""

    def __init__(self, client: Redis | RedisCluster, guard: Guard, *, timeout: float) -> None:
        # redis-py's cluster pipelines refuse scripts (EVALSHA is "blocked" there): on a
        # cluster each script goes as itself.
        self._pipelined = not hasattr(client, "nodes_manager")
        self._client = client
        self._guard = guard
        #: A batch is given up after this long, as each of its callers is (the store's
        #: deadline): no script is sent, or sent again by redis-py's retry, for a caller
        #: that has stopped waiting.
        self._timeout = timeout
        self._pending: list[_Pending] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Task[None]] = set()  # held, so none is collected mid-way

    def run(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]
    ) -> Awaitable[Any]:
        """The script's answer, or its error, once its batch has been sent."""
        if not self._pipelined:
            return script(keys=keys, args=args)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests): what the old one left is moot
            self._loop = loop
            self._pending = []
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Pending(script, keys, args, future))
        if len(self._pending) == 1:
            # The task's first step runs after every callback already due in this turn:
            # the requests woken with this one add their scripts before it sends.
            task = loop.create_task(self._send())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return future

    async def _send(self) -> None:
        batch, self._pending = self._pending, []
        try:
            await within(
                self._timeout, self._one(batch[0]) if len(batch) == 1 else self._many(batch)
            )
        except BaseException as exc:
            for pending in batch:
                _settle(pending.future, exc)
            if not isinstance(exc, Exception):
                raise

    async def _one(self, pending: _Pending) -> None:
        if pending.future.done():  # its caller gave up before it was sent
            return
        # redis-py's own path for one script (it reloads a forgotten one itself).
        _settle(pending.future, await pending.script(keys=pending.keys, args=pending.args))

    async def _many(self, batch: list[_Pending]) -> None:
        from redis.exceptions import NoScriptError

        sent, answers = await self._guard(self._client, self._pipeline, (batch,), {})
        forgotten = []
        for pending, answer in zip(sent, answers, strict=True):
            if isinstance(answer, NoScriptError):
                forgotten.append(pending)
            else:  # answered now, whatever happens to the others
                _settle(pending.future, answer)
        if forgotten:
            for script in {id(p.script): p.script for p in forgotten}.values():
                script.sha = await self._client.script_load(script.script)
            sent, answers = await self._guard(self._client, self._pipeline, (forgotten,), {})
            for pending, answer in zip(sent, answers, strict=True):
                _settle(pending.future, answer)

    async def _pipeline(self, batch: list[_Pending]) -> tuple[list[_Pending], list[Any]]:
        """Send the scripts of the callers still waiting (asked under the store's guard, so
        after any wait for a connection): those callers, and their answers in order."""
        waiting = [pending for pending in batch if not pending.future.done()]
        if not waiting:
            return [], []
        pipe = self._client.pipeline(transaction=False)
        for pending in waiting:
            pipe.evalsha(pending.script.sha, len(pending.keys), *pending.keys, *pending.args)
        answers: list[Any] = await pipe.execute(raise_on_error=False)
        return waiting, answers

    async def aclose(self) -> None:
        """Wait for the batches being sent (each within the store's deadline)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


def _settle(future: asyncio.Future[Any], answer: Any) -> None:
    """Give a caller its answer (an exception is raised to it), unless it gave up waiting."""
    if future.done():
        return
    if isinstance(answer, asyncio.CancelledError):
        future.cancel()
    elif isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)
