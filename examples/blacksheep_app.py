"""BlackSheep with a "Talk to AI" button.  Run: ``uvicorn examples.blacksheep_app:app``

BlackSheep keeps its session in ``request.session``, inside its own request pipeline,
after the broker has run. The broker reads it through the app's own session store:
``BlackSheepSessionReader(store)`` asks the same ``SessionStore`` that
``app.use_sessions(store)`` uses (here the signed cookie one), so the cookie name,
secret and lifetime are the app's. The one line wraps the BlackSheep app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from blacksheep import Application, Request, Response, html
from blacksheep.server.responses import see_other
from blacksheep.server.routing import Router
from blacksheep.sessions import SessionStore
from blacksheep.sessions.cookies import CookieSessionStore

from oneinbox_asgi import OneInboxMiddleware

from ._shared import authorize, new_user, oneinbox_connection, page, session_secret, variables

MAX_COOKIE_BYTES = 4096  # browsers cap a cookie near 4 KiB: a larger one is not ours


class BlackSheepSessionReader:
    """BlackSheep's session, loaded by the app's ``SessionStore`` from the request's cookies."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    async def read(self, cookies: Mapping[str, str]) -> Mapping[str, Any]:
        header = "; ".join(
            f"{name}={value}" for name, value in cookies.items() if len(value) <= MAX_COOKIE_BYTES
        )
        request = Request("GET", b"/", [(b"cookie", header.encode("latin-1", "replace"))])
        try:
            return (await self.store.load(request)).to_dict()
        except (ValueError, TypeError, UnicodeError):  # signed, but not a session's shape
            return {}


async def home(request: Request) -> Response:
    user = request.session.get("user")
    return html(page("BlackSheep", user["name"] if user else None))


async def login(request: Request) -> Response:
    form = await request.form() or {}
    user = new_user(form.get("name"))
    if user:
        request.session["user"] = user
    return see_other("/")


async def logout(request: Request) -> Response:
    request.session.clear()
    return see_other("/")


oneinbox = oneinbox_connection()
store = CookieSessionStore(session_secret(), session_max_age=14 * 86400)
blacksheep_app = Application(router=Router())  # its own routes, not the module-wide router
blacksheep_app.use_sessions(store)
blacksheep_app.router.add_get("/", home)
blacksheep_app.router.add_post("/login", login)
blacksheep_app.router.add_post("/logout", logout)

app = OneInboxMiddleware(
    blacksheep_app,
    session=BlackSheepSessionReader(store),
    authorize=authorize,
    variables=variables,
    **oneinbox,
)
