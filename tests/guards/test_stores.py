"""The LimitStore contract, the same for both stores; what is special to each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oneinbox_asgi.guards import LimitStore, MemoryStore

from ..support import FakeClock, StoreFactory
from . import redis_server

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def test_hit_is_a_sliding_window(make_store: StoreFactory) -> None:
    clock = FakeClock()
    store = make_store(clock=clock)
    assert isinstance(store, LimitStore)
    assert [await store.hit("k", 2, 10) for _ in range(2)] == [0, 0]
    assert await store.hit("k", 2, 10) == pytest.approx(10)
    clock.advance(4)
    assert await store.hit("k", 2, 10) == pytest.approx(6)  # refused attempts do not count
    clock.advance(6)
    assert await store.hit("k", 2, 10) == 0
    assert await store.hit("other", 2, 10) == 0


async def test_slots_are_capped_leased_and_released_once(make_store: StoreFactory) -> None:
    clock = FakeClock()
    store = make_store(clock=clock)
    assert await store.acquire("k", "a", 2, 30)
    assert await store.acquire("k", "a", 2, 30)  # taking a held slot again is a no-op
    assert await store.acquire("k", "b", 2, 30)
    assert not await store.acquire("k", "c", 2, 30)
    assert await store.release("k", "a")
    assert not await store.release("k", "a")
    assert await store.acquire("k", "c", 2, 30)
    clock.advance(30)
    assert not await store.release("k", "b")  # its lease ran out: it was not held any more
    assert await store.acquire("k", "d", 2, 30)
    assert await store.acquire("k", "e", 2, 30)


async def test_long_and_odd_keys(make_store: StoreFactory) -> None:
    store = make_store()
    for key in ["id:" + "x" * 5000, "id:ü ñ \n {tag}", "ip:2001:db8::1"]:
        assert await store.acquire(key, "s", 1, 60)
        assert not await store.acquire(key, "t", 1, 60)
        assert await store.hit(key, 1, 60) == 0


async def test_memory_store_forgets_idle_callers() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for i in range(1000):
        await store.hit(f"ip:{i}", 5, 60)
        await store.acquire(f"ip:{i}", "s", 1, 30)
    clock.advance(120)
    await store.hit("ip:new", 5, 60)
    assert repr(store) == "MemoryStore(keys=1)"


def test_an_app_without_redis_py_works_and_a_redis_url_says_what_to_install() -> None:
    script = """
import sys
sys.modules["redis"] = None  # as if the redis extra were not installed
from starlette.applications import Starlette
from oneinbox_asgi import ConfigurationError, OneInboxMiddleware, allow_anonymous
options = dict(api_key="oi_sk_x", agent_id="agt", authorize=allow_anonymous)
OneInboxMiddleware(Starlette(), **options)
try:
    OneInboxMiddleware(Starlette(), store="redis://127.0.0.1:6379", **options)
except ConfigurationError as exc:
    print(exc)
"""
    env = {k: v for k, v in os.environ.items() if k != "ONEINBOX_REDIS_URL"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode()
    assert "pip install 'oneinbox-asgi[redis]'" in done.stdout.decode()


def test_without_redis_server_the_tests_skip_saying_why_or_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_server, "redis_server_binary", lambda: None)
    monkeypatch.delenv(redis_server.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no redis-server binary on PATH"):
        redis_server.require_redis()
    monkeypatch.setenv(redis_server.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="ONEINBOX_REQUIRE_REDIS=1 but"):
        redis_server.require_redis()
