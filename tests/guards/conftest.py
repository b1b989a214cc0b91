"""Fixtures for the guard tests: a fake clock, a header-authorized broker, real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from oneinbox_asgi.guards import LimitStore, MemoryStore, RedisStore

from ..support import FakeClock, StoreFactory
from .redis_server import RedisServer, command, require_redis, started_server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (skips, or fails in CI, when there is none)."""
    server = started_server(require_redis())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, emptied for this test."""
    assert command(redis_server.port, "FLUSHALL").startswith(b"+OK")
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill and restart."""
    server = started_server(require_redis())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Makes stores of one kind (each test runs once per kind); closes them after."""
    made: list[LimitStore] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def factory(**kwargs: Any) -> LimitStore:
        store: LimitStore = RedisStore(url, **kwargs) if url else MemoryStore(**kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.aclose()
