"""Session readers: the host app's session, read where the middleware sits outside it.

When the framework's own session middleware ran before ours, ``scope["session"]`` is
used as is and no reader is needed. Otherwise pass one of these as ``session=``.
Each framework's code is imported only when its reader is used. A tampered,
expired, foreign or oversize cookie reads as an empty session, never an error.
"""

from __future__ import annotations

import json
import logging
from base64 import b64decode
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import itsdangerous

from .errors import ConfigurationError

if TYPE_CHECKING:
    from quart import Quart

logger = logging.getLogger("oneinbox_asgi")

# Browsers cap a cookie near 4 KiB; anything larger was not set by the host app.
MAX_COOKIE_BYTES = 4096

EMPTY: Mapping[str, Any] = {}


@runtime_checkable
class SessionReader(Protocol):
    """Reads the host app's session from the request's cookies."""

    async def read(self, cookies: Mapping[str, str]) -> Mapping[str, Any]: ...


def _usable(cookie: str | None) -> str | None:
    if not cookie or len(cookie) > MAX_COOKIE_BYTES:
        return None
    return cookie


class StarletteSessionReader:
    """Starlette's and FastAPI's ``SessionMiddleware`` cookie (itsdangerous-signed JSON).

    Give it the same ``secret_key``, ``session_cookie`` and ``max_age`` as the app's
    ``SessionMiddleware``.
    """

    def __init__(
        self,
        secret_key: str,
        *,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 60 * 60,
    ) -> None:
        if not secret_key:
            raise ConfigurationError("StarletteSessionReader needs the app's session secret_key")
        self._signer = itsdangerous.TimestampSigner(str(secret_key))
        self._cookie = session_cookie
        self._max_age = max_age

    async def read(self, cookies: Mapping[str, str]) -> Mapping[str, Any]:
        cookie = _usable(cookies.get(self._cookie))
        if cookie is None:
            return EMPTY
        try:
            data = self._signer.unsign(cookie.encode("utf-8"), max_age=self._max_age)
            session = json.loads(b64decode(data))
        except (itsdangerous.BadSignature, ValueError, UnicodeError):
            return EMPTY
        return session if isinstance(session, dict) else EMPTY


class QuartSessionReader:
    """Quart's signed session cookie, read with the app's own key, salt and lifetime.

    ``QuartSessionReader(app)`` follows ``app.secret_key``, ``SECRET_KEY_FALLBACKS``,
    ``SESSION_COOKIE_NAME`` and ``PERMANENT_SESSION_LIFETIME`` at read time.
    """

    def __init__(self, app: Quart) -> None:
        self._app = app

    async def read(self, cookies: Mapping[str, str]) -> Mapping[str, Any]:
        app = self._app
        cookie = _usable(cookies.get(app.config["SESSION_COOKIE_NAME"]))
        if cookie is None:
            return EMPTY
        serializer = app.session_interface.get_signing_serializer(app)
        if serializer is None:
            return EMPTY
        max_age = int(app.permanent_session_lifetime.total_seconds())
        try:
            session = serializer.loads(cookie, max_age=max_age)
        except (itsdangerous.BadSignature, ValueError, UnicodeError, KeyError, TypeError):
            return EMPTY
        return session if isinstance(session, dict) else EMPTY


class DjangoSessionReader:
    """Django's session, loaded from ``settings.SESSION_ENGINE`` by the session cookie.

    The store is synchronous (it may hit the database), so it runs in Django's
    thread-sensitive executor. A session key that the store does not know reads empty.
    """

    def __init__(self, *, cookie_name: str | None = None) -> None:
        self._cookie_name = cookie_name

    async def read(self, cookies: Mapping[str, str]) -> Mapping[str, Any]:
        from asgiref.sync import sync_to_async
        from django.conf import settings

        cookie = _usable(cookies.get(self._cookie_name or settings.SESSION_COOKIE_NAME))
        if cookie is None:
            return EMPTY
        return await sync_to_async(_load_django_session)(cookie)


def _load_django_session(session_key: str) -> Mapping[str, Any]:
    from importlib import import_module

    from django.conf import settings
    from django.db import close_old_connections

    # This runs outside Django's request cycle, which is what closes database connections
    # (and drops broken ones) around each request. Do the same here: otherwise the
    # executor thread would keep its connection forever, and once that connection went
    # stale (a database restart, a server-side idle timeout) every session would read
    # as empty and every caller would get a 401.
    close_old_connections()
    try:
        engine = import_module(settings.SESSION_ENGINE)
        return dict(engine.SessionStore(session_key).items())
    except Exception:  # a broken store answers "no session", never an error page
        logger.warning("Django's session store failed; the session reads as empty", exc_info=True)
        return EMPTY
    finally:
        close_old_connections()
