"""Quart with a "Talk to AI" button.  Run: ``uvicorn examples.quart_app:app``

The one line wraps ``app.asgi_app``. Quart opens its session inside ``asgi_app``, after
the broker has run, so the broker reads Quart's signed session cookie itself with
``QuartSessionReader(app)`` (same key, cookie name and lifetime as the app).
"""

from __future__ import annotations

from quart import Quart, redirect, request, session
from werkzeug.wrappers.response import Response

from oneinbox_asgi import OneInboxMiddleware, QuartSessionReader

from ._shared import authorize, new_user, oneinbox_connection, page, session_secret, variables

oneinbox = oneinbox_connection()
app = Quart(__name__)
app.secret_key = session_secret()


@app.get("/")
async def home() -> str:
    user = session.get("user")
    return page("Quart", user["name"] if user else None)


@app.post("/login")
async def login() -> Response:
    user = new_user((await request.form).get("name"))
    if user:
        session["user"] = user
    return redirect("/", 303)


@app.post("/logout")
async def logout() -> Response:
    session.clear()
    return redirect("/", 303)


app.asgi_app = OneInboxMiddleware(
    app.asgi_app,
    session=QuartSessionReader(app),
    authorize=authorize,
    variables=variables,
    **oneinbox,
)
