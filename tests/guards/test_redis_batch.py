"""Auto-pipelining on a real Redis (stores/redis_batch.py): scripts asked for together go
as one pipeline on one connection; each caller still gets its own answer or its own error;
a flushed script cache is reloaded for the whole batch; a caller that gives up does not
break its batch. (Failures of the whole connection: test_redis.py's outage tests.)"""

from __future__ import annotations

import re

import anyio
import pytest

from oneinbox_asgi.guards import RedisStore, StoreUnavailable
from oneinbox_asgi.stores.base import ScopeRule

from .redis_server import RedisServer, command

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

CALLERS = 64
PAUSES = ("global", "agent:agt_demo")


def rule(caller: str, cap: int = 5) -> tuple[ScopeRule, ...]:
    return (ScopeRule("caller", f"id:{caller}", (100, 60.0), cap),)


def connected_clients(port: int) -> int:
    info = command(port, "INFO", "clients").decode()
    found = re.search(r"connected_clients:(\d+)", info)
    assert found is not None, info
    return int(found.group(1)) - 1  # less the connection asking


async def admit_all(store: RedisStore, callers: list[str]) -> dict[str, object]:
    """Every caller's admission, asked for at the same moment; errors as answers."""
    answers: dict[str, object] = {}

    async def one(caller: str) -> None:
        try:
            answers[caller] = await store.admit(
                rule(caller), slot=f"slot-{caller}", lease=60, pauses=PAUSES
            )
        except StoreUnavailable as exc:
            answers[caller] = exc

    async with anyio.create_task_group() as tasks:
        for caller in callers:
            tasks.start_soon(one, caller)
    return answers


def all_admitted(answers: dict[str, object], callers: list[str]) -> bool:
    return all(getattr(answers[caller], "expires_ms", 0) > 0 for caller in callers)


async def test_scripts_asked_together_share_one_connection(
    redis_server: RedisServer, redis_url: str
) -> None:
    store = RedisStore(redis_url, max_connections=64)
    try:
        callers = [f"u{i}" for i in range(CALLERS)]
        answers = await admit_all(store, callers)
        assert all_admitted(answers, callers), answers
        # One by one, 64 callers at once open 64 connections (the pool allows them).
        assert connected_clients(redis_server.port) <= 2
        for caller in callers:  # each caller's own slot, once: nothing mixed up
            usage = await store.usage(f"id:{caller}", answers[caller].day)  # type: ignore[attr-defined]
            assert (usage.live, usage.calls) == (1, 1)
    finally:
        await store.aclose()


async def test_a_flushed_script_cache_is_reloaded_for_the_whole_batch(
    redis_server: RedisServer, redis_url: str
) -> None:
    store = RedisStore(redis_url)
    try:
        await admit_all(store, ["warm"])  # the scripts are loaded
        assert command(redis_server.port, "SCRIPT", "FLUSH").startswith(b"+OK")
        callers = [f"u{i}" for i in range(CALLERS)]
        answers = await admit_all(store, callers)
        assert all_admitted(answers, callers), answers
        day = answers["u0"].day  # type: ignore[attr-defined]
        assert [(await store.usage(f"id:{c}", day)).calls for c in callers] == [1] * CALLERS
    finally:
        await store.aclose()


async def test_one_scripts_error_fails_only_its_own_caller(
    redis_server: RedisServer, redis_url: str
) -> None:
    store = RedisStore(redis_url)
    try:
        # A key of the wrong type: that caller's script fails on the server (WRONGTYPE).
        assert command(redis_server.port, "SET", "{oneinbox-asgi}rate:id:broken", "x")
        callers = [f"u{i}" for i in range(16)] + ["broken"]
        answers = await admit_all(store, callers)
        assert isinstance(answers["broken"], StoreUnavailable)
        assert "WRONGTYPE" in str(answers["broken"])
        assert all_admitted(answers, callers[:16]), answers
    finally:
        await store.aclose()


async def test_a_caller_that_gives_up_leaves_its_batch_to_the_others(
    redis_url: str,
) -> None:
    store = RedisStore(redis_url)
    answers: dict[str, object] = {}
    try:
        async with anyio.create_task_group() as tasks:
            for i in range(16):

                async def one(caller: str = f"u{i}") -> None:
                    answers[caller] = await store.admit(
                        rule(caller), slot=f"slot-{caller}", lease=60, pauses=PAUSES
                    )

                tasks.start_soon(one)
            with anyio.CancelScope() as quitter:
                quitter.cancel()  # gives up at its first wait, after asking
                await store.admit(rule("quitter"), slot="slot-q", lease=60, pauses=PAUSES)
        assert quitter.cancelled_caught
        assert sorted(answers) == sorted(f"u{i}" for i in range(16))
        assert all_admitted(answers, sorted(answers))
        # and the store still answers afterwards
        assert (await admit_all(store, ["after"]))["after"].expires_ms > 0  # type: ignore[attr-defined]
    finally:
        await store.aclose()
