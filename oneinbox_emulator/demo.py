"""The demo: a small Starlette site with a login and the "Talk to AI" widget.

``python -m oneinbox_asgi demo`` serves it, wired to the local emulator unless
``ONEINBOX_API_KEY`` is set. It is also what the end-to-end tests drive, so it stays an
honest example of mounting the middleware: the host app's own session says who the
caller is, and the server, not the browser, puts their name into the call.
"""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from oneinbox_asgi import CallRequest, OneInboxMiddleware
from oneinbox_asgi.hooks import EventHook
from oneinbox_asgi.widget import script_tag

MAX_NAME = 60


@dataclass(frozen=True, slots=True)
class DemoConfig:
    api_key: str
    agent_id: str
    base_url: str | None = None
    """None: the middleware's default (ONEINBOX_BASE_URL, else api.oneinbox.ai)."""
    backend: str = "OneInbox"
    """Named on the page, so a person sees whether the emulator or the real service answers."""
    session_secret: str = ""
    """Signs the session cookie; empty: a random secret (sessions end with the process)."""
    webhooks: bool = True
    """Mount ``/oneinbox/webhook``: the emulator delivers its call events there, so the
    broker learns of every call's end (docs/lifecycle.md)."""
    on_call_ended: EventHook | None = None
    """The broker's ``on_call_ended`` hook (the end-to-end tests count the ends with it)."""


def authorize(request: CallRequest) -> str | None:
    """Only signed-in visitors may call; their id limits and audits their calls."""
    user = request.session.get("user")
    return str(user["id"]) if isinstance(user, dict) and "id" in user else None


def variables(request: CallRequest) -> dict[str, Any]:
    """The agent greets the caller by the name from the session, never from the browser."""
    return {"customer_name": str(request.session["user"]["name"])}


_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
main { max-width: 34rem; margin: 4rem auto; background: #fff; padding: 2rem 2.5rem;
       border-radius: 12px; box-shadow: 0 2px 12px #0001; }
h1 { font-size: 1.4rem; margin-top: 0; }
input[type=text] { font: inherit; padding: .4rem .6rem; border: 1px solid #bbc;
                   border-radius: 6px; }
button.plain { font: inherit; padding: .4rem .9rem; border-radius: 6px; border: 1px solid #889;
               background: #fff; cursor: pointer; }
.note { color: #667; font-size: .9rem; }
oneinbox-call { display: block; margin: 1.5rem 0; }
"""


def _page(nonce: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>oneinbox-asgi demo</title><style nonce='{nonce}'>{_STYLE}</style>"
        f"<main>{body}</main></html>"
    )


def build_demo_app(config: DemoConfig) -> ASGIApp:
    """The demo site wrapped by ``OneInboxMiddleware`` and Starlette's session middleware."""
    backend = html.escape(config.backend)

    async def home(request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        user = request.session.get("user")
        if not user:
            body = (
                "<h1>oneinbox-asgi demo</h1>"
                "<p>Sign in with any name. The AI agent will greet you by it.</p>"
                "<form method=post action=/login>"
                "<input type=text name=name placeholder='Your name' required autofocus "
                f"maxlength={MAX_NAME}> <button class=plain>Sign in</button></form>"
                f"<p class=note>Calls go to {backend}.</p>"
            )
        else:
            name = html.escape(str(user["name"]))
            body = (
                f"<h1>Hello, {name}</h1>"
                "<p>Press the button and talk to the demo agent. Allow the microphone "
                "when the browser asks.</p>"
                "<oneinbox-call></oneinbox-call>"
                f"<p class=note>Calls go to {backend}.</p>"
                "<form method=post action=/logout><button class=plain>Sign out</button></form>"
                # prefetch: fetch the call code (livekit-client) while the page is idle, so
                # the first click does not wait for it.
                + script_tag("/oneinbox", nonce=nonce, prefetch="idle")
            )
        csp = (
            f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
            f"style-src 'self' 'nonce-{nonce}'; connect-src 'self' ws: wss: http: https:; "
            "media-src 'self' blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        return HTMLResponse(
            _page(nonce, body),
            headers={"content-security-policy": csp, "cache-control": "no-store"},
        )

    async def login(request: Request) -> Response:
        # Parsed by hand: Starlette's request.form() needs python-multipart, which the
        # package does not depend on.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        name = (form.get("name") or [""])[0].strip()[:MAX_NAME]
        if name:
            request.session["user"] = {"id": "u_" + secrets.token_hex(6), "name": name}
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    site = Starlette(
        routes=[
            Route("/", home),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
        ]
    )
    broker = OneInboxMiddleware(
        site,
        authorize=authorize,
        variables=variables,
        api_key=config.api_key,
        agent_id=config.agent_id,
        base_url=config.base_url,
        webhooks=config.webhooks,
        on_call_ended=config.on_call_ended,
    )
    # Outside the broker, so scope["session"] is there when the broker runs.
    return SessionMiddleware(
        broker,
        secret_key=config.session_secret or secrets.token_urlsafe(32),
        session_cookie="oneinbox_demo",
        same_site="lax",
    )
