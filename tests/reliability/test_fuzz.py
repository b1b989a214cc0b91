"""Random methods, headers, content types and bodies at the broker's routes: only
documented statuses, always the JSON error shape, never a 500, never the key."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from oneinbox_asgi import CallRequest, OneInboxMiddleware
from oneinbox_emulator.api import EmulatorAPI

from ..support import API_KEY, UNLIMITED

pytestmark = pytest.mark.anyio

DOCUMENTED = {200, 201, 304, 400, 401, 403, 404, 405, 413, 415, 429, 502, 503, 504}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "agent": json_values | st.sampled_from(["sales", "support", "", "agt_demo"]),
            "variables": json_values
            | st.dictionaries(
                st.text(max_size=20) | st.sampled_from(["topic", "customer_name", "1", "0"]),
                json_values,
                max_size=5,
            ),
        },
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 40_000).map(lambda n: b'{"agent": "' + b"x" * n + b'"}'),
    st.just(b'{"agent": "sales", "agent": "support"}'),
    st.just(b'{"variables": {"1": 2, "topic": "\xff"}}'),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "application/jsonx",
    ]
)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
paths = st.sampled_from(
    [
        "/oneinbox/start-call",
        "/oneinbox/end-call",
        "/oneinbox/widget.js",
        "/oneinbox/",
        "/oneinbox/../start-call",
        "/oneinbox/start-call/",
        "/oneinbox/x%00y",
        "/oneinbox/call-ffff.js",
    ]
)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
extra_headers = st.dictionaries(
    st.sampled_from(
        [
            "origin",
            "sec-fetch-site",
            "x-forwarded-for",
            "cookie",
            "if-none-match",
            "accept-encoding",
            "host",
            "content-length",
        ]
    ),
    header_values,
    max_size=4,
)


def authorize(request: CallRequest) -> str:
    return "fuzzer"


def build() -> tuple[OneInboxMiddleware, EmulatorAPI]:
    upstream = EmulatorAPI(api_keys=[API_KEY])
    upstream.registry.agents.update({"agt_sales", "agt_support"})
    host = Starlette(routes=[Route("/", lambda r: PlainTextResponse("host"))])
    middleware = OneInboxMiddleware(
        host,
        api_key=API_KEY,
        agent_id="agt_demo",
        agents={"sales": "agt_sales", "support": "agt_support"},
        client_variables=["topic", "1"],
        authorize=authorize,
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=upstream)),
        **UNLIMITED,
    )
    return middleware, upstream


@settings(
    max_examples=int(os.environ.get("ONEINBOX_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(method=methods, path=paths, content_type=content_types, body=bodies, headers=extra_headers)
async def test_fuzzed_requests_get_documented_answers(
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    content_type: str,
    body: bytes,
    headers: dict[str, str],
) -> None:
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    middleware, _ = build()
    request_headers = dict(headers)
    if content_type:
        request_headers["content-type"] = content_type
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        try:
            response = await client.request(
                method,
                path,
                content=body if method not in ("GET", "HEAD") else None,
                headers=request_headers,
            )
        except httpx.LocalProtocolError:
            return  # httpx refused to send it (e.g. a bad Content-Length); nothing to test
    assert response.status_code in DOCUMENTED, (response.status_code, response.text[:200])
    ours = response.request.url.path.startswith("/oneinbox/")
    if ours and response.status_code >= 400 and method != "HEAD":
        payload: Any = response.json()
        assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message"}
    assert API_KEY not in response.text
    assert API_KEY not in caplog.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
