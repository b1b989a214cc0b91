"""The session readers of the Falcon and BlackSheep examples, against good and bad cookies.

Falcon has no session of its own and BlackSheep's lives inside its own pipeline, so
their examples bring a reader (``SignedCookieSession``, ``BlackSheepSessionReader``).
As for the package's readers (``test_session_readers.py``), each cookie is crafted the
way the app writes it, a crafted good one must read as the session (that proves the
craft), and every bad one (changed payload, old timestamp, another secret, another
framework's format, too many bytes, signed data that is not an object) reads as an empty
session: 401, nothing upstream.
"""

from __future__ import annotations

import json
import secrets
from base64 import b64encode
from typing import Any

import httpx
import itsdangerous
import pytest
from blacksheep.sessions.cookies import CookieSessionStore

from examples.blacksheep_app import BlackSheepSessionReader
from examples.blacksheep_app import blacksheep_app as blacksheep_host
from examples.falcon_app import SignedCookieSession
from examples.falcon_app import falcon_app as falcon_host
from oneinbox_asgi import OneInboxMiddleware, SessionReader
from oneinbox_emulator.api import EmulatorAPI

from ..support import START, client_for, error_code
from .support import OTHER_SECRET, USER, aged_signer, options, starlette_cookie, tampered

pytestmark = pytest.mark.anyio

SECRET = "example-reader-secret-0123456789"
MAX_AGE = 14 * 86400


def falcon_cookie(data: object, *, secret: str = SECRET, age: int = 0) -> str:
    """What the Falcon example's login writes (``SignedCookieSession.save``)."""
    serializer = itsdangerous.URLSafeTimedSerializer(
        secret, salt="falcon-session", signer=aged_signer(age)
    )
    return str(serializer.dumps(data))


def blacksheep_cookie(data: object, *, secret: str = SECRET, age: int = 0) -> str:
    """What BlackSheep's ``CookieSessionStore`` writes: signed base64 of the JSON."""
    serializer = itsdangerous.URLSafeTimedSerializer(secret, signer=aged_signer(age))
    return str(serializer.dumps(b64encode(json.dumps(data).encode()).decode()))


READERS: dict[str, tuple[Any, Any, Any]] = {
    # name: (reader factory, host app, cookie craft)
    "falcon": (lambda: SignedCookieSession(SECRET, max_age=MAX_AGE), falcon_host, falcon_cookie),
    "blacksheep": (
        lambda: BlackSheepSessionReader(CookieSessionStore(SECRET, session_max_age=MAX_AGE)),
        blacksheep_host,
        blacksheep_cookie,
    ),
}


def bad_cookie(name: str, kind: str) -> str:
    craft = READERS[name][2]
    if kind == "tampered":
        return tampered(craft(USER))
    if kind == "expired":
        return str(craft(USER, age=MAX_AGE + 60))
    if kind == "another_secret":
        return str(craft(USER, secret=OTHER_SECRET))
    if kind == "another_framework":
        return starlette_cookie(USER, secret=SECRET)
    if kind == "not_an_object":
        return str(craft(["user", "u1"]))
    assert kind == "oversize"
    cookie = str(craft({**USER, "padding": secrets.token_hex(4096)}))
    assert len(cookie) > 4096
    return cookie


BAD = ["tampered", "expired", "another_secret", "another_framework", "not_an_object", "oversize"]


@pytest.mark.parametrize("name", sorted(READERS))
async def test_a_crafted_cookie_reads_as_the_session(name: str) -> None:
    reader: SessionReader = READERS[name][0]()
    assert isinstance(reader, SessionReader)
    cookie = READERS[name][2](USER)
    assert dict(await reader.read({"session": cookie})) == USER
    assert dict(await reader.read({"theme": "dark", "session": cookie})) == USER
    assert dict(await reader.read({"unrelated": cookie})) == {}


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("name", sorted(READERS))
async def test_a_bad_cookie_reads_as_an_empty_session(name: str, kind: str) -> None:
    reader = READERS[name][0]()
    assert dict(await reader.read({"session": bad_cookie(name, kind)})) == {}


@pytest.mark.parametrize("kind", ["good", *BAD])
@pytest.mark.parametrize("name", sorted(READERS))
async def test_the_example_app_answers_by_the_cookie(
    name: str, kind: str, oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    factory, host, craft = READERS[name]
    app = OneInboxMiddleware(host, session=factory(), **options(http_client=upstream_client))
    cookie = craft(USER) if kind == "good" else bad_cookie(name, kind)
    async with client_for(app) as client:
        client.cookies.set("session", cookie)
        response = await client.post(START, json={})
    if kind == "good":
        assert response.status_code == 201, response.text
        call = oneinbox.registry.get(response.json()["call_id"])
        assert call is not None and call.variables == {"customer_name": "Grace"}
    else:
        assert response.status_code == 401, response.text
        assert error_code(response) == "unauthorized"
        assert oneinbox.received == []
