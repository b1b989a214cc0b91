"""The session readers against cookies the real frameworks write, and every kind of bad one.

Each case crafts its framework's cookie the way the framework does (same signer, salt,
serializer), so a crafted cookie that reads as the session proves the craft; the bad
cookies then differ from a good one in one thing only: a changed payload, an old
timestamp, another secret, another framework's format, or too many bytes. Each of
those reads as an empty session, so the visitor gets 401 and nothing goes upstream.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from quart import Quart

from oneinbox_asgi import (
    DjangoSessionReader,
    QuartSessionReader,
    SessionReader,
    StarletteSessionReader,
)
from oneinbox_asgi.sessions import MAX_COOKIE_BYTES
from oneinbox_emulator.api import EmulatorAPI

from ..support import START, client_for, error_code
from . import django_site, quart_host, starlette_host
from .support import OTHER_SECRET, USER, aged_signer, starlette_cookie, tampered

pytestmark = pytest.mark.anyio

OLDER_THAN_ANY_DEFAULT = 32 * 24 * 60 * 60  # Starlette: 14 days, Django: 14, Quart: 31


def quart_cookie(session: object, *, secret: str = quart_host.SECRET, age: int = 0) -> str:
    """What Quart's ``SecureCookieSessionInterface`` writes, with the app's own serializer."""
    app = Quart(__name__)
    app.secret_key = secret
    serializer = app.session_interface.get_signing_serializer(app)
    serializer.signer = aged_signer(age)
    return str(serializer.dumps(session))


def django_signed_cookie(
    session: object, *, secret: str = django_site.SECRET_KEY, age: int = 0
) -> str:
    """What Django's ``signed_cookies`` session engine writes."""
    from django.core import signing
    from django.core.signing import JSONSerializer

    class Aged(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - age)

    signer = Aged(key=secret, salt="django.contrib.sessions.backends.signed_cookies")
    return signer.sign_object(session, serializer=JSONSerializer, compress=True)


def _django_db_session(session: Mapping[str, Any], age: int) -> str:
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection

    try:
        store = SessionStore()
        store.update(session)
        store.set_expiry(-age if age else None)
        store.save()
        assert store.session_key is not None
        return store.session_key
    finally:
        connection.close()


class Case:
    """One reader, its host app, and how to write its framework's cookie."""

    cookie_name = "session"
    has_secret = True

    def reader(self) -> SessionReader:
        raise NotImplementedError

    def app(self, upstream_client: httpx.AsyncClient) -> Any:
        raise NotImplementedError

    @contextmanager
    def active(self) -> Iterator[None]:
        yield

    async def craft(self, session: Any, *, secret: str | None = None, age: int = 0) -> str:
        raise NotImplementedError

    async def foreign(self, session: Any) -> str:
        """A good cookie of another framework, signed with this one's secret."""
        raise NotImplementedError


class StarletteCase(Case):
    def reader(self) -> SessionReader:
        return StarletteSessionReader(starlette_host.SECRET)

    def app(self, upstream_client: httpx.AsyncClient) -> Any:
        return starlette_host.make_app(
            session_outside=False, session=self.reader(), http_client=upstream_client
        )

    async def craft(self, session: Any, *, secret: str | None = None, age: int = 0) -> str:
        return starlette_cookie(session, secret=secret or starlette_host.SECRET, age=age)

    async def foreign(self, session: Any) -> str:
        return quart_cookie(session, secret=starlette_host.SECRET)


class QuartCase(Case):
    def reader(self) -> SessionReader:
        return QuartSessionReader(quart_host.make_app())

    def app(self, upstream_client: httpx.AsyncClient) -> Any:
        return quart_host.make_app(http_client=upstream_client)

    async def craft(self, session: Any, *, secret: str | None = None, age: int = 0) -> str:
        return quart_cookie(session, secret=secret or quart_host.SECRET, age=age)

    async def foreign(self, session: Any) -> str:
        return starlette_cookie(session, secret=quart_host.SECRET)


class DjangoSignedCookiesCase(Case):
    cookie_name = "sessionid"

    def reader(self) -> SessionReader:
        return DjangoSessionReader()

    def app(self, upstream_client: httpx.AsyncClient) -> Any:
        return django_site.make_app(http_client=upstream_client)

    @contextmanager
    def active(self) -> Iterator[None]:
        with django_site.engine("signed_cookies"):
            yield

    async def craft(self, session: Any, *, secret: str | None = None, age: int = 0) -> str:
        return django_signed_cookie(session, secret=secret or django_site.SECRET_KEY, age=age)

    async def foreign(self, session: Any) -> str:
        return starlette_cookie(session, secret=django_site.SECRET_KEY)


class DjangoDatabaseCase(DjangoSignedCookiesCase):
    """Sessions in the database: the cookie is a key, not signed data."""

    has_secret = False

    @contextmanager
    def active(self) -> Iterator[None]:
        with django_site.engine("db"):
            yield

    async def craft(self, session: Any, *, secret: str | None = None, age: int = 0) -> str:
        if secret is not None:  # a key from another site's store: unknown here
            return secrets.token_hex(16)
        return str(await sync_to_async(_django_db_session)(session, age))


CASES: dict[str, type[Case]] = {
    "starlette": StarletteCase,
    "quart": QuartCase,
    "django_signed_cookies": DjangoSignedCookiesCase,
    "django_db": DjangoDatabaseCase,
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    chosen = CASES[request.param]()
    if request.param.startswith("django"):
        request.getfixturevalue("django")
    with chosen.active():
        yield chosen


async def bad_cookie(case: Case, kind: str) -> str:
    if kind == "tampered":
        return tampered(await case.craft(USER))
    if kind == "expired":
        return await case.craft(USER, age=OLDER_THAN_ANY_DEFAULT)
    if kind == "another_secret":
        return await case.craft(USER, secret=OTHER_SECRET)
    if kind == "another_framework":
        return await case.foreign(USER)
    assert kind == "oversize"
    if not case.has_secret:  # the cookie is only a key: an oversize one is not ours
        return secrets.token_hex(MAX_COOKIE_BYTES)
    cookie = await case.craft({**USER, "padding": secrets.token_hex(MAX_COOKIE_BYTES)})
    assert len(cookie) > MAX_COOKIE_BYTES
    return cookie


BAD = ["tampered", "expired", "another_secret", "another_framework", "oversize"]


async def test_a_crafted_cookie_reads_as_the_session(case: Case) -> None:
    """The control: the craft writes what the framework reads."""
    cookie = await case.craft(USER)
    assert dict(await case.reader().read({case.cookie_name: cookie})) == USER
    assert dict(await case.reader().read({"unrelated": cookie})) == {}


async def test_the_frameworks_own_login_cookie_gets_a_call(
    case: Case, oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = case.app(upstream_client)
    async with client_for(app) as client:
        logged_in = await client.get("/login", params={"id": "u9", "name": "Ines"})
        assert logged_in.status_code == 200
        cookie = client.cookies[case.cookie_name]
        assert dict(await case.reader().read({case.cookie_name: cookie}))["user"] == {
            "id": "u9",
            "name": "Ines",
        }
        response = await client.post(START, json={})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("kind", BAD)
async def test_a_bad_cookie_reads_as_an_empty_session(case: Case, kind: str) -> None:
    cookie = await bad_cookie(case, kind)
    assert dict(await case.reader().read({case.cookie_name: cookie})) == {}


@pytest.mark.parametrize("kind", BAD)
async def test_a_bad_cookie_is_a_401_and_nothing_goes_upstream(
    case: Case, kind: str, oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    cookie = await bad_cookie(case, kind)
    async with client_for(case.app(upstream_client)) as client:
        client.cookies.set(case.cookie_name, cookie)
        response = await client.post(START, json={})
    assert response.status_code == 401, response.text
    assert error_code(response) == "unauthorized"
    assert oneinbox.received == []


@pytest.mark.parametrize("reader", ["starlette", "quart"])
async def test_signed_data_that_is_not_an_object_reads_as_empty(reader: str) -> None:
    case = CASES[reader]()
    cookie = await case.craft(["user", "u1"])
    assert dict(await case.reader().read({case.cookie_name: cookie})) == {}


async def test_the_quart_reader_follows_the_apps_config_when_it_reads() -> None:
    app = quart_host.make_app()
    reader = QuartSessionReader(app)
    old = quart_cookie(USER, secret="the-old-key")
    aged = quart_cookie(USER, age=2 * 60 * 60)
    assert dict(await reader.read({"session": old})) == {}
    app.config["SECRET_KEY_FALLBACKS"] = ["the-old-key"]  # a rotated key still reads
    assert dict(await reader.read({"session": old})) == USER
    assert dict(await reader.read({"session": aged})) == USER
    app.permanent_session_lifetime = timedelta(hours=1)
    assert dict(await reader.read({"session": aged})) == {}
    app.config["SESSION_COOKIE_NAME"] = "host_session"
    fresh = quart_cookie(USER)
    assert dict(await reader.read({"session": fresh})) == {}
    assert dict(await reader.read({"host_session": fresh})) == USER


async def test_the_starlette_reader_follows_the_middlewares_settings() -> None:
    secret = starlette_host.SECRET
    good = starlette_cookie(USER, secret=secret)
    aged = starlette_cookie(USER, secret=secret, age=2 * 60 * 60)
    ancient = starlette_cookie(USER, secret=secret, age=10**8)
    named = StarletteSessionReader(secret, session_cookie="sid", max_age=3600)
    assert dict(await named.read({"sid": aged})) == {}
    assert dict(await named.read({"session": good})) == {}
    assert dict(await named.read({"sid": good})) == USER
    forever = StarletteSessionReader(secret, max_age=None)
    assert dict(await forever.read({"session": ancient})) == USER


class SessionStore:
    """A Django session engine (``SESSION_ENGINE`` = this module) whose database is down."""

    def __init__(self, session_key: str | None = None) -> None:
        self.session_key = session_key

    def items(self) -> Any:
        from django.db import OperationalError

        raise OperationalError("the database is down")


@pytest.mark.usefixtures("django")
async def test_a_broken_django_store_reads_as_empty_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django.test import override_settings

    with override_settings(SESSION_ENGINE=__name__):
        session = await DjangoSessionReader().read({"sessionid": "k" * 32})
    assert dict(session) == {}
    assert "session store failed" in caplog.text
    assert "the database is down" in caplog.text


def test_no_framework_is_imported_until_its_reader_reads() -> None:
    """A Quart app never imports Django, an app without Litestar never imports Litestar."""
    script = (
        "import asyncio, sys\n"
        "import oneinbox_asgi.integrations\n"
        "from oneinbox_asgi import DjangoSessionReader, OneInboxMiddleware, "
        "StarletteSessionReader, allow_anonymous\n"
        "reader = StarletteSessionReader('secret')\n"
        "asyncio.run(reader.read({'session': 'not-signed'}))\n"
        "DjangoSessionReader()\n"
        "OneInboxMiddleware(lambda *a: None, api_key='k', agent_id='a', session=reader,\n"
        "                   authorize=allow_anonymous)\n"
        "frameworks = ('django', 'quart', 'flask', 'litestar', 'fastapi')\n"
        "print(sorted(name for name in frameworks if name in sys.modules))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
