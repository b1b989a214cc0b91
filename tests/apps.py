"""A small Starlette host app with a login, wrapped by the middleware, for the tests."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from oneinbox_asgi import CallRequest, OneInboxMiddleware

from .support import AGENT_ID, API_KEY

SESSION_SECRET = "test-session-secret"


def authorize(request: CallRequest) -> str | None:
    user = request.session.get("user")
    return user["id"] if user else None


async def variables(request: CallRequest) -> dict[str, Any]:
    return {"customer_name": request.session["user"]["name"]}


async def login(request: Request) -> JSONResponse:
    request.session["user"] = {
        "id": request.query_params["id"],
        "name": request.query_params.get("name", "Ada"),
    }
    return JSONResponse({"ok": True})


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"host app at {request.url.path}")


async def echo_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("host websocket")
    await websocket.close()


def host_routes() -> list[Route | WebSocketRoute]:
    return [
        Route("/", home),
        Route("/login", login),
        Route("/oneinboxer", home),
        WebSocketRoute("/ws", echo_socket),
    ]


def starlette_app(**options: Any) -> Starlette:
    """Session middleware outside ours, so ``scope["session"]`` is there when we run.

    The per-caller limits are off unless a test passes them (tests/guards tests the
    real defaults), so tests that start several calls as one user keep working.
    """
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "agent_id": AGENT_ID,
        "authorize": authorize,
        "variables": variables,
        "rate_limit": None,
        "max_concurrent_calls": None,
    }
    settings.update(options)
    return Starlette(
        routes=host_routes(),
        middleware=[
            Middleware(SessionMiddleware, secret_key=SESSION_SECRET),
            Middleware(OneInboxMiddleware, **settings),
        ],
    )
