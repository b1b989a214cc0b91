"""Fixtures for the guard tests: a fake clock, a header-authorized broker, real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from oneinbox_asgi import CallRequest, OneInboxMiddleware
from oneinbox_asgi.guards import LimitStore, MemoryStore, RedisStore

from ..conftest import AGENT_ID, API_KEY
from .redis_server import RedisServer, command, require_redis, started_server

START = "/oneinbox/start-call"
END = "/oneinbox/end-call"


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def user_from_header(request: CallRequest) -> str | None:
    """authorize: the caller is whoever the ``X-User`` header names (tests only)."""
    return request.headers.get("x-user") or None


def broker(upstream: httpx.AsyncClient, **options: Any) -> OneInboxMiddleware:
    """The middleware in front of an empty host app, callers named by ``X-User``."""
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "agent_id": AGENT_ID,
        "authorize": user_from_header,
        "http_client": upstream,
    }
    settings.update(options)
    return OneInboxMiddleware(Starlette(), **settings)


def construct(**options: Any) -> OneInboxMiddleware:
    """The middleware made right now (Starlette itself builds middleware lazily)."""
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "agent_id": AGENT_ID,
        "authorize": user_from_header,
    }
    settings.update(options)
    return OneInboxMiddleware(Starlette(), **settings)


def client_for(app: Any, user: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    headers = {"x-user": user} if user else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, **kwargs),
        base_url="http://testserver",
        headers=headers,
    )


def code_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return str(body["error"]["code"])


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


StoreFactory = Callable[..., LimitStore]


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
