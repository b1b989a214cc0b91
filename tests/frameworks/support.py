"""What every framework's tests share: the hooks, the options, and the contract's checks
(the routes, clients and error shape are tests/support.py's).

Each framework has its own host app (a home page, a lookalike path, a path with a
parameter, and a login that stores ``{"id", "name"}`` in the framework's own session),
built in starlette_host.py, quart_host.py or django_site.py (which several test modules
use) or else in the framework's test module, and proves the same three things with it:
a logged-in user gets a call whose variables carry their name, a visitor gets 401 with
nothing sent upstream, and the host's own routes still answer.
"""

from __future__ import annotations

import json
import time
from base64 import b64encode
from collections.abc import Callable
from typing import Any

import httpx
import itsdangerous

from oneinbox_emulator.api import EmulatorAPI

from .. import support
from ..apps import authorize, variables
from ..servers import serve
from ..support import START, UNLIMITED, WIDGET, client_for, error_code


def options(**extra: Any) -> dict[str, Any]:
    """The middleware's options for a framework's host app: the test key and agent, callers
    and their variables from the host's session (tests/apps.py), the per-caller limits off;
    ``extra`` wins."""
    return support.options(**{"authorize": authorize, "variables": variables, **UNLIMITED, **extra})


# -- crafted session cookies (the readers' tests) -------------------------------------------

USER = {"user": {"id": "u1", "name": "Grace"}}
OTHER_SECRET = "a-secret-from-somewhere-else"


def aged_signer(age: int) -> type[itsdangerous.TimestampSigner]:
    """An itsdangerous signer whose signatures are ``age`` seconds old."""

    class Aged(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    return Aged


def starlette_cookie(session: object, *, secret: str, age: int = 0) -> str:
    """What Starlette's ``SessionMiddleware`` writes: signed base64 JSON."""
    data = b64encode(json.dumps(session).encode())
    return aged_signer(age)(secret).sign(data).decode()


def tampered(cookie: str) -> str:
    """The payload changed, the signature kept (the first character always carries data)."""
    return ("B" if cookie[0] == "A" else "A") + cookie[1:]


async def login(client: httpx.AsyncClient, user_id: str, name: str) -> None:
    response = await client.get("/login", params={"id": user_id, "name": name})
    assert response.status_code == 200, response.text
    assert "set-cookie" in response.headers


async def assert_call_for(
    client: httpx.AsyncClient, oneinbox: EmulatorAPI, user_id: str, name: str
) -> None:
    """POST start-call as the client's user: 201, and the call carries their name."""
    response = await client.post(START, json={})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    call = oneinbox.registry.get(response.json()["call_id"])
    assert call is not None
    assert call.variables == {"customer_name": name}
    assert call.metadata["caller"] == user_id


async def assert_visitor_is_refused(app: Any, oneinbox: EmulatorAPI) -> None:
    """No session: 401 ``unauthorized`` and nothing sent upstream."""
    async with client_for(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == 401, response.text
    assert error_code(response) == "unauthorized"
    assert oneinbox.received == []


async def assert_widget_has_no_cookie(client: httpx.AsyncClient) -> None:
    """The widget's loader is publicly cacheable: it must never carry a ``Set-Cookie``."""
    response = await client.get(WIDGET)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "public" in response.headers["cache-control"]
    assert "set-cookie" not in response.headers


def real_http_round_trip(
    app: Any,
    oneinbox: EmulatorAPI,
    *,
    name: str,
    log_in: Callable[[httpx.Client], None] | None = None,
    lifespan: str = "auto",
) -> None:
    """Over loopback HTTP (uvicorn): host page, 401 for a visitor, 201 after the login."""
    with serve(app, lifespan=lifespan) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/").text == "host app at /"
        visitor = httpx.post(url + START, json={}, timeout=10)
        assert visitor.status_code == 401 and error_code(visitor) == "unauthorized"
        if log_in is None:
            login_response = client.get("/login", params={"id": "u-http", "name": name})
            assert login_response.status_code == 200, login_response.text
        else:
            log_in(client)
        response = client.post(START, json={})
        assert response.status_code == 201, response.text
    call = oneinbox.registry.get(response.json()["call_id"])
    assert call is not None and call.variables == {"customer_name": name}
