"""The Quart host app: ``app.asgi_app = OneInboxMiddleware(app.asgi_app, ...)``, its session
read by ``QuartSessionReader(app)`` (Quart opens it inside ``app.asgi_app``, after we run)."""

from __future__ import annotations

from typing import Any

from quart import Quart, request, session

from oneinbox_asgi import OneInboxMiddleware, QuartSessionReader

from .support import options

SECRET = "quart-session-secret"


def make_app(*, reader: bool = True, **extra: Any) -> Quart:
    app = Quart(__name__)
    app.secret_key = SECRET

    @app.get("/")
    async def home() -> str:
        return "host app at /"

    @app.get("/login")
    async def log_in() -> dict[str, bool]:
        session["user"] = {"id": request.args["id"], "name": request.args["name"]}
        return {"ok": True}

    @app.get("/oneinboxer/<int:item_id>")
    async def item(item_id: int) -> str:
        return f"item {item_id}"

    if reader:
        extra["session"] = QuartSessionReader(app)
    app.asgi_app = OneInboxMiddleware(app.asgi_app, **options(**extra))
    return app
