"""Starlette: ``app.add_middleware(OneInboxMiddleware, ...)`` with Starlette's own session.

``add_middleware`` makes the last one added the outermost, so adding ``SessionMiddleware``
after ours puts ``scope["session"]`` in place before we run; added the other way round,
the session is read from its signed cookie by ``StarletteSessionReader``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from oneinbox_asgi import OneInboxMiddleware, StarletteSessionReader
from oneinbox_emulator.api import EmulatorAPI

from ..servers import serve
from .support import (
    START,
    assert_call_for,
    assert_visitor_is_refused,
    assert_widget_has_no_cookie,
    client_for,
    login,
    options,
    real_http_round_trip,
)

pytestmark = pytest.mark.anyio

SECRET = "starlette-session-secret"


async def login_view(request: Request) -> JSONResponse:
    query = request.query_params
    request.session["user"] = {"id": query["id"], "name": query["name"]}
    return JSONResponse({"ok": True})


async def page(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"host app at {request.url.path}")


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"item {request.path_params['item_id']}")


def make_app(*, session_outside: bool = True, **extra: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/login", login_view),
            Route("/oneinboxer", page),
            Route("/oneinboxer/{item_id}", item),
        ]
    )
    if session_outside:
        app.add_middleware(OneInboxMiddleware, **options(**extra))  # the one line
        app.add_middleware(SessionMiddleware, secret_key=SECRET)
    else:
        app.add_middleware(SessionMiddleware, secret_key=SECRET)
        app.add_middleware(OneInboxMiddleware, **options(**extra))
    return app


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
