"""Quart: ``app.asgi_app = OneInboxMiddleware(app.asgi_app, ...)``.

Quart opens its session inside ``app.asgi_app``, after we have run, so the broker
reads Quart's signed session cookie with ``QuartSessionReader(app)``.
"""

from __future__ import annotations

import httpx
import pytest

from oneinbox_asgi import OneInboxMiddleware
from oneinbox_emulator.api import EmulatorAPI

from ..servers import serve
from ..support import START, client_for
from .quart_host import make_app
from .support import (
    assert_call_for,
    assert_visitor_is_refused,
    assert_widget_has_no_cookie,
    login,
    real_http_round_trip,
)

pytestmark = pytest.mark.anyio


async def test_logged_in_user_gets_a_call_with_their_name(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = make_app(http_client=upstream_client)
    async with client_for(app) as client:
        await login(client, "u1", "Grace")
        await assert_call_for(client, oneinbox, "u1", "Grace")
        await assert_widget_has_no_cookie(client)


async def test_visitor_without_session_gets_401(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    await assert_visitor_is_refused(make_app(http_client=upstream_client), oneinbox)


async def test_host_routes_still_work(upstream_client: httpx.AsyncClient) -> None:
    app = make_app(http_client=upstream_client)
    async with client_for(app) as client:
        home = await client.get("/")
        item = await client.get("/oneinboxer/7")
        missing = await client.get("/oneinbox")
    assert home.text == "host app at /"
    assert item.text == "item 7"
    assert missing.status_code == 404 and "Not Found" in missing.text  # Quart's own page


async def test_without_the_reader_quarts_session_is_not_seen(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = make_app(reader=False, http_client=upstream_client)
    async with client_for(app) as client:
        await login(client, "u2", "Ada")
        response = await client.post(START, json={})
    assert response.status_code == 401
    assert oneinbox.received == []


def test_over_real_http_and_quarts_lifespan_closes_our_client(oneinbox: EmulatorAPI) -> None:
    with serve(oneinbox) as upstream:
        app = make_app(base_url=upstream)
        real_http_round_trip(app, oneinbox, name="Lin")
    broker = app.asgi_app
    assert isinstance(broker, OneInboxMiddleware)
    assert not broker.upstream.is_open  # closed by the lifespan shutdown through Quart
