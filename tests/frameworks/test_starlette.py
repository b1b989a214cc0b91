"""Starlette: ``app.add_middleware(OneInboxMiddleware, ...)`` with Starlette's own session.

``add_middleware`` makes the last one added the outermost, so adding ``SessionMiddleware``
after ours puts ``scope["session"]`` in place before we run; added the other way round,
the session is read from its signed cookie by ``StarletteSessionReader``.
"""

from __future__ import annotations

import httpx
import pytest

from oneinbox_asgi import StarletteSessionReader
from oneinbox_emulator.api import EmulatorAPI

from ..servers import serve
from ..support import START, client_for
from .starlette_host import SECRET, make_app
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
        lookalike = await client.get("/oneinboxer")
        with_parameter = await client.get("/oneinboxer/7")
        missing = await client.get("/nope")
    assert home.text == "host app at /"
    assert lookalike.text == "host app at /oneinboxer"
    assert with_parameter.text == "item 7"
    assert missing.status_code == 404 and missing.text == "Not Found"


async def test_session_middleware_inside_ours_needs_the_reader(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    without_reader = make_app(session_outside=False, http_client=upstream_client)
    async with client_for(without_reader) as client:
        await login(client, "u2", "Ada")
        refused = await client.post(START, json={})
    assert refused.status_code == 401  # the session is not in scope yet when we run

    with_reader = make_app(
        session_outside=False,
        http_client=upstream_client,
        session=StarletteSessionReader(SECRET),
    )
    async with client_for(with_reader) as client:
        await login(client, "u3", "Ada")
        await assert_call_for(client, oneinbox, "u3", "Ada")


def test_over_real_http(oneinbox: EmulatorAPI) -> None:
    with serve(oneinbox) as upstream:
        real_http_round_trip(make_app(base_url=upstream), oneinbox, name="Lin")
