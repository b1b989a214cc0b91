"""Starlette with a "Talk to AI" button.  Run: ``uvicorn examples.starlette_app:app``

The one line is ``app.add_middleware(OneInboxMiddleware, ...)``. ``add_middleware``
makes the last one added the outermost, so ``SessionMiddleware`` is added after it:
the session is then in ``scope["session"]`` when the broker asks who is calling.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

from oneinbox_asgi import OneInboxMiddleware

from ._shared import authorize, new_user, oneinbox_connection, page, session_secret, variables


async def home(request: Request) -> HTMLResponse:
    user = request.session.get("user")
    return HTMLResponse(page("Starlette", user["name"] if user else None))


async def login(request: Request) -> RedirectResponse:
    user = new_user((await request.form()).get("name"))
    if user:
        request.session["user"] = user
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/", status_code=303)


oneinbox = oneinbox_connection()
app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
)
app.add_middleware(OneInboxMiddleware, authorize=authorize, variables=variables, **oneinbox)
app.add_middleware(SessionMiddleware, secret_key=session_secret())
