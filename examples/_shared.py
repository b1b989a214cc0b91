"""What the examples share, so each example file shows only its framework's part.

The hooks are the ones every host app writes (they read the framework's own session);
``oneinbox_connection()`` says where calls go; ``page()`` is the one HTML page.
"""

from __future__ import annotations

import html
import os
import secrets
import sys
from typing import Any

import httpx

from oneinbox_asgi import CallRequest

WIDGET = '<script src="/oneinbox/widget.js" async></script>'
MAX_NAME = 60


def authorize(request: CallRequest) -> str | None:
    """Signed-in users may call; the id they signed in with is the caller."""
    user = request.session.get("user")
    return str(user["id"]) if user else None


def variables(request: CallRequest) -> dict[str, str]:
    """The agent greets the caller by the name in the session, never one from the browser."""
    return {"customer_name": str(request.session["user"]["name"])}


def oneinbox_connection() -> dict[str, Any]:
    """Where calls go: OneInbox from the environment, else an in-process emulator.

    With ``ONEINBOX_API_KEY`` set, the middleware reads it, ``ONEINBOX_AGENT_ID`` and
    ``ONEINBOX_BASE_URL`` itself. Without it, calls go to the emulator's call API in
    this process: start-call works, but nothing answers the voice connection. For a
    real conversation offline, run ``python -m oneinbox_asgi emulator`` and export the
    three variables it prints.
    """
    if os.environ.get("ONEINBOX_API_KEY"):
        return {}
    from oneinbox_emulator.api import DEFAULT_API_KEY, EmulatorAPI  # needs [emulator]

    print(
        "ONEINBOX_API_KEY is not set: using the in-process OneInbox emulator "
        "(calls are created, no voice; see examples/README.md)",
        file=sys.stderr,
    )
    emulator = httpx.ASGITransport(app=EmulatorAPI(api_keys=[DEFAULT_API_KEY]))
    return {
        "api_key": DEFAULT_API_KEY,
        "agent_id": "agt_demo",
        "http_client": httpx.AsyncClient(transport=emulator),
    }


def session_secret() -> str:
    """``SESSION_SECRET`` from the environment; else random (sessions end with the process)."""
    return os.environ.get("SESSION_SECRET") or secrets.token_urlsafe(32)


def new_user(name: object) -> dict[str, str] | None:
    """A demo sign-in: any name, a fresh id. A real app checks a password here."""
    cleaned = str(name or "").strip()[:MAX_NAME]
    return {"id": "u_" + secrets.token_hex(6), "name": cleaned} if cleaned else None


def page(framework: str, name: str | None, *, csrf_input: str = "") -> str:
    """The home page: a sign-in form, or a greeting with the widget."""
    if name is None:
        body = (
            f"<h1>{framework} + oneinbox-asgi</h1>"
            "<form method=post action=/login>"
            f"{csrf_input}<input name=name placeholder='Your name' required> "
            "<button>Sign in</button></form>"
        )
    else:
        body = (
            f"<h1>Hello, {html.escape(name)}</h1>"
            "<p>Press the button and talk to the agent; it knows your name.</p>"
            f"<form method=post action=/logout>{csrf_input}<button>Sign out</button></form>"
            f"{WIDGET}"
        )
    return f"<!doctype html><html lang=en><meta charset=utf-8><title>{framework}</title>{body}"
