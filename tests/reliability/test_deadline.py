"""``deadline.within``: the one deadline helper under the body read and every store operation.

Its own expiry is a TimeoutError; a cancellation from outside stays a cancellation (and
leaves the task's cancel count as asyncio's own ``timeout`` would).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref

import anyio
import pytest

from oneinbox_asgi import deadline
from oneinbox_asgi.deadline import within


async def answer_after(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "answer"


@pytest.mark.anyio
async def test_an_operation_in_time_answers_and_is_never_cancelled_later() -> None:
    assert await within(0.05, answer_after(0)) == "answer"
    await anyio.sleep(0.2)  # past its deadline: the loop's timer finds nothing due


@pytest.mark.anyio
async def test_a_late_operation_raises_timeout_error_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await within(0.1, answer_after(5))
    assert 0.09 <= time.monotonic() - started < 1.0
    assert await within(1.0, answer_after(0)) == "answer"  # the task is usable after


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def main() -> None:
        task = asyncio.create_task(within(5.0, answer_after(5)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(main())


def test_its_timeout_is_undone_from_the_tasks_cancel_count() -> None:
    # As asyncio.timeout: after our TimeoutError the task is not left "cancelling", so a
    # later TaskGroup or timeout in the same task still works.
    async def main() -> int:
        with pytest.raises(TimeoutError):
            await within(0.05, answer_after(5))
        task = asyncio.current_task()
        assert task is not None
        async with asyncio.timeout(1.0):
            await asyncio.sleep(0.01)
        return task.cancelling()

    assert asyncio.run(main()) == 0


def test_an_outside_cancel_racing_the_deadline_is_not_swallowed() -> None:
    async def main() -> None:
        async def victim() -> None:
            await within(0.05, answer_after(5))

        task = asyncio.create_task(victim())
        await asyncio.sleep(0.05)  # about when the deadline fires
        task.cancel()
        with pytest.raises((asyncio.CancelledError, TimeoutError)):
            await task
        # Either order is fine, but an outside cancel must never be lost to the deadline:
        assert task.cancelled() or task.cancelling() == 0

    for _ in range(20):
        asyncio.run(main())


def test_deadlines_out_of_order_each_fire_at_their_own_time() -> None:
    # One timer serves every deadline of a loop: one noted later but due sooner moves it.
    async def main() -> list[tuple[float, str]]:
        started = time.monotonic()
        fired: list[tuple[float, str]] = []

        async def one(seconds: float, takes: float) -> None:
            try:
                await within(seconds, answer_after(takes))
                fired.append((time.monotonic() - started, f"{seconds} answered"))
            except TimeoutError:
                fired.append((time.monotonic() - started, f"{seconds} timed out"))

        await asyncio.gather(one(0.6, 5), one(0.2, 5), one(0.4, 5), one(0.3, 0.05))
        return fired

    fired = asyncio.run(main())
    assert [what for _, what in fired] == [
        "0.3 answered",
        "0.2 timed out",
        "0.4 timed out",
        "0.6 timed out",
    ]
    for (at, what), due in zip(fired[1:], (0.2, 0.4, 0.6), strict=True):
        assert due - 0.01 <= at < due + 0.15, (what, at)


def test_nested_deadlines_in_one_task_are_each_their_own() -> None:
    async def main() -> str:
        async def inner() -> str:
            with pytest.raises(TimeoutError):
                await within(0.05, answer_after(5))
            return "inner timed out"

        first = await within(1.0, inner())
        assert first == "inner timed out"
        return await within(1.0, answer_after(0.1))  # the outer's deadline still holds

    assert asyncio.run(main()) == "answer"


def test_a_finished_loop_is_not_kept_alive() -> None:
    # Regression: the loop's deadlines held the loop (and so themselves) for good.
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await within(1.0, answer_after(0))
        with pytest.raises(TimeoutError):
            await within(0.01, answer_after(1))

    for _ in range(3):
        asyncio.run(main())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]


def test_a_loop_in_another_thread_keeps_its_own_deadlines() -> None:
    # ``within`` remembers the loop it ran on last: a loop in another thread must still get
    # its own queue and its own timer, which fires though the first loop has finished.
    first_running = threading.Event()
    outcome: list[object] = []

    async def first() -> None:
        first_running.set()
        until = time.monotonic() + 0.1
        while time.monotonic() < until:  # its timer armed for 0.2 s on, then the loop ends
            await within(0.2, answer_after(0.001))

    async def second() -> None:
        first_running.wait(5)
        await asyncio.sleep(0.02)
        clock = time.monotonic()
        try:
            outcome.append(await within(0.3, answer_after(3)))
        except TimeoutError:
            outcome.append(time.monotonic() - clock)

    threads = [threading.Thread(target=asyncio.run, args=(main(),)) for main in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    (waited,) = outcome
    assert isinstance(waited, float) and 0.25 < waited < 1.5, outcome


def test_an_operation_that_never_waits_gets_no_deadline() -> None:
    # Its first step runs at once: finished there, no deadline is noted for it at all.
    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        assert await within(0.01, already("answer")) == "answer"
        noted_before_waiting = loop in deadline._LOOPS
        assert await within(1.0, answer_after(0)) == "answer"  # this one waits once
        return noted_before_waiting, loop in deadline._LOOPS

    assert asyncio.run(main()) == (False, True)


async def already(value: str) -> str:
    return value


async def refuses() -> str:
    raise ValueError("refused at once")


def test_an_error_in_the_first_step_is_raised_as_it_is() -> None:
    with pytest.raises(ValueError, match="refused at once"):
        asyncio.run(within(1.0, refuses()))


def test_a_closed_waiting_operation_is_closed_too() -> None:
    closed: list[bool] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            closed.append(True)

    async def main() -> None:
        steps = waits().__await__()
        rest = deadline._rest(steps, steps.send(None))
        rest.send(None)  # the operation's future, handed to the loop
        rest.close()

    asyncio.run(main())
    assert closed == [True]


def test_under_trio_late_operations_time_out_and_the_rest_answer() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> list[object]:
        results: list[object] = [await within(1.0, already("at once"))]
        results.append(await within(1.0, answer_after(0.01)))
        started = time.monotonic()
        try:
            await within(0.1, answer_after(5))
        except TimeoutError:
            results.append(round(time.monotonic() - started, 1))
        return results

    assert trio.run(main) == ["at once", "answer", 0.1]
