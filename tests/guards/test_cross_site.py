"""The cross-site guard, Go's CrossOriginProtection algorithm, on both POST routes."""

from __future__ import annotations

import httpx
import pytest

from oneinbox_asgi import ConfigurationError
from oneinbox_asgi.guards.cross_site import CrossSiteGuard
from oneinbox_emulator.api import EmulatorAPI

from ..apps import starlette_app
from ..support import END, START, broker, client_for, error_code

pytestmark = pytest.mark.anyio

TRUSTED = "https://partner.example"
PASS, FAIL = 201, 403

# (case, Sec-Fetch-Site, Origin, expected). The app is reached as Host: testserver.
MATRIX: list[tuple[str, str | None, str | None, int]] = [
    ("fetch-site same-origin", "same-origin", "http://testserver", PASS),
    ("same-origin wins over a foreign Origin", "same-origin", "https://evil.example", PASS),
    ("fetch-site none (typed URL, bookmark)", "none", None, PASS),
    ("fetch-site none with an Origin", "none", "https://evil.example", PASS),
    ("cross-site", "cross-site", "https://evil.example", FAIL),
    ("cross-site without Origin", "cross-site", None, FAIL),
    ("cross-site from a trusted origin", "cross-site", TRUSTED, PASS),
    ("trusted origin, other case", "cross-site", "HTTPS://Partner.Example", PASS),
    ("trusted host, other scheme", "cross-site", "http://partner.example", FAIL),
    ("trusted host, other port", "cross-site", "https://partner.example:8443", FAIL),
    ("same-site (a sibling subdomain)", "same-site", "https://shop.testserver", FAIL),
    ("same-site from a trusted origin", "same-site", TRUSTED, PASS),
    ("an unknown fetch-site value", "same-origin-ish", "http://testserver", FAIL),
    ("cross-site even with a matching Origin", "cross-site", "http://testserver", FAIL),
    ("old browser, Origin matches Host", None, "http://testserver", PASS),
    ("old browser, Origin host in other case", None, "http://TestServer", PASS),
    ("old browser, Host matches but scheme differs", None, "https://testserver", PASS),
    ("old browser, foreign Origin", None, "https://evil.example", FAIL),
    ("old browser, Origin with another port", None, "http://testserver:8080", FAIL),
    ("old browser, Origin null (sandboxed)", None, "null", FAIL),
    ("old browser, garbage Origin", None, "http://[::1", FAIL),
    ("old browser, trusted Origin", None, TRUSTED, PASS),
    ("neither header: not a browser", None, None, PASS),
    ("empty fetch-site counts as absent", "", "https://evil.example", FAIL),
    ("empty fetch-site, no Origin", "", None, PASS),
]


def headers_for(fetch_site: str | None, origin: str | None) -> dict[str, str]:
    headers = {}
    if fetch_site is not None:
        headers["Sec-Fetch-Site"] = fetch_site
    if origin is not None:
        headers["Origin"] = origin
    return headers


@pytest.mark.parametrize(
    ("fetch_site", "origin", "expected"), [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX]
)
async def test_start_call_matrix(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    fetch_site: str | None,
    origin: str | None,
    expected: int,
) -> None:
    app = starlette_app(http_client=upstream_client, trusted_origins=[TRUSTED])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        assert (await client.get("/login", params={"id": "u1"})).status_code == 200
        response = await client.post(START, json={}, headers=headers_for(fetch_site, origin))
    assert response.status_code == expected, response.text
    if expected == FAIL:
        assert error_code(response) == "cross_site"
        assert oneinbox.received == []  # nothing went upstream
    else:
        assert len(oneinbox.received) == 1


@pytest.mark.parametrize(
    ("fetch_site", "origin", "expected"), [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX]
)
async def test_end_call_matrix(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    fetch_site: str | None,
    origin: str | None,
    expected: int,
) -> None:
    app = starlette_app(http_client=upstream_client, trusted_origins=[TRUSTED])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        assert (await client.get("/login", params={"id": "u1"})).status_code == 200
        started = await client.post(START, json={})
        token = started.json()["end_token"]
        response = await client.post(
            END, json={"end_token": token}, headers=headers_for(fetch_site, origin)
        )
    stops = [r for r in oneinbox.received if r.path.endswith("/stop")]
    if expected == FAIL:
        assert response.status_code == 403, response.text
        assert error_code(response) == "cross_site"
        assert stops == []
    else:
        assert response.status_code == 200, response.text
        assert response.json() == {"ended": True}
        assert len(stops) == 1


async def test_a_forged_form_post_is_refused_either_way(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    """A form on evil.example posting to us with the victim's cookie: cross_site, or 415."""
    app = starlette_app(http_client=upstream_client)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        await client.get("/login", params={"id": "victim"})
        modern = await client.post(
            START,
            content=b"agent=x",
            headers={"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"},
        )
        old = await client.post(
            START,
            content=b"agent=x",
            headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
        )
        no_headers = await client.post(
            START, content=b"agent=x", headers={"Content-Type": "text/plain"}
        )
    assert modern.status_code == 403 and error_code(modern) == "cross_site"
    assert old.status_code == 403 and error_code(old) == "cross_site"
    assert no_headers.status_code == 415 and error_code(no_headers) == "unsupported_media_type"
    assert oneinbox.received == []


def test_first_header_value_wins() -> None:
    guard = CrossSiteGuard()
    scope = {
        "headers": [
            (b"host", b"testserver"),
            (b"sec-fetch-site", b"cross-site"),
            (b"sec-fetch-site", b"same-origin"),
        ]
    }
    assert not guard.allows(scope)


@pytest.mark.parametrize(
    "origin",
    [
        "partner.example",
        "https://partner.example/",
        "https://partner.example/path",
        "https://partner.example?q=1",
        "https://user@partner.example",
        "https://partner.example:99999",
        "https://",
    ],
)
def test_trusted_origins_must_be_bare_origins(origin: str) -> None:
    with pytest.raises(ConfigurationError, match="trusted_origins"):
        broker(trusted_origins=[origin])


def test_trusted_origins_is_not_a_single_string() -> None:
    with pytest.raises(ConfigurationError, match="trusted_origins"):
        broker(trusted_origins="https://partner.example")


PARTNER = "https://partner.example"


async def test_a_trusted_origins_preflight_is_answered_for_a_credentialed_json_post(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client, trusted_origins=[PARTNER])
    preflight = {
        "Origin": PARTNER,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "cors",
    }
    async with client_for(app) as client:
        for route in (START, END):
            answer = await client.options(route, headers=preflight)
            assert answer.status_code == 204, answer.text
            assert answer.headers["access-control-allow-origin"] == PARTNER
            assert answer.headers["access-control-allow-credentials"] == "true"
            assert answer.headers["access-control-allow-methods"] == "POST"
            assert answer.headers["access-control-allow-headers"] == "content-type"
            assert answer.headers["vary"] == "Origin"
    assert oneinbox.received == []


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "https://partner.example.evil", "null", "http://partner.example"],
)
async def test_other_origins_get_nothing_that_lets_a_browser_through(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, origin: str
) -> None:
    app = broker(http_client=upstream_client, trusted_origins=[PARTNER])
    cross = {"Origin": origin, "Sec-Fetch-Site": "cross-site"}
    async with client_for(app, "u1") as client:
        preflight = await client.options(
            START, headers={**cross, "Access-Control-Request-Method": "POST"}
        )
        post = await client.post(START, json={}, headers=cross)
    for answer in (preflight, post):
        assert not any(name.startswith("access-control-") for name in answer.headers)
    assert preflight.status_code == 405
    assert post.status_code == 403 and error_code(post) == "cross_site"
    assert oneinbox.received == []


async def test_a_trusted_origins_post_is_readable_with_credentials(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client, trusted_origins=[PARTNER])
    cross = {"Origin": PARTNER, "Sec-Fetch-Site": "cross-site"}
    async with client_for(app, "u1") as client:
        started = await client.post(START, json={}, headers=cross)
        refused = await client.post(START, json={}, headers=cross)  # at the cap: still readable
        ended = await client.post(
            END, json={"end_token": started.json()["end_token"]}, headers=cross
        )
    assert [started.status_code, refused.status_code, ended.status_code] == [201, 429, 200]
    for answer in (started, refused, ended):
        assert answer.headers["access-control-allow-origin"] == PARTNER
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert answer.headers["vary"] == "Origin"
