"""Dispatch, pass-through, options checked at construction, lifespan, real HTTP."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from websockets.sync.client import connect

from oneinbox_asgi import (
    ConfigurationError,
    OneInboxMiddleware,
    StarletteSessionReader,
    allow_anonymous,
)
from oneinbox_emulator.api import EmulatorAPI

from .apps import SESSION_SECRET, authorize, starlette_app
from .servers import serve
from .support import AGENT_ID, API_KEY, START, client_for, error_code

pytestmark = pytest.mark.anyio


async def test_other_paths_pass_through_untouched(upstream_client: httpx.AsyncClient) -> None:
    app = starlette_app(http_client=upstream_client)
    async with client_for(app) as client:
        home = await client.get("/")
        lookalike = await client.get("/oneinboxer")
        missing = await client.get("/nope")
    assert home.text == "host app at /"
    assert lookalike.text == "host app at /oneinboxer"
    assert missing.status_code == 404 and "error" not in missing.text


def test_websockets_reach_the_host_app(oneinbox: EmulatorAPI) -> None:
    app = starlette_app(base_url="http://127.0.0.1:9")
    with serve(app) as url, connect(url.replace("http", "ws") + "/ws") as socket:
        assert socket.recv(timeout=5) == "host websocket"


async def test_routes_are_found_under_root_path(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    inner = OneInboxMiddleware(
        Starlette(),
        api_key=API_KEY,
        agent_id=AGENT_ID,
        authorize=allow_anonymous,
        http_client=upstream_client,
    )
    transport = httpx.ASGITransport(app=inner, root_path="/shop")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/shop" + START, json={})
    assert response.status_code == 201, response.text


async def test_a_different_prefix(upstream_client: httpx.AsyncClient) -> None:
    app = starlette_app(
        http_client=upstream_client, prefix="/voice/", authorize=allow_anonymous, variables=None
    )
    async with client_for(app) as client:
        moved = await client.post("/voice/start-call", json={})
        old = await client.post(START, json={})
    assert moved.status_code == 201
    assert old.status_code == 404 and "error" not in old.text  # the host app's own 404


BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"api_key": None}, "ONEINBOX_API_KEY"),
    ({"authorize": None}, "authorize"),
    ({"authorize": "yes"}, "authorize"),
    ({"agent_id": None}, "ONEINBOX_AGENT_ID"),
    ({"agents": {"sales": ""}}, "agents"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": "10"}, "timeout"),
    ({"prefix": "oneinbox"}, "prefix"),
    ({"prefix": "/"}, "prefix"),
    ({"base_url": "ftp://x"}, "base_url"),
    ({"client_variables": "customer_name"}, "client_variables"),
    ({"session": object()}, "session"),
    ({"variables": 3}, "variables"),
]


@pytest.mark.parametrize(("options", "names"), BAD_OPTIONS)
def test_bad_options_fail_at_construction_naming_what_to_set(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], names: str
) -> None:
    for var in ("ONEINBOX_API_KEY", "ONEINBOX_AGENT_ID", "ONEINBOX_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    settings: dict[str, Any] = {"api_key": API_KEY, "agent_id": AGENT_ID, "authorize": authorize}
    settings.update(options)
    with pytest.raises(ConfigurationError, match=names) as raised:
        OneInboxMiddleware(Starlette(), **settings)
    assert isinstance(raised.value, ValueError)


def test_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEINBOX_API_KEY", API_KEY)
    monkeypatch.setenv("ONEINBOX_AGENT_ID", AGENT_ID)
    monkeypatch.setenv("ONEINBOX_BASE_URL", "http://127.0.0.1:9/")
    middleware = OneInboxMiddleware(app=Starlette(), authorize=allow_anonymous)
    assert middleware.upstream.base_url == "http://127.0.0.1:9"
    assert API_KEY not in repr(middleware.upstream)


def test_over_real_http_with_lifespan_closing_the_pooled_client(
    oneinbox: EmulatorAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with serve(oneinbox) as upstream_url:
        app = starlette_app(base_url=upstream_url)
        with serve(app) as url, httpx.Client(base_url=url) as client:
            client.get("/login", params={"id": "u7", "name": "Lin"})
            response = client.post(START, json={})
            assert response.status_code == 201, response.text
            assert client.get("/").text == "host app at /"
            unauthorized = httpx.post(url + START, json={})
            assert error_code(unauthorized) == "unauthorized"
            middleware = app.middleware_stack
            while not isinstance(middleware, OneInboxMiddleware):
                middleware = middleware.app  # type: ignore[union-attr]
            assert middleware.upstream.is_open
        # uvicorn has run the lifespan shutdown: our own client is closed and dropped.
        assert not middleware.upstream.is_open
    call = oneinbox.registry.get(response.json()["call_id"])
    assert call is not None and call.variables == {"customer_name": "Lin"}
    assert API_KEY not in caplog.text


async def lifespan_exchange(app: Any, probe: Callable[[], bool] | None = None) -> list[str]:
    """Drive a lifespan start and stop through ``app``; return what it sent (with what
    ``probe`` said at each message, when given)."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, str]:
        return incoming.pop(0)

    async def send(message: dict[str, str]) -> None:
        sent.append(message["type"] + (f":{probe()}" if probe else ""))

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


async def test_lifespan_is_answered_for_a_host_that_refuses_it() -> None:
    async def django_like(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    middleware = OneInboxMiddleware(
        django_like, api_key=API_KEY, agent_id=AGENT_ID, authorize=allow_anonymous
    )
    assert not middleware.upstream.is_open
    sent = await lifespan_exchange(middleware, lambda: middleware.upstream.is_open)
    # Opened at startup (the first call does not pay for it), closed at shutdown.
    assert sent == ["lifespan.startup.complete:True", "lifespan.shutdown.complete:False"]
    assert not middleware.upstream.is_open


async def test_a_host_whose_startup_really_fails_is_not_hidden() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("database is down")

    middleware = OneInboxMiddleware(
        failing, api_key=API_KEY, agent_id=AGENT_ID, authorize=allow_anonymous
    )
    with pytest.raises(RuntimeError, match="database is down"):
        await lifespan_exchange(middleware)


async def test_missing_session_setup_is_logged_once(
    upstream_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = OneInboxMiddleware(
        Starlette(),
        api_key=API_KEY,
        agent_id=AGENT_ID,
        authorize=authorize,
        http_client=upstream_client,
    )
    async with client_for(middleware) as client:
        first = await client.post(START, json={})
        second = await client.post(START, json={})
    assert first.status_code == second.status_code == 401
    warnings = [r for r in caplog.records if "no session" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING

    caplog.clear()
    anonymous = OneInboxMiddleware(
        Starlette(),
        api_key=API_KEY,
        agent_id=AGENT_ID,
        authorize=allow_anonymous,
        http_client=upstream_client,
    )
    async with client_for(anonymous) as client:
        assert (await client.post(START, json={})).status_code == 201
    assert "no session" not in caplog.text  # a site that never reads the session is fine


async def test_a_session_cookie_split_over_headers_is_read(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    reader = StarletteSessionReader(SESSION_SECRET)
    app = starlette_app(http_client=upstream_client)
    async with client_for(app) as client:
        await client.get("/login", params={"id": "u9", "name": "Kai"})
        cookie = client.cookies["session"]
    middleware = OneInboxMiddleware(
        Starlette(),
        api_key=API_KEY,
        agent_id=AGENT_ID,
        authorize=authorize,
        session=reader,
        rate_limit=None,
        http_client=upstream_client,
    )
    scope_headers = [("cookie", "theme=dark"), ("cookie", f"session={cookie}")]
    async with client_for(middleware) as client:
        response = await client.post(START, json={}, headers=httpx.Headers(scope_headers))
    assert response.status_code == 201, response.text


async def test_widget_files_through_the_middleware_answer_405_for_post(
    upstream_client: httpx.AsyncClient,
) -> None:
    app = starlette_app(http_client=upstream_client)
    async with client_for(app) as client:
        post = await client.post("/oneinbox/widget.js")
        get = await client.get("/oneinbox/widget.js")
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert error_code(post) == "method_not_allowed"
    assert get.status_code == 200


async def test_an_outer_middleware_editing_headers_does_not_change_later_answers(
    upstream_client: httpx.AsyncClient,
) -> None:
    inner = OneInboxMiddleware(
        Starlette(), api_key=API_KEY, agent_id=AGENT_ID, authorize=allow_anonymous
    )

    async def tagging(scope: Any, receive: Any, send: Any) -> None:
        async def edit(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-tag", b"1"))  # as GZipMiddleware edits in place
            await send(message)

        await inner(scope, receive, edit)

    async with client_for(tagging) as client:
        answers = [await client.get("/oneinbox/widget.js") for _ in range(3)]
    assert [r.headers.get_list("x-tag") for r in answers] == [["1"], ["1"], ["1"]]


async def test_a_failed_host_startup_closes_what_we_opened() -> None:
    async def refusing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    middleware = OneInboxMiddleware(
        refusing, api_key=API_KEY, agent_id=AGENT_ID, authorize=allow_anonymous
    )
    sent = await lifespan_exchange(middleware, lambda: middleware.upstream.is_open)
    assert sent == ["lifespan.startup.failed:False"]


HOST_WITHOUT_KEY = """
from starlette.applications import Starlette
from oneinbox_asgi import OneInboxMiddleware, allow_anonymous

app = Starlette()
app.add_middleware(OneInboxMiddleware, authorize=allow_anonymous, agent_id="agt_x")
"""


SERVERS = {
    "uvicorn": ["-m", "uvicorn", "hostapp:app", "--port", "{port}"],
    "hypercorn": ["-m", "hypercorn", "hostapp:app", "--bind", "127.0.0.1:{port}"],
    "granian": ["-m", "granian", "--interface", "asgi", "hostapp:app", "--port", "{port}"],
    # daphne sends no lifespan: Starlette builds its middleware at the first request.
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "hostapp:app"],
}


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_missing_api_key_is_said_on_the_console_under_the_servers_defaults(
    tmp_path: Path, server: str
) -> None:
    """Starlette builds its middleware at the first lifespan message; uvicorn's default
    lifespan mode then logs only "lifespan unsupported" and every page answers 500. The
    reason must be on the console at startup (daphne: at the first request, the first
    moment the middleware exists), with no logging set up by the host."""
    (tmp_path / "hostapp.py").write_text(HOST_WITHOUT_KEY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEINBOX_")}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, *(part.format(port=port) for part in SERVERS[server])]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stderr=subprocess.STDOUT, stdout=subprocess.PIPE
    )
    output: list[str] = []
    said = "OneInbox API key missing: set ONEINBOX_API_KEY"
    try:
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        deadline = time.monotonic() + 20
        asked = False
        while time.monotonic() < deadline and said not in "".join(output):
            chunk = process.stdout.read()
            if chunk:
                output.append(chunk.decode(errors="replace"))
            elif server == "daphne" and not asked and "Listening" in "".join(output):
                asked = True
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            else:
                time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert said in "".join(output), "".join(output)
