"""Every way OneInbox can fail maps to the contract's status and code; the key never leaks."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from oneinbox_asgi import OneInboxMiddleware, allow_anonymous
from oneinbox_emulator.api import EmulatorAPI

from .apps import starlette_app
from .support import API_KEY, START, error_code, logged_in

pytestmark = pytest.mark.anyio

FAULTS: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "key rejected 401",
        {"status": 401, "body": b'{"detail": "Invalid API key"}'},
        502,
        "upstream_auth",
    ),
    ("key rejected 403", {"status": 403, "body": b"{}"}, 502, "upstream_auth"),
    ("agent not found", {"status": 404, "body": b""}, 502, "upstream_agent_not_found"),
    (
        "validation 422",
        {"status": 422, "body": b'{"detail": [{"loc": ["body"], "msg": "x"}]}'},
        502,
        "upstream_error",
    ),
    ("server error 500", {"status": 500, "body": b"<html>oops</html>"}, 502, "upstream_error"),
    ("bad gateway 502", {"status": 502, "body": b""}, 502, "upstream_error"),
    (
        "html 201",
        {"body": b"<html>hello</html>", "content_type": "text/html"},
        502,
        "upstream_error",
    ),
    ("truncated json", {"body": b'{"id": "call_1", "server_url": "wss://x'}, 502, "upstream_error"),
    ("json array", {"body": b"[]"}, 502, "upstream_error"),
    ("no token", {"body": b'{"id": "call_1", "server_url": "wss://x"}'}, 502, "upstream_error"),
    ("oversize answer", {"body": b'{"pad": "' + b"x" * 100_000 + b'"}'}, 502, "upstream_error"),
]


@pytest.mark.parametrize(
    ("fault", "status", "code"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
async def test_upstream_answers_map_to_the_contract(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, Any],
    status: int,
    code: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    oneinbox.misbehave(**fault)
    app = starlette_app(http_client=upstream_client)
    async with logged_in(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert API_KEY not in response.text
    assert API_KEY not in caplog.text
    assert "call failed" in caplog.text


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("17", "17"), (None, "5"), ("Wed, 21 Oct 2015 07:28:00 GMT", "0")],
)
async def test_upstream_429_is_503_with_retry_after(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    retry_after: str | None,
    expected: str,
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    oneinbox.misbehave(status=429, headers=headers)
    app = starlette_app(http_client=upstream_client)
    async with logged_in(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == 503
    assert error_code(response) == "upstream_busy"
    assert response.headers["retry-after"] == expected


async def test_slow_upstream_is_504_within_the_timeout(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    oneinbox.misbehave(hang=True)
    app = starlette_app(http_client=upstream_client, timeout=0.3)
    async with logged_in(app) as client:
        began = time.monotonic()
        response = await client.post(START, json={})
        elapsed = time.monotonic() - began
    assert response.status_code == 504
    assert error_code(response) == "upstream_timeout"
    assert elapsed < 0.3 + 0.5


async def test_refused_connection_is_503_after_one_retry(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    requests: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        requests.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as upstream:
        app = starlette_app(base_url=f"http://127.0.0.1:{closed_port}", http_client=upstream)
        async with logged_in(app) as client:
            response = await client.post(START, json={})
    assert response.status_code == 503
    assert error_code(response) == "upstream_unavailable"
    assert len(requests) == 2  # the first try and exactly one retry
    assert API_KEY not in caplog.text


async def test_own_pooled_client_maps_refusal_too(closed_port: int) -> None:
    broker = OneInboxMiddleware(
        Starlette(),
        api_key=API_KEY,
        agent_id="agt_demo",
        authorize=allow_anonymous,
        base_url=f"http://127.0.0.1:{closed_port}",
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=broker), base_url="http://testserver"
        ) as client:
            response = await client.post(START, json={})
    finally:
        await broker.aclose()
    assert response.status_code == 503
    assert error_code(response) == "upstream_unavailable"
