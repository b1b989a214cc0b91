"""What the tests share: the test key and agent, the routes, clients, the middleware with
test defaults, the contract's error shape, and a few small tools.

Test modules import shared helpers from here (or from their package's own support
module, for what only that package uses), never from each other or from a conftest,
whose place is fixtures; tests/structure/test_test_imports.py keeps to that."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette

from oneinbox_asgi import CallRequest, OneInboxMiddleware
from oneinbox_asgi.guards import LimitStore
from oneinbox_emulator.api import EmulatorAPI

API_KEY = "oi_sk_emulator_0123456789abcdef"  # the emulator's default key
AGENT_ID = "agt_demo"
START = "/oneinbox/start-call"
END = "/oneinbox/end-call"
WIDGET = "/oneinbox/widget.js"
BASE_URL = "http://testserver"
#: Options that switch the per-caller limits off, for tests that are not about them.
UNLIMITED: dict[str, Any] = {"rate_limit": None, "max_concurrent_calls": None}

#: What the guards' ``make_store`` fixture yields: makes a limit store of the test's kind.
StoreFactory = Callable[..., LimitStore]


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def user_from_header(request: CallRequest) -> str | None:
    """authorize: the caller is whoever the ``X-User`` header names (tests only)."""
    return request.headers.get("x-user") or None


def tenant_from_header(request: CallRequest) -> str | None:
    """tenant: the tenant is whatever the ``X-Tenant`` header names (tests only)."""
    return request.headers.get("x-tenant") or None


def options(**extra: Any) -> dict[str, Any]:
    """The middleware's options with the test key and agent, callers named by ``X-User``;
    ``extra`` wins."""
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "agent_id": AGENT_ID,
        "authorize": user_from_header,
    }
    settings.update(extra)
    return settings


def broker(**extra: Any) -> OneInboxMiddleware:
    """The middleware made right now (Starlette builds middleware lazily), in front of an
    empty host app, with ``options(**extra)``."""
    return OneInboxMiddleware(Starlette(), **options(**extra))


def client_for(app: Any, user: str | None = None, **transport: Any) -> httpx.AsyncClient:
    """An in-process client of ``app``; ``user`` is sent as ``X-User``."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, **transport),
        base_url=BASE_URL,
        headers={"x-user": user} if user else {},
    )


@asynccontextmanager
async def logged_in(
    app: Any, user_id: str = "u1", name: str = "Ada"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in through the host app's ``/login`` (tests/apps.py)."""
    async with client_for(app) as client:
        response = await client.get("/login", params={"id": user_id, "name": name})
        assert response.status_code == 200
        yield client


def error_code(response: httpx.Response) -> str:
    """The code of a contract error answer, after checking its whole shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return str(body["error"]["code"])


def fake_oneinbox() -> EmulatorAPI:
    """A fresh fake OneInbox API that knows agents agt_demo and agt_sales."""
    api = EmulatorAPI(api_keys=[API_KEY])
    api.registry.agents.update({"agt_demo", "agt_sales"})
    return api


def creates(oneinbox: EmulatorAPI) -> int:
    """How many calls the fake OneInbox was asked to create."""
    return sum(1 for r in oneinbox.received if r.path == "/v1/calls/web")


def free_port() -> int:
    """A loopback port free now (bound, then released; whoever binds it next a moment later
    has no competition in the tests' private network namespace)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it is still there after 10 s; its
    stdout pipe closed."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stdout is not None:
        process.stdout.close()
