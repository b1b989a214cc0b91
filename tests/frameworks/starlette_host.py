"""The Starlette host app: ``app.add_middleware(OneInboxMiddleware, ...)`` with Starlette's
own ``SessionMiddleware`` outside ours (``session_outside``, the default) or inside it."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from oneinbox_asgi import OneInboxMiddleware

from .support import options

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
