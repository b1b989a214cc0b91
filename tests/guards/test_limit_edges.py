"""Edges of the per-caller limits: the order of the checks, Retry-After's rounding, and a
slot given back when a start-call is cancelled mid-create; on memory and real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import anyio
import httpx
import pytest

from oneinbox_asgi.guards import LimitStore
from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, FakeClock, broker, client_for, error_code

pytestmark = pytest.mark.anyio

StoreFactory = Callable[..., LimitStore]


def creates(oneinbox: EmulatorAPI) -> int:
    return sum(1 for r in oneinbox.received if r.path == "/v1/calls/web")


async def test_a_rate_limited_start_takes_no_slot(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    """The rate is checked before a slot is taken: checked after, a rate-limited start
    would hold a slot for the whole lease (900 s) and lock its caller out."""
    clock = FakeClock()
    app = broker(
        http_client=upstream_client,
        rate_limit="1/minute",
        max_concurrent_calls=1,
        store=make_store(clock=clock),
    )
    async with client_for(app, "u1") as client:
        first = await client.post(START, json={})
        assert first.status_code == 201
        ended = await client.post(END, json={"end_token": first.json()["end_token"]})
        assert ended.status_code == 200
        limited = await client.post(START, json={})
        assert limited.status_code == 429 and error_code(limited) == "rate_limited"
        clock.advance(60)  # the window has passed; the lease (900 s) would not have
        again = await client.post(START, json={})
        assert again.status_code == 201, again.text
    assert creates(oneinbox) == 2


@pytest.mark.parametrize(
    ("later", "retry_after"),
    [
        (58.8, "2"),  # 1.2 s left: rounded up, not down
        (0.99, "60"),  # 59.01 s left
        (59.5, "1"),  # 0.5 s left
        (58.0, "2"),  # exactly 2 s: not 3
        (59.999, "1"),  # 1 ms left
    ],
)
async def test_retry_after_is_the_wait_rounded_up(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    make_store: StoreFactory,
    later: float,
    retry_after: str,
) -> None:
    clock = FakeClock()
    app = broker(
        http_client=upstream_client,
        rate_limit="1/minute",
        max_concurrent_calls=None,
        store=make_store(clock=clock),
    )
    async with client_for(app, "u1") as client:
        assert (await client.post(START, json={})).status_code == 201
        clock.advance(later)
        limited = await client.post(START, json={})
    assert limited.status_code == 429 and error_code(limited) == "rate_limited"
    assert limited.headers["retry-after"] == retry_after
    assert f"in {retry_after} s" in limited.json()["error"]["message"]


class FixedWait:
    """A 0.1-style ``LimitStore`` whose rate limit always answers the same wait, in seconds
    (a store of budgets rounds its own waits in ms, tested above on memory and Redis)."""

    clock = staticmethod(time.time)

    def __init__(self, wait: float) -> None:
        self.wait = wait

    async def hit(self, key: str, limit: int, period: float) -> float:
        return self.wait

    async def acquire(self, key: str, slot: str, cap: int, lease: float) -> bool:
        return True

    async def release(self, key: str, slot: str) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(
    ("wait", "retry_after"),
    [(1.2, "2"), (59.01, "60"), (0.5, "1"), (2.0, "2"), (0.001, "1"), (3599.2, "3600")],
)
async def test_retry_after_rounds_up_the_stores_wait(
    upstream_client: httpx.AsyncClient, wait: float, retry_after: str
) -> None:
    app = broker(http_client=upstream_client, store=FixedWait(wait))
    async with client_for(app, "u1") as client:
        limited = await client.post(START, json={})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == retry_after


async def wait_for_create(oneinbox: EmulatorAPI) -> None:
    with anyio.fail_after(5):
        while creates(oneinbox) == 0:
            await anyio.sleep(0.01)


@pytest.mark.parametrize("cancel", ["cancel scope", "task.cancel()"])
async def test_a_start_call_cancelled_mid_create_gives_its_slot_back(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory, cancel: str
) -> None:
    """The request is cancelled (the client went away, a server timeout) while OneInbox is
    slow to create the call: the slot must be freed all the same. An anyio cancel scope stays
    cancelled, so a release not shielded from it (the Redis store awaits the network)
    would be cancelled too and leak the slot for the whole lease."""
    oneinbox.misbehave(delay=30, times=1)  # the first create hangs for 30 s
    app = broker(
        http_client=upstream_client, rate_limit=None, max_concurrent_calls=1, store=make_store()
    )
    async with client_for(app, "u1") as client:

        async def start() -> None:
            await client.post(START, json={})

        if cancel == "cancel scope":
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(start)
                await wait_for_create(oneinbox)
                tasks.cancel_scope.cancel()
        else:
            task = asyncio.ensure_future(start())
            await wait_for_create(oneinbox)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        with anyio.fail_after(5):
            after = await client.post(START, json={})
        assert after.status_code == 201, after.text  # cap 1: the cancelled one's slot is free
