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
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from ..chromium import launched

TIMEOUT_MS = 10_000  # every wait in these tests is bounded by this
CSP = "script-src 'self' 'nonce-{nonce}'; style-src 'self'"
API_KEY = "oi_sk_browser_tests_0123456789abcdef"
RATE_LIMIT = "3/minute"  # per caller; every login is a new caller
FORBIDDEN_MESSAGE = "Voice calls are not part of your plan."

# Recorded before any page script runs; init scripts are not subject to the page's CSP.
RECORDER = """
(() => {
  const log = (window.__oneinbox = { events: [], violations: [], elementEvents: [] });
  for (const type of ["state", "transcript", "error", "ended", "mute", "ready"]) {
    document.addEventListener("oneinbox:" + type, (e) => {
      const d = e.detail;
      const copy = type === "ready" ? null : JSON.parse(JSON.stringify(d ?? null));
      log.events.push({ type, detail: copy, t: performance.now() });
    });
  }
  document.addEventListener("securitypolicyviolation", (e) => {
    log.violations.push({ directive: e.violatedDirective, blocked: e.blockedURI });
  });
})();
"""


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Site:
    """The running host app, and the knobs tests turn."""

    url: str
    fake: Any  # oneinbox_asgi.emulator.api.EmulatorAPI
    pages: dict[str, tuple[str, bool]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def page(self, body: Callable[[str], str], *, csp: bool = True) -> str:
        """Registers a page; ``body(nonce)`` renders its HTML. Returns its absolute URL."""
        name = secrets.token_hex(6)
        self.pages[name] = (body, csp)  # type: ignore[assignment]
        return f"{self.url}/page/{name}"

    def posted(self, route: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == f"/oneinbox/{route}"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    from oneinbox_asgi.emulator.api import EmulatorAPI

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


def login(page: Any, site: Site, name: str = "Ada") -> None:
    response = page.request.get(f"{site.url}/login?id=u-{secrets.token_hex(3)}&name={name}")
    assert response.ok


def events(page: Any, type_: str | None = None) -> list[dict[str, Any]]:
    recorded: list[dict[str, Any]] = page.evaluate("window.__oneinbox.events")
    return [e for e in recorded if type_ is None or e["type"] == type_]


def states(page: Any) -> list[str]:
    return [e["detail"]["state"] for e in events(page, "state")]


def violations(page: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("window.__oneinbox.violations")
    return found


def wait_state(page: Any, state: str) -> None:
    page.wait_for_function(
        "s => window.OneInbox && window.OneInbox.state === s", arg=state, timeout=TIMEOUT_MS
    )


def mic_state(page: Any) -> str | None:
    value: str | None = page.evaluate(
        "() => { const m = window.OneInbox._debug.mic; return m ? m.readyState : null; }"
    )
    return value


GUARD_MS = 600  # the widget ignores clicks on a button this soon after a state change


def settle(page: Any) -> None:
    """Waits until a click on the widget's buttons counts again (the double-click guard)."""
    page.wait_for_function(
        "ms => { const s = window.__oneinbox.events.filter(e => e.type === 'state').pop();"
        " return !s || performance.now() - s.t > ms; }",
        arg=GUARD_MS + 50,
        timeout=TIMEOUT_MS,
    )


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT_MS / 1000) -> None:
    """Polls a condition on the Python side (e.g. the server's request log), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(0.02)


def wait_mic_released(page: Any) -> None:
    page.wait_for_function(
        "() => { const m = window.OneInbox._debug.mic; return !!m && m.readyState === 'ended'; }",
        timeout=TIMEOUT_MS,
    )
