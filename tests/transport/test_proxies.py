"""Environment proxies: both transports send through the proxy httpx would choose.

``proxy_for`` (which the aiohttp transport asks) decides as httpx does for a table of
environments; then, through a real forwarding proxy on loopback, a create through
``OneInboxClient`` with each transport, and one through the middleware's own default
transport (the old fast path ignored proxies), arrives through the proxy, or directly
when ``NO_PROXY`` says so; a proxy that refuses connections is ``upstream_unavailable``."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette

from oneinbox_asgi import OneInboxMiddleware, allow_anonymous
from oneinbox_asgi.transport import NotSent
from oneinbox_asgi.transport.proxies import proxy_for
from oneinbox_asgi.upstream import OneInboxClient, UpstreamUnavailable

from ..reliability.faulty_upstream import FaultyUpstream
from ..support import AGENT_ID, API_KEY, START, UNLIMITED, error_code
from .support import TRANSPORTS, ForwardingProxy, basic, forwarding_proxy, make_transport

pytestmark = pytest.mark.anyio

TIMEOUT = 1.0
P = "http://proxy.test:3128"
A = "http://all.test:1080"

# -- the same decision as httpx ----------------------------------------------------------

PARITY: list[tuple[dict[str, str], str]] = [
    ({}, "https://api.oneinbox.ai/v1/calls/web"),
    ({"HTTP_PROXY": P}, "http://api.example.com/v1"),
    ({"HTTP_PROXY": P}, "https://api.example.com/v1"),
    ({"http_proxy": P}, "http://api.example.com/v1"),
    ({"HTTPS_PROXY": P}, "https://api.example.com/v1"),
    ({"HTTPS_PROXY": P}, "http://api.example.com/v1"),
    ({"ALL_PROXY": A}, "https://api.example.com/v1"),
    ({"all_proxy": A}, "http://api.example.com/v1"),
    ({"ALL_PROXY": A, "HTTP_PROXY": P}, "http://api.example.com/v1"),
    ({"ALL_PROXY": A, "HTTP_PROXY": P}, "https://api.example.com/v1"),
    ({"HTTP_PROXY": "proxy.local:3128"}, "http://api.example.com/v1"),
    ({"HTTP_PROXY": "proxy.local"}, "http://api.example.com/v1"),
    ({"HTTP_PROXY": "http://user:pw@proxy.local:3128"}, "http://api.example.com/v1"),
    ({"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:2"}, "http://x.test/"),
    ({"HTTP_PROXY": ""}, "http://api.example.com/v1"),
    ({"HTTP_PROXY": P, "NO_PROXY": "*"}, "http://api.example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "a.test,*"}, "http://api.example.com/"),
    ({"ALL_PROXY": A, "NO_PROXY": "*"}, "https://api.example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com"}, "http://example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com"}, "http://api.example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com"}, "http://a.b.example.com:8080/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com"}, "http://notexample.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com"}, "http://example.com.evil.test/"),
    ({"HTTP_PROXY": P, "NO_PROXY": ".example.com"}, "http://example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": ".example.com"}, "http://api.example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": ".example.com"}, "http://notexample.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "*.example.com"}, "http://api.example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": " a.test , Example.COM "}, "http://API.example.com/"),
    ({"HTTP_PROXY": P, "no_proxy": "example.com"}, "http://example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com."}, "http://example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com"}, "http://example.com./"),
    ({"HTTP_PROXY": P, "NO_PROXY": "127.0.0.1"}, "http://127.0.0.1:8080/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "127.0.0.1"}, "http://127.0.0.2/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "127.0.0.1:8080"}, "http://127.0.0.1:8080/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "127.0.0.1:8080"}, "http://127.0.0.1:9090/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com:8080"}, "http://example.com:8080/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com:8080"}, "http://example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "example.com:80"}, "http://example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "10.0.0.0/8"}, "http://10.1.2.3/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "10.0.0.0/8"}, "http://10.0.0.0/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "::1"}, "http://[::1]:8080/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "localhost"}, "http://localhost:8080/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "LOCALHOST"}, "http://localhost:8080/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "localhost"}, "http://a.localhost:8080/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "localhost"}, "http://127.0.0.1:8080/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "http://example.com"}, "http://example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "http://example.com"}, "http://api.example.com/"),
    ({"HTTPS_PROXY": P, "NO_PROXY": "http://example.com"}, "https://example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "all://*.example.com"}, "http://api.example.com/"),
    ({"HTTP_PROXY": P, "NO_PROXY": "http://"}, "http://api.example.com/"),
]


TLS = ssl.create_default_context()


def httpx_choice(url: str) -> str | None:
    """The proxy an httpx client made now mounts for ``url`` (None: it connects directly)."""
    client = httpx.AsyncClient(verify=TLS)  # one TLS context: making one costs ~0.1 s
    chosen = client._transport_for_url(httpx.URL(url))
    if chosen is client._transport:
        return None
    proxy = chosen._pool._proxy_url  # type: ignore[attr-defined]
    return normal(f"{proxy.scheme.decode()}://{proxy.host.decode()}:{proxy.port or ''}")


def normal(proxy: str | None) -> str | None:
    if proxy is None:
        return None
    url = httpx.URL(proxy)
    port = url.port or {"http": 80, "https": 443}[url.scheme]
    return f"{url.scheme}://{url.host}:{port}"


def case_id(environment: dict[str, str], url: str) -> str:
    return " ".join(f"{k}={v}" for k, v in environment.items()) + f" {url}"


@pytest.mark.parametrize(("environment", "url"), PARITY, ids=[case_id(*case) for case in PARITY])
def test_proxy_for_decides_as_httpx_does(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], url: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    ours = proxy_for(url)
    assert normal(ours) == httpx_choice(url)
    if ours is not None:
        assert "://" in ours


def test_a_proxy_keeps_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw@proxy.local:3128")
    assert proxy_for("http://api.example.com/") == "http://user:pw@proxy.local:3128"
    monkeypatch.setenv("HTTP_PROXY", "user:pw@proxy.local:3128")
    assert proxy_for("http://api.example.com/") == "http://user:pw@proxy.local:3128"


# -- through a real proxy ----------------------------------------------------------------


@pytest.fixture
def proxy() -> Iterator[tuple[ForwardingProxy, str]]:
    with forwarding_proxy() as served:
        yield served


async def create_through(kind: str, url: str) -> str:
    """A create with a transport of ``kind`` made now (after the environment was set)."""
    transport = make_transport(kind)
    try:
        client = OneInboxClient(api_key=API_KEY, base_url=url, timeout=TIMEOUT, transport=transport)
        call = await client.create_web_call(AGENT_ID, variables={}, metadata={})
    finally:
        await transport.aclose()
    return call.call_id


def proxied_environments(proxy_url: str) -> list[dict[str, str]]:
    hostport = proxy_url.removeprefix("http://")
    return [
        {"HTTP_PROXY": proxy_url},
        {"http_proxy": proxy_url},
        {"ALL_PROXY": proxy_url},
        {"HTTP_PROXY": hostport},  # no scheme: http://
        {"HTTP_PROXY": proxy_url, "NO_PROXY": "localhost,example.com,127.0.0.2"},
    ]


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_create_goes_through_the_environment_proxy(
    monkeypatch: pytest.MonkeyPatch,
    upstream: tuple[FaultyUpstream, str],
    proxy: tuple[ForwardingProxy, str],
    kind: str,
) -> None:
    fake, url = upstream
    forwarder, proxy_url = proxy
    for number, environment in enumerate(proxied_environments(proxy_url), 1):
        with monkeypatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            assert await create_through(kind, url) == "call_good"
        assert forwarder.forwarded == [f"POST {url}/v1/calls/web"] * number, environment
        assert fake.requests == number, environment
    # The proxy was given the absolute URL; OneInbox got the path, and the key once.
    assert all(head.startswith(b"POST /v1/calls/web HTTP/1.1\r\n") for head in fake.heads)
    assert forwarder.proxy_authorization == [None] * len(forwarder.forwarded)


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize(
    "bypass",
    [
        {"NO_PROXY": "127.0.0.1"},
        {"no_proxy": "127.0.0.1"},
        {"NO_PROXY": "example.com, 127.0.0.1"},
        {"NO_PROXY": "*"},
        {"HTTPS_PROXY": "<proxy>", "HTTP_PROXY": ""},  # only https is proxied
    ],
)
async def test_no_proxy_connects_directly(
    monkeypatch: pytest.MonkeyPatch,
    upstream: tuple[FaultyUpstream, str],
    proxy: tuple[ForwardingProxy, str],
    kind: str,
    bypass: dict[str, str],
) -> None:
    fake, url = upstream
    forwarder, proxy_url = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    for name, value in bypass.items():
        monkeypatch.setenv(name, value.replace("<proxy>", proxy_url))
    assert await create_through(kind, url) == "call_good"
    assert forwarder.forwarded == []
    assert fake.requests == 1


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_credentials_in_the_proxy_url_go_to_the_proxy_only(
    monkeypatch: pytest.MonkeyPatch,
    upstream: tuple[FaultyUpstream, str],
    proxy: tuple[ForwardingProxy, str],
    kind: str,
) -> None:
    fake, url = upstream
    forwarder, proxy_url = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url.replace("http://", "http://ada:s3cret@"))
    assert await create_through(kind, url) == "call_good"
    assert forwarder.proxy_authorization == [basic("ada", "s3cret")]
    assert b"proxy-authorization" not in fake.heads[0].lower()


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_proxy_that_refuses_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
    upstream: tuple[FaultyUpstream, str],
    closed_port: int,
    kind: str,
) -> None:
    fake, url = upstream
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    transport = make_transport(kind)
    try:
        with pytest.raises(NotSent):
            await transport.send("GET", url + "/v1/calls/x", headers={}, body=None, seconds=1)
    finally:
        await transport.aclose()
    began = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        await create_through(kind, url)
    assert time.monotonic() - began < TIMEOUT
    assert fake.requests == 0


# -- the middleware's own transport ------------------------------------------------------


async def start_through_middleware(url: str) -> httpx.Response:
    middleware = OneInboxMiddleware(
        Starlette(),
        api_key=API_KEY,
        agent_id=AGENT_ID,
        authorize=allow_anonymous,
        base_url=url,
        timeout=TIMEOUT,
        **UNLIMITED,
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=middleware), base_url="http://app"
        ) as client:
            return await client.post(START, json={})
    finally:
        await middleware.aclose()


async def test_the_middleware_default_transport_honours_http_proxy(
    monkeypatch: pytest.MonkeyPatch,
    upstream: tuple[FaultyUpstream, str],
    proxy: tuple[ForwardingProxy, str],
) -> None:
    fake, url = upstream
    forwarder, proxy_url = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    response = await start_through_middleware(url)
    assert response.status_code == 201, response.text
    assert response.json()["call_id"] == "call_good"
    assert forwarder.forwarded == [f"POST {url}/v1/calls/web"]
    assert fake.requests == 1


async def test_the_middleware_default_transport_honours_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
    upstream: tuple[FaultyUpstream, str],
    proxy: tuple[ForwardingProxy, str],
) -> None:
    fake, url = upstream
    forwarder, proxy_url = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    response = await start_through_middleware(url)
    assert response.status_code == 201, response.text
    assert forwarder.forwarded == []
    assert fake.requests == 1


async def test_the_middleware_with_a_refusing_proxy_is_503(
    monkeypatch: pytest.MonkeyPatch, upstream: tuple[FaultyUpstream, str], closed_port: int
) -> None:
    fake, url = upstream
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    response = await start_through_middleware(url)
    assert response.status_code == 503
    assert error_code(response) == "upstream_unavailable"
    assert fake.requests == 0
