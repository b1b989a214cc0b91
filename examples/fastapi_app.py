"""FastAPI with a "Talk to AI" button.  Run: ``uvicorn examples.fastapi_app:app``

The one line is ``app.add_middleware(OneInboxMiddleware, ...)``, added before
``SessionMiddleware`` (the last one added is the outermost), so the session is in
``scope["session"]`` when the broker asks who is calling.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from oneinbox_asgi import OneInboxMiddleware

from ._shared import authorize, new_user, oneinbox_connection, page, session_secret, variables

oneinbox = oneinbox_connection()
app = FastAPI()


@app.get("/", response_class=HTMLResponse)
async def home(request: Request) -> str:
    user = request.session.get("user")
    return page("FastAPI", user["name"] if user else None)


@app.post("/login")
async def login(request: Request, name: Annotated[str, Form()] = "") -> RedirectResponse:
    user = new_user(name)
    if user:
        request.session["user"] = user
    return RedirectResponse("/", status_code=303)


@app.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/", status_code=303)


app.add_middleware(OneInboxMiddleware, authorize=authorize, variables=variables, **oneinbox)
app.add_middleware(SessionMiddleware, secret_key=session_secret())
