"""Litestar: ``plugins=[OneInboxPlugin(...)]``.

Litestar runs app-level middleware only for requests that matched one of its routes,
so the plugin registers the broker's routes as Litestar ASGI routes; Litestar's own
session middleware then runs before the broker and ``scope["session"]`` is there.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get, post
from litestar.config.compression import CompressionConfig
from litestar.config.csrf import CSRFConfig
from litestar.middleware import DefineMiddleware
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.params import FromPath, FromQuery

from oneinbox_asgi import ConfigurationError, OneInboxMiddleware
from oneinbox_asgi.integrations.litestar import CALL_ROUTES, OneInboxPlugin
from oneinbox_emulator.api import EmulatorAPI

from ..servers import serve
from ..support import START, WIDGET, client_for, error_code
from .support import (
    assert_call_for,
    assert_visitor_is_refused,
    assert_widget_has_no_cookie,
    login,
    options,
    real_http_round_trip,
)

pytestmark = pytest.mark.anyio


@get("/")
async def home() -> str:
    return "host app at /"


@get("/login")
async def log_in(request: Request[Any, Any, Any], id: FromQuery[str], name: FromQuery[str]) -> str:
    request.set_session({"user": {"id": id, "name": name}})
    return "ok"


@get("/oneinboxer")
async def lookalike() -> str:
    return "host app at /oneinboxer"


@get("/items/{item_id:int}")
async def item(item_id: FromPath[int]) -> str:
    return f"item {item_id}"


@post("/host-form")
async def host_form() -> str:
    return "posted"


def server_side() -> ServerSideSessionConfig:
    return ServerSideSessionConfig()


def cookie_backend() -> CookieBackendConfig:
    return CookieBackendConfig(secret=os.urandom(16))


SESSIONS = {"server_side": server_side, "cookie": cookie_backend}


def make_app(
    *, session: str = "server_side", handlers: tuple[Any, ...] = (), **extra: Any
) -> Litestar:
    return Litestar(
        logging_config=None,  # leave this process's logging alone
        route_handlers=[home, log_in, lookalike, item, host_form, *handlers],
        middleware=[SESSIONS[session]().middleware],
        plugins=[OneInboxPlugin(**options(**extra))],  # the one line
    )


@pytest.mark.parametrize("session", sorted(SESSIONS))
async def test_logged_in_user_gets_a_call_with_their_name(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, session: str
) -> None:
    app = make_app(session=session, http_client=upstream_client)
    async with client_for(app) as client:
        await login(client, "u1", "Grace")
        await assert_call_for(client, oneinbox, "u1", "Grace")
        # Litestar's session middleware re-sends the cookie on every response: the
        # widget's files are mounted outside it.
        await assert_widget_has_no_cookie(client)


async def test_visitor_without_session_gets_401(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    await assert_visitor_is_refused(make_app(http_client=upstream_client), oneinbox)


async def test_host_routes_still_work(upstream_client: httpx.AsyncClient) -> None:
    app = make_app(http_client=upstream_client)
    async with client_for(app) as client:
        home_page = await client.get("/")
        plain_lookalike = await client.get("/oneinboxer")
        with_parameter = await client.get("/items/7")
        missing = await client.get("/nope")
    assert home_page.text == "host app at /"
    assert plain_lookalike.text == "host app at /oneinboxer"
    assert with_parameter.text == "item 7"
    assert missing.status_code == 404 and missing.json()["detail"] == "Not Found"


async def test_the_mount_answers_every_path_below_the_prefix(
    upstream_client: httpx.AsyncClient,
) -> None:
    app = make_app(http_client=upstream_client)
    async with client_for(app) as client:
        wrong_method = await client.get(START)
        trailing_slash = await client.get("/oneinbox/widget.js/")
        unknown = await client.get("/oneinbox/nothing-here")
        deeper = await client.get("/oneinbox/a/b")
        bare = await client.get("/oneinbox")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert trailing_slash.status_code == 200  # Litestar adds the slash to every mount path
    for response in (unknown, deeper, bare):
        assert response.status_code == 404 and error_code(response) == "not_found"


async def test_a_tampered_litestar_cookie_is_a_401_not_an_error_page(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = make_app(session="cookie", http_client=upstream_client)
    async with client_for(app) as client:
        await login(client, "u1", "Grace")
        cookie = client.cookies["session"]
        client.cookies.clear()
        client.cookies.set("session", cookie[:-8] + "AAAAAAAA")
        tampered = await client.post(START, json={})
    assert tampered.status_code == 401 and error_code(tampered) == "unauthorized"
    assert oneinbox.received == []


async def test_routes_are_found_under_root_path(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = make_app(http_client=upstream_client)
    async with client_for(app, root_path="/shop") as client:
        logged_in = await client.get("/shop/login", params={"id": "u5", "name": "Kim"})
        assert logged_in.status_code == 200
        started = await client.post("/shop" + START, json={})
        widget = await client.get("/shop/oneinbox/widget.js")
    assert started.status_code == 201, started.text
    assert widget.status_code == 200


async def test_litestars_csrf_check_is_left_to_our_cross_site_guard(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = Litestar(
        logging_config=None,
        route_handlers=[home, log_in, host_form],
        middleware=[server_side().middleware],
        csrf_config=CSRFConfig(secret="litestar-csrf-secret-0123456789ab"),
        plugins=[OneInboxPlugin(**options(http_client=upstream_client))],
    )
    async with client_for(app) as client:
        await login(client, "u6", "Ada")
        host_post = await client.post("/host-form")
        cross_site = await client.post(START, json={}, headers={"sec-fetch-site": "cross-site"})
        same_origin = await client.post(START, json={}, headers={"sec-fetch-site": "same-origin"})
    assert host_post.status_code == 403  # the host's own CSRF protection is untouched
    assert cross_site.status_code == 403 and error_code(cross_site) == "cross_site"
    assert same_origin.status_code == 201, same_origin.text


@pytest.mark.parametrize("compression", [False, True])
async def test_the_widget_is_encoded_once_and_its_responses_stay_apart(
    upstream_client: httpx.AsyncClient, compression: bool
) -> None:
    """Litestar's compression middleware compresses even a gzipped body, and edits the
    headers it forwards in place: neither may reach the widget's shared responses."""
    app = Litestar(
        logging_config=None,
        route_handlers=[home],
        compression_config=CompressionConfig(backend="gzip") if compression else None,
        plugins=[OneInboxPlugin(**options(http_client=upstream_client))],
    )
    bodies: list[bytes] = []
    async with client_for(app) as client:
        for encoding in ("gzip", "identity", "gzip", "identity"):
            response = await client.get(WIDGET, headers={"accept-encoding": encoding})
            assert response.status_code == 200
            expected = "gzip" if encoding == "gzip" else None
            assert response.headers.get("content-encoding") == expected
            assert response.headers.get_list("vary") in (
                ["accept-encoding"],
                ["accept-encoding,Accept-Encoding"],
            )
            bodies.append(response.content)  # decoded once by httpx
    assert bodies[0].startswith(b'"use strict"')
    assert bodies == [bodies[0]] * 4


async def test_app_level_middleware_would_not_see_our_paths(
    upstream_client: httpx.AsyncClient,
) -> None:
    """Why a plugin: Litestar builds middleware per matched route (``app=`` by keyword)."""
    app = Litestar(
        logging_config=None,
        route_handlers=[home],
        middleware=[DefineMiddleware(OneInboxMiddleware, **options(http_client=upstream_client))],
    )
    async with client_for(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == 404 and "error" not in response.json()


async def test_host_routes_the_mount_would_shadow_are_refused_at_startup(
    upstream_client: httpx.AsyncClient,
) -> None:
    @get("/oneinboxes/{box_id:str}")
    async def box(box_id: FromPath[str]) -> str:
        return box_id

    app = make_app(handlers=(box,), http_client=upstream_client)
    refused = pytest.RaisesExc(ConfigurationError, match=r"'/oneinboxes/\{box_id:str\}'.*prefix=")
    with pytest.RaisesGroup(refused, allow_unwrapped=True):
        async with app.lifespan():
            pass

    moved = make_app(handlers=(box,), http_client=upstream_client, prefix="/voice")
    async with moved.lifespan(), client_for(moved) as client:
        assert (await client.get("/oneinboxes/b1")).text == "b1"
        assert (await client.get("/voice/widget.js")).status_code == 200


def test_every_call_route_of_the_broker_gets_the_session() -> None:
    """The plugin names the routes that need the session; the broker must not add others."""
    broker = OneInboxPlugin(**options()).broker
    assert set(broker._routes) == set(CALL_ROUTES)


def test_over_real_http_and_shutdown_closes_our_client(oneinbox: EmulatorAPI) -> None:
    with serve(oneinbox) as upstream:
        plugin = OneInboxPlugin(**options(base_url=upstream))
        app = Litestar(
            logging_config=None,
            route_handlers=[home, log_in],
            middleware=[server_side().middleware],
            plugins=[plugin],
        )
        real_http_round_trip(app, oneinbox, name="Lin")
    assert not plugin.broker.upstream.is_open  # on_shutdown closed it
