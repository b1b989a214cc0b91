"""Falcon (ASGI) with a "Talk to AI" button.  Run: ``uvicorn examples.falcon_app:app``

Falcon has no session of its own; apps keep the signed-in user in a signed cookie.
``SignedCookieSession`` below is that cookie: the login writes it, the pages read it,
and the broker reads it too, given as ``session=`` (any object with an async
``read(cookies)`` is a session reader). The one line wraps the Falcon app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import falcon
import falcon.asgi
from itsdangerous import BadSignature, URLSafeTimedSerializer

from oneinbox_asgi import OneInboxMiddleware

from ._shared import authorize, new_user, oneinbox_connection, page, session_secret, variables

MAX_COOKIE_BYTES = 4096  # browsers cap a cookie near 4 KiB: a larger one is not ours


class SignedCookieSession:
    """The session as a signed, timestamped cookie; also the broker's session reader."""

    def __init__(self, secret: str, *, cookie: str = "session", max_age: int = 14 * 86400) -> None:
        self.cookie = cookie
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secret, salt="falcon-session")

    def load(self, value: str | None) -> dict[str, Any]:
        """The session in a cookie value; tampered, expired or missing reads as empty."""
        if not value or len(value) > MAX_COOKIE_BYTES:
            return {}
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is one too
            return {}
        return data if isinstance(data, dict) else {}

    def save(
        self, resp: falcon.asgi.Response, req: falcon.asgi.Request, data: dict[str, Any]
    ) -> None:
        resp.set_cookie(
            self.cookie,
            self._serializer.dumps(data),
            max_age=self.max_age,
            path="/",
            secure=req.scheme == "https",  # Falcon's default is Secure-only
            http_only=True,
            same_site="Lax",
        )

    async def read(self, cookies: Mapping[str, str]) -> Mapping[str, Any]:
        """What the broker calls (``oneinbox_asgi.SessionReader``)."""
        return self.load(cookies.get(self.cookie))


sessions = SignedCookieSession(session_secret())


class Home:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user = sessions.load(req.cookies.get(sessions.cookie))
        resp.content_type = falcon.MEDIA_HTML
        resp.text = page("Falcon", user["user"]["name"] if user else None)


class Login:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        form = await req.get_media()
        user = new_user(form.get("name"))
        if user:
            sessions.save(resp, req, {"user": user})
        resp.status = falcon.HTTP_303
        resp.location = "/"


class Logout:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.unset_cookie(sessions.cookie, path="/")
        resp.status = falcon.HTTP_303
        resp.location = "/"


oneinbox = oneinbox_connection()
falcon_app = falcon.asgi.App()
falcon_app.add_route("/", Home())
falcon_app.add_route("/login", Login())
falcon_app.add_route("/logout", Logout())

app = OneInboxMiddleware(
    falcon_app, session=sessions, authorize=authorize, variables=variables, **oneinbox
)
