"""Quart and Django under the same upstream fault set as Starlette (one run each):
the misbehaving OneInbox over loopback, the broker's own pooled client, a signed-in user."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from oneinbox_asgi import OneInboxMiddleware

from ..reliability.faulty_upstream import FAULTS, TIMEOUT, FaultyUpstream, faulty_upstream
from ..support import START, client_for
from . import django_site, quart_host
from .support import login

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("django")]


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FaultyUpstream, str]]:
    with faulty_upstream() as served:
        yield served


def quart_app(base_url: str) -> tuple[Any, OneInboxMiddleware]:
    app = quart_host.make_app(base_url=base_url, timeout=TIMEOUT)
    return app, app.asgi_app


def django_app(base_url: str) -> tuple[Any, OneInboxMiddleware]:
    app = django_site.make_app(base_url=base_url, timeout=TIMEOUT)
    return app, app


@pytest.fixture(params=["quart", "django"])
async def signed_in(
    request: pytest.FixtureRequest, upstream: tuple[FaultyUpstream, str]
) -> AsyncIterator[tuple[FaultyUpstream, httpx.AsyncClient]]:
    fake, url = upstream
    fake.mode = "good"
    build = quart_app if request.param == "quart" else django_app
    with django_site.engine("db"):
        app, broker = build(url)
        try:
            async with client_for(app) as client:
                await login(client, "u1", "Ada")
                yield fake, client
        finally:
            await broker.aclose()


async def test_the_fault_set(signed_in: tuple[FaultyUpstream, httpx.AsyncClient]) -> None:
    fake, client = signed_in
    seen: list[tuple[str, int, str]] = []
    for mode, _, _ in FAULTS:
        fake.mode = mode
        began = time.monotonic()
        response = await client.post(START, json={})
        assert time.monotonic() - began < TIMEOUT + 0.5, mode
        seen.append((mode, response.status_code, response.json()["error"]["code"]))
        fake.mode = "good"
        good = await client.post(START, json={})
        assert good.status_code == 201, (mode, good.text)
    assert seen == FAULTS
