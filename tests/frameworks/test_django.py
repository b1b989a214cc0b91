"""Django: ``application = OneInboxMiddleware(get_asgi_application(), ...)``.

Django's session lives inside its handler, after we have run, so the broker loads it
from ``settings.SESSION_ENGINE`` by the session cookie with ``DjangoSessionReader()``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from asgiref.sync import sync_to_async

from oneinbox_emulator.api import EmulatorAPI

from ..servers import serve
from ..support import START, client_for
from . import django_site
from .django_site import make_app
from .support import (
    assert_call_for,
    assert_visitor_is_refused,
    assert_widget_has_no_cookie,
    login,
    real_http_round_trip,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("django")]


@pytest.fixture
def db_sessions() -> Iterator[None]:
    with django_site.engine("db"):
        yield


@pytest.mark.parametrize("engine", sorted(django_site.ENGINES))
async def test_logged_in_user_gets_a_call_with_their_name(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, engine: str
) -> None:
    with django_site.engine(engine):
        app = make_app(http_client=upstream_client)
        async with client_for(app) as client:
            await login(client, "u1", "Grace")
            await assert_call_for(client, oneinbox, "u1", "Grace")
            await assert_widget_has_no_cookie(client)


async def test_visitor_without_session_gets_401(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, db_sessions: None
) -> None:
    await assert_visitor_is_refused(make_app(http_client=upstream_client), oneinbox)


async def test_host_routes_still_work(
    upstream_client: httpx.AsyncClient, db_sessions: None
) -> None:
    app = make_app(http_client=upstream_client)
    async with client_for(app) as client:
        home = await client.get("/")
        lookalike = await client.get("/oneinboxer")
        item = await client.get("/oneinboxer/7")
        missing = await client.get("/oneinbox")
    assert home.text == "host app at /"
    assert lookalike.text == "host app at /oneinboxer"
    assert item.text == "item 7"
    assert missing.status_code == 404 and "Not Found" in missing.text  # Django's own page


async def test_without_the_reader_djangos_session_is_not_seen(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, db_sessions: None
) -> None:
    app = make_app(reader=False, http_client=upstream_client)
    async with client_for(app) as client:
        await login(client, "u2", "Ada")
        response = await client.post(START, json={})
    assert response.status_code == 401
    assert oneinbox.received == []


async def test_the_reader_closes_its_database_connection_like_a_request_does(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, db_sessions: None
) -> None:
    """The reader runs outside Django's request cycle, which closes connections.

    A connection kept forever in the reader's thread would, once stale (a database
    restart, an idle timeout), make every session read empty: every caller a 401.
    """
    from django.db import connection

    app = make_app(http_client=upstream_client)
    async with client_for(app) as client:
        await login(client, "u3", "Ada")
        await assert_call_for(client, oneinbox, "u3", "Ada")
    # The reader's work ran in asgiref's thread-sensitive executor; look there.
    assert await sync_to_async(lambda: connection.connection)() is None


def test_over_real_http(oneinbox: EmulatorAPI, db_sessions: None) -> None:
    with serve(oneinbox) as upstream:
        broker = make_app(base_url=upstream)
        real_http_round_trip(broker, oneinbox, name="Lin")
    # Django refuses the lifespan; the middleware answers it and closed its own client.
    assert not broker.upstream.is_open
