"""The ASGI apps the benchmark serves, each variant built the way a user would write it.

Pass-through (what the middleware costs the host app's own requests): one small
Starlette app with a JSON route and a plain-text route, served bare, wrapped by
``OneInboxMiddleware``, or wrapped by a ``BaseHTTPMiddleware`` doing the same prefix
check (the common slow pattern).

Broker (``POST /oneinbox/start-call`` -> upstream ``POST /v1/calls/web``): the
middleware with hooks and in-process or Redis limits, a naive FastAPI endpoint that
makes an ``httpx.AsyncClient`` per request, FastAPI with one shared default httpx
client, and the raw ceiling (raw ASGI + ``bench.rawclient``; a lower bound only).
Callers are keyed by an ``x-bench-user`` header: the load generator cycles through
many users, so per-caller limit state grows as it would in production.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from oneinbox_asgi import CallRequest, OneInboxMiddleware, allow_anonymous
from oneinbox_asgi.transport.base import MAX_CONNECTIONS

from .fake_oneinbox import AGENT_ID, API_KEY, CALL_PATH
from .rawclient import RawPool

START_CALL = "/oneinbox/start-call"
USER_HEADER = "x-bench-user"
# Limits high enough never to deny: the benchmark measures their cost, not their effect.
HIGH_RATE_LIMIT = "1000000/minute"
HIGH_CONCURRENCY = 1_000_000
# The bench never ends a call; each start-call's slot is leased for this long, as if the
# call lasted that long. With the default lease (15 min) slots would pile up by the
# hundred per caller over a run (no real cap allows that), and the per-call cost of
# the limit checks, which scan a caller's slots, would grow with the run's length.
CALL_SECONDS = 2.0

ASGIApp = Callable[..., Any]


# -- the host app ------------------------------------------------------------------------


async def json_route(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world", "items": [1, 2, 3], "ok": True})


async def text_route(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello, world")


def host_routes() -> list[Route]:
    return [Route("/json", json_route), Route("/text", text_route)]


class Forward:
    """The least any pure-ASGI middleware does: forward every call. The cost of a layer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class PrefixCheck(BaseHTTPMiddleware):
    """The same prefix check as OneInboxMiddleware's, written the common (slow) way."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path.startswith("/oneinbox/"):
            return JSONResponse({"error": {"code": "not_found", "message": "-"}}, 404)
        return await call_next(request)


def passthrough_bare() -> Starlette:
    return Starlette(routes=host_routes())


def passthrough_oneinbox() -> Starlette:
    return Starlette(
        routes=host_routes(),
        middleware=[
            Middleware(
                OneInboxMiddleware,
                api_key=API_KEY,
                agent_id=AGENT_ID,
                authorize=allow_anonymous,
                base_url="http://127.0.0.1:9",
            )
        ],
    )


def passthrough_basehttp() -> Starlette:
    return Starlette(routes=host_routes(), middleware=[Middleware(PrefixCheck)])


def passthrough_forward() -> Starlette:
    return Starlette(routes=host_routes(), middleware=[Middleware(Forward)])


PASSTHROUGH: dict[str, Callable[[], Starlette]] = {
    "bare": passthrough_bare,
    "forward": passthrough_forward,
    "oneinbox": passthrough_oneinbox,
    "basehttp": passthrough_basehttp,
}


# -- the broker: OneInboxMiddleware ---------------------------------------------------


def authorize(request: CallRequest) -> str | None:
    return request.headers.get(USER_HEADER)


async def variables(request: CallRequest) -> dict[str, Any]:
    return {"customer_name": f"Bench {request.caller}"}


def guard_options(store: str | None) -> dict[str, Any]:
    """The limit options set high; ``store`` if given."""
    options: dict[str, Any] = {
        "rate_limit": HIGH_RATE_LIMIT,
        "max_concurrent_calls": HIGH_CONCURRENCY,
        "max_call_seconds": CALL_SECONDS,
    }
    if store is not None:
        options["store"] = store
    return options


def limits_off() -> dict[str, Any]:
    """The options that switch the per-caller limits off."""
    return {"rate_limit": None, "max_concurrent_calls": None}


def broker_oneinbox(
    upstream: str, *, store: str | None = None, http_client: httpx.AsyncClient | None = None
) -> Starlette:
    options = guard_options(store)
    if http_client is not None:
        options["http_client"] = http_client
    return Starlette(
        routes=host_routes(),
        middleware=[
            Middleware(
                OneInboxMiddleware,
                api_key=API_KEY,
                agent_id=AGENT_ID,
                base_url=upstream,
                authorize=authorize,
                variables=variables,
                **options,
            )
        ],
    )


POOL_LIMITS = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=64)


def broker_oneinbox_httpx(upstream: str) -> Starlette:
    """The middleware over httpx's own transport (httpcore): an injected ``http_client``,
    or the default under trio."""
    return broker_oneinbox(upstream, http_client=httpx.AsyncClient(limits=POOL_LIMITS))


# -- the broker: what people write by hand ---------------------------------------------


def _upstream_payload(user: str) -> dict[str, Any]:
    return {
        "agent_id": AGENT_ID,
        "variables": {"customer_name": f"Bench {user}"},
        "metadata": {"caller": user, "path": START_CALL},
    }


def _answer(upstream: httpx.Response) -> JSONResponse:
    if upstream.status_code != 201:
        return JSONResponse({"error": "upstream"}, 502)
    data = upstream.json()
    return JSONResponse(
        {
            "call_id": data["id"],
            "server_url": data["server_url"],
            "participant_token": data["participant_token"],
        },
        201,
        headers={"cache-control": "no-store"},
    )


def fastapi_naive(upstream: str) -> Any:
    """A FastAPI endpoint that opens a new ``httpx.AsyncClient`` per request."""
    from fastapi import FastAPI, HTTPException

    app = FastAPI()

    @app.post(START_CALL)
    async def start_call(request: Request) -> JSONResponse:
        user = request.headers.get(USER_HEADER)
        if not user:
            raise HTTPException(401, "sign in")
        await request.json()
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                upstream + CALL_PATH,
                json=_upstream_payload(user),
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=10,
            )
        return _answer(answer)

    return app


def fastapi_shared_httpx(upstream: str) -> Any:
    """A FastAPI endpoint with one shared ``httpx.AsyncClient()`` (httpx's defaults)."""
    from fastapi import FastAPI, HTTPException

    clients: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as client:
            clients.append(client)
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post(START_CALL)
    async def start_call(request: Request) -> JSONResponse:
        user = request.headers.get(USER_HEADER)
        if not user:
            raise HTTPException(401, "sign in")
        await request.json()
        answer = await clients[0].post(
            upstream + CALL_PATH,
            json=_upstream_payload(user),
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
        return _answer(answer)

    return app


def raw_ceiling(upstream: str) -> ASGIApp:
    """Raw ASGI + ``RawPool``: the least a Python broker can do. A lower bound, not a design."""
    parts = urlsplit(upstream)
    pool: list[RawPool] = []
    headers = (
        f"Authorization: Bearer {API_KEY}\r\nAccept: application/json\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    user_header = USER_HEADER.encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    pool.append(RawPool(parts.hostname or "127.0.0.1", parts.port or 80))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    pool[0].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] != START_CALL or scope["method"] != "POST":
            await _raw_answer(send, 404, b"{}")
            return
        user = next((v for k, v in scope["headers"] if k == user_header), None)
        if not user:
            await _raw_answer(send, 401, b"{}")
            return
        json.loads(body or b"{}")
        payload = json.dumps(_upstream_payload(user.decode("latin-1"))).encode()
        status, answer = await pool[0].post(CALL_PATH, headers, payload)
        if status != 201:
            await _raw_answer(send, 502, b"{}")
            return
        data = json.loads(answer)
        out = json.dumps(
            {
                "call_id": data["id"],
                "server_url": data["server_url"],
                "participant_token": data["participant_token"],
            }
        ).encode()
        await _raw_answer(send, 201, out)

    return app


async def _raw_answer(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- the widget page -------------------------------------------------------------------


def widget_page(upstream: str) -> Starlette:
    """A host page with the widget's script tag; anyone may call (the bench's browser)."""
    from oneinbox_asgi.widget import script_tag

    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Host page</title>"
        f"</head><body><h1>A host page</h1>{script_tag()}</body></html>"
    )

    async def home(request: Request) -> Response:
        return Response(page, media_type="text/html")

    return Starlette(
        routes=[Route("/", home)],
        middleware=[
            Middleware(
                OneInboxMiddleware,
                api_key=API_KEY,
                agent_id=AGENT_ID,
                base_url=upstream,
                authorize=allow_anonymous,
            )
        ],
    )
