"""POST /oneinbox/start-call on Starlette: the happy path, every refusal, every upstream failure."""

from __future__ import annotations

import datetime
import json
import logging
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from oneinbox_asgi import CallRequest, Forbidden
from oneinbox_emulator.api import EmulatorAPI

from .apps import starlette_app
from .support import API_KEY, START, client_for, error_code, logged_in

pytestmark = pytest.mark.anyio


async def test_logged_in_user_gets_a_call_with_their_name(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = starlette_app(http_client=upstream_client)
    async with logged_in(app, "u42", "Grace") as client:
        response = await client.post(START, json={})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert {"call_id", "server_url", "participant_token"} <= set(body)
    assert body["server_url"] == oneinbox.server_url
    call = oneinbox.registry.get(body["call_id"])
    assert call is not None
    assert call.variables == {"customer_name": "Grace"}
    assert call.metadata == {"caller": "u42", "path": START}
    sent = oneinbox.received[-1]
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in response.text
    assert "room_name" not in body  # only what the browser needs


async def test_visitor_without_session_gets_401_and_nothing_goes_upstream(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = starlette_app(http_client=upstream_client)
    async with client_for(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == 401
    assert error_code(response) == "unauthorized"
    assert oneinbox.received == []


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_forbidden_is_403_with_the_hosts_message(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, asynchronous: bool
) -> None:
    def deny(request: CallRequest) -> str:
        raise Forbidden("Calls are for premium plans.")

    async def deny_async(request: CallRequest) -> str:
        deny(request)
        return "unreachable"

    app = starlette_app(http_client=upstream_client, authorize=deny_async if asynchronous else deny)
    async with logged_in(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert response.json()["error"]["message"] == "Calls are for premium plans."
    assert oneinbox.received == []


async def test_server_variables_win_over_allowed_browser_variables(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = starlette_app(http_client=upstream_client, client_variables=["customer_name", "topic"])
    async with logged_in(app, name="Ada") as client:
        response = await client.post(
            START, json={"variables": {"customer_name": "Mallory", "topic": "billing"}}
        )
    assert response.status_code == 201
    call = oneinbox.registry.get(response.json()["call_id"])
    assert call is not None
    assert call.variables == {"customer_name": "Ada", "topic": "billing"}


async def test_agent_is_picked_by_name_from_the_allowlist(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = starlette_app(http_client=upstream_client, agents={"sales": "agt_sales"})
    async with logged_in(app) as client:
        named = await client.post(START, json={"agent": "sales"})
        default = await client.post(START, json={})
        unknown = await client.post(START, json={"agent": "agt_sales"})
    assert named.status_code == 201 and default.status_code == 201
    assert [r.json()["agent_id"] for r in oneinbox.received] == ["agt_sales", "agt_demo"]
    assert unknown.status_code == 400 and error_code(unknown) == "bad_request"
    assert len(oneinbox.received) == 2


async def test_only_named_agents_and_no_choice_is_400(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = starlette_app(http_client=upstream_client, agent_id=None, agents={"sales": "agt_sales"})
    async with logged_in(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == 400
    assert "sales" in response.json()["error"]["message"]


BAD_BODIES: list[tuple[str, bytes, str, int, str]] = [
    ("form post", b"agent=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("no content type", b"{}", "", 415, "unsupported_media_type"),
    ("text plain", b"{}", "text/plain", 415, "unsupported_media_type"),
    ("malformed", b"{not json", "application/json", 400, "bad_request"),
    ("array", b"[1, 2]", "application/json", 400, "bad_request"),
    ("string", b'"hello"', "application/json", 400, "bad_request"),
    ("non utf-8", b'{"agent": "\xff\xfe"}', "application/json", 400, "bad_request"),
    ("duplicate keys", b'{"agent": "a", "agent": "b"}', "application/json", 400, "bad_request"),
    ("NaN", b'{"variables": {"topic": NaN}}', "application/json", 400, "bad_request"),
    ("unknown field", b'{"overrides": {"llm": "x"}}', "application/json", 400, "bad_request"),
    ("agent not a string", b'{"agent": 7}', "application/json", 400, "bad_request"),
    ("variables not an object", b'{"variables": [1]}', "application/json", 400, "bad_request"),
    (
        "variable not allowed",
        b'{"variables": {"plan": "gold"}}',
        "application/json",
        400,
        "bad_request",
    ),
    (
        "variable nested",
        b'{"variables": {"topic": {"a": 1}}}',
        "application/json",
        400,
        "bad_request",
    ),
    (
        "variable too long",
        json.dumps({"variables": {"topic": "x" * 501}}).encode(),
        "application/json",
        400,
        "bad_request",
    ),
    (
        "deep nesting",
        b'{"variables": ' + b"[" * 7000 + b"]" * 7000 + b"}",
        "application/json",
        400,
        "bad_request",
    ),
    # A number JSON cannot hold: Python reads it as infinity, which 0.1 forwarded upstream
    # as the bare word Infinity (not JSON).
    ("variable 1e999", b'{"variables": {"topic": 1e999}}', "application/json", 400, "bad_request"),
    (
        "variable -1e999",
        b'{"variables": {"topic": -1e999}}',
        "application/json",
        400,
        "bad_request",
    ),
    ("variable NaN", b'{"variables": {"topic": NaN}}', "application/json", 400, "bad_request"),
    # A JSON boolean is a Python int: the contract allows strings and numbers only.
    ("variable true", b'{"variables": {"topic": true}}', "application/json", 400, "bad_request"),
    ("variable false", b'{"variables": {"topic": false}}', "application/json", 400, "bad_request"),
    ("variable null", b'{"variables": {"topic": null}}', "application/json", 400, "bad_request"),
    (
        "huge",
        json.dumps({"variables": {"topic": "x" * 20_000}}).encode(),
        "application/json",
        413,
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
async def test_bad_input_is_a_4xx_with_the_error_shape_and_never_reaches_oneinbox(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    app = starlette_app(http_client=upstream_client, client_variables=["topic"])
    async with logged_in(app) as client:
        headers = {"content-type": content_type} if content_type else {}
        response = await client.post(START, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert oneinbox.received == []


async def test_streamed_body_over_the_limit_is_413_without_content_length(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 1024

    app = starlette_app(http_client=upstream_client)
    async with logged_in(app) as client:
        response = await client.post(
            START, content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


async def test_wrong_method_is_405_with_allow(upstream_client: httpx.AsyncClient) -> None:
    app = starlette_app(http_client=upstream_client)
    async with client_for(app) as client:
        response = await client.get(START)
        put = await client.put(START, json={})
    assert response.status_code == 405 and put.status_code == 405
    assert response.headers["allow"] == "POST"
    assert error_code(response) == "method_not_allowed"


async def test_unknown_route_under_the_prefix_is_a_json_404(
    upstream_client: httpx.AsyncClient,
) -> None:
    app = starlette_app(http_client=upstream_client)
    async with client_for(app) as client:
        response = await client.post("/oneinbox/nothing-here", json={})
    assert response.status_code == 404
    assert error_code(response) == "not_found"


async def test_a_failing_hook_is_a_json_500_not_a_crash(
    upstream_client: httpx.AsyncClient,
) -> None:
    app = starlette_app(http_client=upstream_client, variables=lambda request: ["not", "a dict"])
    async with logged_in(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == 500
    assert error_code(response) == "internal_error"


async def test_hook_values_json_cannot_carry_as_they_are_become_strings(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    """0.1 answered a bare 500 (no JSON, no audit line) for a UUID in metadata."""
    user = uuid.UUID("12345678-1234-5678-1234-567812345678")

    def metadata(request: CallRequest) -> dict[str, Any]:
        return {"user": user, "day": datetime.date(2026, 11, 30), "price": Decimal("12.50")}

    def variables(request: CallRequest) -> dict[str, Any]:
        at = datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC)
        return {"customer_name": "Ada", "since": at, "tags": ("a", "b"), "n": 2.5}

    app = starlette_app(http_client=upstream_client, metadata=metadata, variables=variables)
    async with logged_in(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == 201, response.text
    call = oneinbox.registry.get(response.json()["call_id"])
    assert call is not None
    assert call.metadata == {"user": str(user), "day": "2026-11-30", "price": "12.50"}
    assert call.variables == {
        "customer_name": "Ada",
        "since": "2026-11-30T08:00:00+00:00",
        "tags": ["a", "b"],
        "n": 2.5,
    }


@pytest.mark.parametrize(
    ("hook", "value"),
    [
        ("variables", {"bad": {1, 2}}),
        ("variables", {"bad": float("nan")}),
        ("metadata", {"bad": float("inf")}),
        ("metadata", {"bad": object()}),
        ("metadata", {"bad": Decimal("NaN")}),
    ],
    ids=["set", "nan", "inf", "object", "decimal-nan"],
)
async def test_a_hook_value_json_cannot_carry_is_a_json_500_naming_the_hook(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    hook: str,
    value: dict[str, Any],
) -> None:
    caplog.set_level(logging.INFO, logger="oneinbox_asgi")
    app = starlette_app(http_client=upstream_client, **{hook: lambda request: value})
    async with logged_in(app) as client:
        response = await client.post(START, json={})
    assert response.status_code == 500
    assert error_code(response) == "internal_error"
    assert oneinbox.received == []  # nothing unencodable ever goes upstream
    (line,) = [r for r in caplog.records if "outcome=internal_error" in r.getMessage()]
    assert f"the {hook} hook failed" in line.getMessage()
    assert line.exc_info is not None  # the traceback, logged once, on that line
