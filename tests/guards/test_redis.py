"""Redis-only behaviour: Redis down fails closed fast and recovers by itself; scripts
survive SCRIPT FLUSH and a restart. (Replicas in separate processes: test_replicas.py.)"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter

import anyio
import httpx
import pytest

from oneinbox_asgi.guards import RedisStore, StoreUnavailable
from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, broker, client_for, creates, error_code
from .redis_server import RedisServer, command

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_redis_down_fails_closed_fast_then_recovers_without_a_restart(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="oneinbox_asgi")
    store = RedisStore(own_redis.url, timeout=0.5)
    app = broker(http_client=upstream_client, rate_limit="100/minute", store=store)
    try:
        async with client_for(app, "u1") as u1, client_for(app, "u2") as u2:
            assert (await u1.post(START, json={})).status_code == 201
            own_redis.kill()
            began = time.monotonic()
            down = await u2.post(START, json={})
            elapsed = time.monotonic() - began
            assert down.status_code == 503, down.text
            assert error_code(down) == "limits_unavailable"
            assert elapsed < 2.0
            assert creates(oneinbox) == 1  # failed closed: nothing went upstream
            # one line says it all: the refusal, why, and that it is the service's fault
            (line,) = [r for r in caplog.records if "limits_unavailable" in r.getMessage()]
            assert line.levelname == "WARNING" and "Redis at" in line.getMessage()

            own_redis.start()  # same port, empty, no scripts loaded (NOSCRIPT on first use)
            back = await u2.post(START, json={})
            assert back.status_code == 201, back.text
            assert (await u2.post(START, json={})).status_code == 429
    finally:
        await store.aclose()


async def test_a_redis_that_never_answers_is_a_bounded_503(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = RedisStore(f"redis://127.0.0.1:{port}", timeout=0.3)
        app = broker(http_client=upstream_client, store=store)
        try:
            async with client_for(app, "u1") as client:
                began = time.monotonic()
                response = await client.post(START, json={})
                elapsed = time.monotonic() - began
        finally:
            await store.aclose()
    assert response.status_code == 503 and error_code(response) == "limits_unavailable"
    assert elapsed < 0.3 + 0.7
    assert creates(oneinbox) == 0


async def test_scripts_are_reloaded_after_script_flush(
    upstream_client: httpx.AsyncClient, redis_server: RedisServer, redis_url: str
) -> None:
    store = RedisStore(redis_url)
    app = broker(http_client=upstream_client, store=store)
    try:
        async with client_for(app, "u1") as client:
            token = (await client.post(START, json={})).json()["end_token"]
            assert command(redis_server.port, "SCRIPT", "FLUSH").startswith(b"+OK")
            assert (await client.post(START, json={})).status_code == 429
            assert command(redis_server.port, "SCRIPT", "FLUSH").startswith(b"+OK")
            assert (await client.post(END, json={"end_token": token})).status_code == 200
            assert (await client.post(START, json={})).status_code == 201
    finally:
        await store.aclose()


async def test_the_redis_password_never_shows(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = RedisStore(f"redis://app:s3cret-pw@127.0.0.1:{closed_port}/0", timeout=0.3)
    assert "s3cret-pw" not in repr(store)
    app = broker(http_client=upstream_client, store=store)
    try:
        async with client_for(app, "u1") as client:
            response = await client.post(START, json={})
    finally:
        await store.aclose()
    assert response.status_code == 503
    assert "s3cret-pw" not in response.text
    assert "s3cret-pw" not in caplog.text
    assert "app:***@127.0.0.1" in caplog.text


async def test_store_option_and_env_pick_redis(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    by_option = broker(store=redis_url)
    monkeypatch.setenv("ONEINBOX_REDIS_URL", redis_url)
    by_env = broker()
    explicit_memory = broker(store="memory")
    try:
        assert isinstance(by_option.store, RedisStore)
        assert isinstance(by_env.store, RedisStore)
        assert type(explicit_memory.store).__name__ == "MemoryStore"
        assert await by_env.store.hit("k", 1, 60) == 0
        assert await by_env.store.hit("k", 1, 60) > 0
    finally:
        for middleware in (by_option, by_env, explicit_memory):
            await middleware.aclose()


async def test_store_errors_are_store_unavailable(closed_port: int) -> None:
    store = RedisStore(f"redis://127.0.0.1:{closed_port}", timeout=0.3)
    try:
        with pytest.raises(StoreUnavailable, match=r"Redis at redis://127\.0\.0\.1"):
            await store.acquire("k", "slot", 1, 60)
    finally:
        await store.aclose()


async def test_a_restart_between_requests_is_invisible(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, own_redis: RedisServer
) -> None:
    """Pooled connections to the old server are dead; the one retry reconnects."""
    store = RedisStore(own_redis.url, timeout=0.5)
    app = broker(http_client=upstream_client, store=store)
    try:
        async with client_for(app, "u1") as u1, client_for(app, "u2") as u2:
            assert (await u1.post(START, json={})).status_code == 201
            own_redis.kill()
            own_redis.start()
            response = await u2.post(START, json={})
            assert response.status_code == 201, response.text
    finally:
        await store.aclose()


async def test_killing_redis_mid_burst_never_hangs_and_recovers(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, own_redis: RedisServer
) -> None:
    oneinbox.misbehave(delay=0.02)
    store = RedisStore(own_redis.url, timeout=0.5)
    app = broker(http_client=upstream_client, rate_limit="1000/minute", store=store)
    statuses: list[int] = []
    try:
        async with client_for(app) as client:

            async def one(i: int) -> None:
                await anyio.sleep(i * 0.005)
                response = await client.post(START, json={}, headers={"x-user": f"u{i}"})
                statuses.append(response.status_code)

            began = time.monotonic()
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tasks:
                    for i in range(60):
                        tasks.start_soon(one, i)
                    await anyio.sleep(0.1)
                    await anyio.to_thread.run_sync(own_redis.kill)
            elapsed = time.monotonic() - began
            tally = Counter(statuses)
            assert set(tally) <= {201, 503} and sum(tally.values()) == 60
            assert tally[503] > 0  # the kill did land inside the burst
            assert elapsed < 5
            await anyio.to_thread.run_sync(own_redis.start)
            after = await client.post(START, json={}, headers={"x-user": "later"})
            assert after.status_code == 201, after.text
    finally:
        await store.aclose()
