"""FastAPI: ``app.add_middleware(OneInboxMiddleware, ...)``, as in Starlette.

FastAPI's ``add_middleware`` is Starlette's: the last one added is the outermost, so
``SessionMiddleware`` goes after ours and ``scope["session"]`` is there when we run.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import PlainTextResponse

from oneinbox_asgi import OneInboxMiddleware, StarletteSessionReader
from oneinbox_emulator.api import EmulatorAPI

from ..servers import serve
from ..support import client_for
from .support import (
    assert_call_for,
    assert_visitor_is_refused,
    assert_widget_has_no_cookie,
    login,
    options,
    real_http_round_trip,
)

pytestmark = pytest.mark.anyio

SECRET = "fastapi-session-secret"


def make_app(*, session_outside: bool = True, **extra: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/", response_class=PlainTextResponse)
    async def home() -> str:
        return "host app at /"

    @app.get("/login")
    async def log_in(request: Request, id: str, name: str) -> dict[str, bool]:
        request.session["user"] = {"id": id, "name": name}
        return {"ok": True}

    @app.get("/oneinboxer/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

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
        item = await client.get("/oneinboxer/7")
        invalid = await client.get("/oneinboxer/seven")
        schema = await client.get("/openapi.json")
        missing = await client.get("/oneinbox")
    assert home.text == "host app at /"
    assert item.json() == {"item": 7}
    assert invalid.status_code == 422  # FastAPI's own validation, untouched
    assert "/oneinboxer/{item_id}" in schema.json()["paths"]
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}


async def test_session_middleware_added_first_needs_the_reader(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = make_app(
        session_outside=False,
        http_client=upstream_client,
        session=StarletteSessionReader(SECRET),
    )
    async with client_for(app) as client:
        await login(client, "u2", "Ada")
        await assert_call_for(client, oneinbox, "u2", "Ada")


def test_over_real_http(oneinbox: EmulatorAPI) -> None:
    with serve(oneinbox) as upstream:
        real_http_round_trip(make_app(base_url=upstream), oneinbox, name="Lin")
