"""Fixtures for the widget's real-browser tests.

One Debian Chromium per test package (driven by Playwright's sync API, never
``playwright install``), one uvicorn server on 127.0.0.1 serving a Starlette host app
wrapped by ``OneInboxMiddleware``, whose upstream is the fake OneInbox in-process. Each
test gets a fresh browser context (own cookies and permissions) and registers the pages
it needs. Every page is served with a strict Content-Security-Policy by default, and
every ``oneinbox:*`` event and CSP violation is recorded in ``window.__oneinbox``.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..chromium import launched
from .support import (
    API_KEY,
    CSP,
    FORBIDDEN_MESSAGE,
    RATE_LIMIT,
    RECORDER,
    SALES_GREETING,
    TIMEOUT_MS,
    Exchange,
    Recorded,
    Site,
    VoiceStack,
    closed_port,
)


def _build_app(site_ref: list[Site], fake: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from oneinbox_asgi import CallRequest, Forbidden, OneInboxMiddleware

    def authorize(request: CallRequest) -> str | None:
        user = request.session.get("user")
        if user and user["name"] == "Blocked":
            raise Forbidden(FORBIDDEN_MESSAGE)
        return str(user["id"]) if user else None

    def variables(request: CallRequest) -> dict[str, Any]:
        return {"customer_name": request.session["user"]["name"]}

    async def login(request: Request) -> Response:
        request.session["user"] = {
            "id": request.query_params.get("id", "u1"),
            "name": request.query_params.get("name", "Ada"),
        }
        return PlainTextResponse("signed in")

    async def page(request: Request) -> Response:
        entry = site_ref[0].pages.get(request.path_params["name"])
        if entry is None:
            return PlainTextResponse("no such page", status_code=404)
        render, with_csp = entry
        nonce = secrets.token_urlsafe(12)
        headers = {"Content-Security-Policy": CSP.format(nonce=nonce)} if with_csp else {}
        return HTMLResponse(render(nonce), headers=headers)  # type: ignore[operator]

    async def other(request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>elsewhere</title><p>elsewhere</p>")

    host = Starlette(
        routes=[Route("/login", login), Route("/page/{name}", page), Route("/elsewhere", other)]
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake))
    broker = OneInboxMiddleware(
        host,
        authorize=authorize,
        variables=variables,
        client_variables=["topic"],
        agents={"sales": "agt_sales"},
        api_key=API_KEY,
        agent_id="agt_demo",
        base_url="http://oneinbox.invalid",
        http_client=client,
        rate_limit=RATE_LIMIT,
        max_concurrent_calls=1,
    )
    app = SessionMiddleware(broker, secret_key="browser-tests-secret")

    async def recorder(scope: Any, receive: Any, send: Any) -> None:
        """Records the broker's requests (method, path, headers, body), then passes them on."""
        site = site_ref[0]
        if scope["type"] != "http" or not scope["path"].startswith("/oneinbox/"):
            await app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        site.requests.append(
            Recorded(
                scope["method"],
                scope["path"],
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                bytes(body),
            )
        )
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await app(scope, replay, send)

    return recorder


@pytest.fixture(scope="package")
def chromium_browser() -> Iterator[Any]:
    with launched() as browser:
        yield browser


@pytest.fixture(scope="package")
def site(chromium_browser: Any) -> Iterator[Site]:
    import uvicorn

    from oneinbox_emulator.api import EmulatorAPI

    fake = EmulatorAPI(api_keys=[API_KEY])
    fake.registry.agents.update({"agt_demo", "agt_sales"})
    ref: list[Site] = []
    config = uvicorn.Config(
        _build_app(ref, fake),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        loop="asyncio",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    ref.append(Site(url=f"http://127.0.0.1:{port}", fake=fake))
    try:
        yield ref[0]
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def fresh_site(site: Site) -> Iterator[Site]:
    """The site with its knobs reset and its request logs emptied."""
    site.requests.clear()
    site.fake.received.clear()
    site.fake.behave()
    site.fake.server_url = f"ws://127.0.0.1:{closed_port()}"
    yield site


@pytest.fixture
def context(chromium_browser: Any) -> Iterator[Any]:
    ctx = chromium_browser.new_context()
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.add_init_script(RECORDER)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    page = context.new_page()
    page.errors = []  # uncaught exceptions in the page
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


@pytest.fixture
def hanging_voice_server() -> Iterator[str]:
    """A loopback port that accepts TCP connections and never answers: connect() hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _voice_host_app(stack: VoiceStack, livekit_js: Path | None) -> Any:
    """The host app on the broker's origin: a login, a page with stock livekit-client, and
    the broker calling the emulator, trusting ``stack.sibling``; its routes' requests and
    answers are recorded in ``stack.exchanges``."""
    from starlette.applications import Starlette
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from oneinbox_asgi import CallRequest, OneInboxMiddleware

    def authorize(request: CallRequest) -> str | None:
        user = request.session.get("user")
        return str(user["id"]) if user else None

    def variables(request: CallRequest) -> dict[str, Any]:
        return {"customer_name": request.session["user"]["name"]}

    async def login(request: Request) -> Response:
        request.session["user"] = {
            "id": request.query_params["id"],
            "name": request.query_params["name"],
        }
        return PlainTextResponse("signed in")

    async def livekit_client(request: Request) -> Response:
        if livekit_js is None:
            return PlainTextResponse("livekit-client is not installed", status_code=404)
        return FileResponse(livekit_js)

    host = Starlette(
        routes=[
            Route("/login", login),
            Route("/livekit-client.js", livekit_client),
            Route("/livekit", lambda _: HTMLResponse(_livekit_page(stack.broker))),
        ]
    )
    broker = OneInboxMiddleware(
        host,
        authorize=authorize,
        variables=variables,
        agents={"sales": "agt_sales"},
        api_key=stack.emulator.api_key,
        agent_id="agt_demo",
        base_url=stack.emulator.base_url,
        trusted_origins=[stack.sibling],
    )
    app = SessionMiddleware(broker, secret_key="browser-tests-secret")

    async def recorder(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/oneinbox/"):
            await app(scope, receive, send)
            return
        exchange = Exchange(
            scope["method"],
            scope["path"],
            {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        )
        stack.exchanges.append(exchange)

        async def recording_receive() -> Any:
            message = await receive()
            exchange.body += message.get("body", b"")
            return message

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.answer = {
                    k.decode("latin-1"): v.decode("latin-1") for k, v in message["headers"]
                }
            await send(message)

        await app(scope, recording_receive, recording_send)

    return recorder


def _livekit_page(broker: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LiveKit</title>'
        f'<script src="{broker}/livekit-client.js"></script></head><body></body></html>'
    )


def _pages_app(stack: VoiceStack) -> Any:
    """The app on the other origins: a page embedding the widget from the broker's origin
    (the script tag ``script_tag`` renders for an absolute prefix, under a strict CSP), and a
    page with stock livekit-client."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    from oneinbox_asgi.widget import script_tag

    async def widget(request: Request) -> Response:
        nonce = secrets.token_urlsafe(12)
        html = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>'
            f"{script_tag(stack.broker + '/oneinbox', nonce=nonce)}</head>"
            "<body><h1>A sibling site</h1></body></html>"
        )
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP.format(nonce=nonce)})

    return Starlette(
        routes=[
            Route("/", widget),
            Route("/livekit", lambda _: HTMLResponse(_livekit_page(stack.broker))),
        ]
    )


@pytest.fixture(scope="package")
def voice_stack(chromium_browser: Any) -> Iterator[VoiceStack]:
    """A real emulator (its voice server too), the broker's host app, and the page app on a
    trusted and an untrusted origin: four servers on loopback, for the package."""
    from oneinbox_emulator.agent import AgentSettings
    from oneinbox_emulator.app import Emulator
    from oneinbox_emulator.serving import BackgroundServers, Served, bind, url_of
    from oneinbox_emulator.voice.server import VoiceOptions
    from oneinbox_emulator.voice.session import SessionTimings

    from ..emulator.support import livekit_client_bundle

    emulator = Emulator(
        agents={"agt_demo": AgentSettings(), "agt_sales": AgentSettings(greeting=SALES_GREETING)},
        voice=VoiceOptions(
            departure_timeout=1.0, timings=SessionTimings(connect_timeout=5.0, leave_grace=0.2)
        ),
        record_delay=0.0,
    )
    sockets = [bind() for _ in range(4)]  # the emulator, the broker, a sibling, a stranger
    emulator.bind(url_of(sockets[0]))
    stack = VoiceStack(
        broker=url_of(sockets[1]),
        sibling=url_of(sockets[2]),
        stranger=url_of(sockets[3]),
        emulator=emulator,
    )
    pages = _pages_app(stack)
    served = [
        Served(emulator, sockets[0]),
        Served(_voice_host_app(stack, livekit_client_bundle()), sockets[1]),
        Served(pages, sockets[2], "off"),
        Served(pages, sockets[3], "off"),
    ]
    with BackgroundServers(served):
        yield stack


@pytest.fixture
def fresh_voice_stack(voice_stack: VoiceStack) -> VoiceStack:
    """The voice stack with its record of the broker's exchanges emptied."""
    voice_stack.exchanges.clear()
    return voice_stack
