"""A misbehaving OneInbox over real loopback HTTP: each fault maps to the contract's code
within the timeout + 0.5 s, through the middleware's own pooled client, and the pool
survives a thousand faults."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette

from oneinbox_asgi import OneInboxMiddleware, allow_anonymous

from ..support import API_KEY, START, UNLIMITED
from .faulty_upstream import FAULTS, TIMEOUT, FaultyUpstream, faulty_upstream

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FaultyUpstream, str]]:
    with faulty_upstream() as served:
        yield served


@pytest.fixture
async def broker(
    upstream: tuple[FaultyUpstream, str],
) -> AsyncIterator[tuple[FaultyUpstream, httpx.AsyncClient, OneInboxMiddleware]]:
    fake, url = upstream
    fake.mode = "good"
    middleware = OneInboxMiddleware(
        Starlette(),
        api_key=API_KEY,
        agent_id="agt_demo",
        authorize=allow_anonymous,
        base_url=url,
        timeout=TIMEOUT,
        **UNLIMITED,
    )
    transport = httpx.ASGITransport(app=middleware)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield fake, client, middleware
    finally:
        await middleware.aclose()


@pytest.mark.parametrize(("mode", "status", "code"), FAULTS)
async def test_each_fault_maps_in_time_and_the_next_good_call_works(
    broker: tuple[FaultyUpstream, httpx.AsyncClient, OneInboxMiddleware],
    caplog: pytest.LogCaptureFixture,
    mode: str,
    status: int,
    code: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, client, _ = broker
    fake.mode = mode
    began = time.monotonic()
    response = await client.post(START, json={})
    elapsed = time.monotonic() - began
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert elapsed < TIMEOUT + 0.5
    if mode == "busy_retry_after":
        assert response.headers["retry-after"] == "7"
    fake.mode = "good"
    began = time.monotonic()
    good = await client.post(START, json={})
    assert good.status_code == 201, good.text
    assert time.monotonic() - began < 0.5
    assert API_KEY not in caplog.text


async def test_refused_connections_map_to_503_promptly(closed_port: int) -> None:
    middleware = OneInboxMiddleware(
        Starlette(),
        api_key=API_KEY,
        agent_id="agt_demo",
        authorize=allow_anonymous,
        base_url=f"http://127.0.0.1:{closed_port}",
        timeout=TIMEOUT,
        **UNLIMITED,
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=middleware), base_url="http://app"
        ) as client:
            began = time.monotonic()
            response = await client.post(START, json={})
            assert time.monotonic() - began < TIMEOUT + 0.5
    finally:
        await middleware.aclose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"


async def test_a_thousand_faults_do_not_leak_the_pool(
    broker: tuple[FaultyUpstream, httpx.AsyncClient, OneInboxMiddleware],
) -> None:
    fake, client, _ = broker
    modes = ["reset", "truncated", "status_500", "html", "busy"]
    outcomes: dict[int, int] = {}
    for i in range(1000):
        fake.mode = modes[i % len(modes)]
        response = await client.post(START, json={})
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
    assert set(outcomes) <= {502, 503}, outcomes
    assert sum(outcomes.values()) == 1000
    fake.mode = "good"
    began = time.monotonic()
    good = await client.post(START, json={})
    assert good.status_code == 201
    assert time.monotonic() - began < 0.5
    # Connections that carried a broken answer were closed, not parked in the pool.
    assert fake.open_connections <= 64
