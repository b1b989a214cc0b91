"""The emulator's call API, in-process: what ONEINBOX_API.md documents, and the test controls."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from oneinbox_emulator import DEFAULT_API_KEY, EmulatorAPI
from oneinbox_emulator.registry import CallRegistry
from oneinbox_emulator.tokens import TokenError, TokenSigner

from .support import auth

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(clock: Clock) -> EmulatorAPI:
    return EmulatorAPI(
        registry=CallRegistry(["agt_demo", "agt_sales"], clock=clock),
        server_url="ws://127.0.0.1:9",
        token_ttl=300,
    )


@pytest.fixture
async def client(api: EmulatorAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        yield client


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/calls/web", json={"agent_id": "agt_demo", **body}, headers=auth())


async def test_a_web_call_is_created_with_a_livekit_token(
    client: httpx.AsyncClient, api: EmulatorAPI
) -> None:
    before = time.time()
    response = await create(client, variables={"customer_name": "Ada"}, metadata={"crm": "42"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id", "agent_id", "type", "status", "room_name", "server_url", "participant_token",
        "created_at",
    }  # fmt: skip
    assert body["status"] == "initiated" and body["type"] == "web"
    assert body["server_url"] == "ws://127.0.0.1:9"

    claims = jwt.decode(body["participant_token"], api.signer.api_secret, algorithms=["HS256"])
    assert claims["iss"] == api.signer.api_key
    assert claims["name"] == "Ada" and claims["sub"].startswith("caller-")
    assert claims["video"] == {
        "room": body["room_name"], "roomJoin": True,
        "canPublish": True, "canSubscribe": True, "canPublishData": True,
    }  # fmt: skip
    assert before - 10 <= claims["nbf"] <= claims["iat"] <= time.time()
    assert claims["exp"] - claims["iat"] == 300  # short-lived

    grant = api.signer.verify(body["participant_token"])
    assert grant.room == body["room_name"] and grant.name == "Ada"


async def test_status_moves_from_initiated_to_in_progress_to_completed(
    client: httpx.AsyncClient, api: EmulatorAPI, clock: Clock
) -> None:
    call_id = (await create(client, variables={"customer_name": "Ada"})).json()["id"]
    record = (await client.get(f"/v1/calls/{call_id}", headers=auth())).json()
    assert record["status"] == "initiated" and record["started_at"] is None

    clock.now += 2
    api.registry.mark_joined(call_id)  # what the voice server does when the browser connects
    api.registry.add_message(call_id, "agent", "Hi Ada!")
    record = (await client.get(f"/v1/calls/{call_id}", headers=auth())).json()
    assert record["status"] == "in_progress" and record["ended_at"] is None
    assert record["started_at"] == "2023-11-14T22:13:22Z"

    clock.now += 61.5
    stopped = await client.post(f"/v1/calls/{call_id}/stop", headers=auth())
    assert stopped.status_code == 200
    record = stopped.json()
    assert record["status"] == "completed" and record["end_reason"] == "api_stop"
    assert record["duration_seconds"] == 61.5
    assert record["variables"] == {"customer_name": "Ada"} and record["metadata"] == {}
    assert record["messages"] == [{"role": "agent", "content": "Hi Ada!", "time": 0.0}]

    # Stopping again is a no-op: the first ending stands.
    clock.now += 5
    again = (await client.post(f"/v1/calls/{call_id}/stop", headers=auth())).json()
    assert again["end_reason"] == "api_stop" and again["duration_seconds"] == 61.5


async def test_each_call_end_is_announced_once(client: httpx.AsyncClient, api: EmulatorAPI) -> None:
    ended: list[tuple[str, str | None]] = []
    api.registry.on_end(lambda call: ended.append((call.id, call.end_reason)))
    call_id = (await create(client)).json()["id"]
    api.registry.mark_joined(call_id)
    api.registry.end(call_id, "agent_hangup")
    api.registry.end(call_id, "api_stop")
    await client.post(f"/v1/calls/{call_id}/stop", headers=auth())
    assert ended == [(call_id, "agent_hangup")]


async def test_a_call_that_never_connected_fails(
    client: httpx.AsyncClient, api: EmulatorAPI
) -> None:
    call_id = (await create(client)).json()["id"]
    api.registry.fail(call_id, "connection_lost")
    record = (await client.get(f"/v1/calls/{call_id}", headers=auth())).json()
    assert record["status"] == "failed" and record["duration_seconds"] == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer oi_sk_wrong"}, {"authorization": f"Basic {DEFAULT_API_KEY}"}],
    ids=["missing", "wrong-key", "not-bearer"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/calls/web"), ("GET", "/v1/calls/call_x"), ("POST", "/v1/calls/call_x/stop"),
     ("GET", "/v1/calls")],
)  # fmt: skip
async def test_every_endpoint_wants_the_api_key(
    client: httpx.AsyncClient, headers: dict[str, str], method: str, path: str
) -> None:
    response = await client.request(method, path, json={"agent_id": "agt_demo"}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}


async def test_an_unknown_agent_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/calls/web", json={"agent_id": "agt_nobody"}, headers=auth())
    assert response.status_code == 404


async def test_unknown_calls_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/calls/call_nope", headers=auth())).status_code == 404
    assert (await client.post("/v1/calls/call_nope/stop", headers=auth())).status_code == 404


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({}, ["body", "agent_id"], "missing"),
        ({"agent_id": 7}, ["body", "agent_id"], "string_type"),
        ({"agent_id": "agt_demo", "variables": ["x"]}, ["body", "variables"], "dictionary_type"),
        ({"agent_id": "agt_demo", "metadata": "x"}, ["body", "metadata"], "dictionary_type"),
        ([1, 2], ["body"], "dict_type"),
    ],
)
async def test_invalid_bodies_are_422_in_fastapi_shape(
    client: httpx.AsyncClient, body: Any, loc: list[str], kind: str
) -> None:
    response = await client.post("/v1/calls/web", json=body, headers=auth())
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert {"loc": loc, "type": kind} == {k: detail[0][k] for k in ("loc", "type")}
    assert detail[0]["msg"]


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/calls/web", content=b"{nope", headers={**auth(), "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_calls_are_listed_newest_first_and_filtered(client: httpx.AsyncClient) -> None:
    first = (await create(client)).json()["id"]
    second = (await create(client, agent_id="agt_sales")).json()["id"]
    await client.post(f"/v1/calls/{first}/stop", headers=auth())
    everything = (await client.get("/v1/calls", headers=auth())).json()
    assert [c["id"] for c in everything["items"]] == [second, first]
    assert everything["total"] == 2 and everything["limit"] == 20 and everything["offset"] == 0
    sales = (await client.get("/v1/calls?agent_id=agt_sales", headers=auth())).json()
    assert [c["id"] for c in sales["items"]] == [second]
    done = (await client.get("/v1/calls?status=completed", headers=auth())).json()
    assert [c["id"] for c in done["items"]] == [first]
    page = (await client.get("/v1/calls?limit=1&offset=1", headers=auth())).json()
    assert [c["id"] for c in page["items"]] == [first] and page["total"] == 2
    bad = await client.get("/v1/calls?limit=lots", headers=auth())
    assert bad.status_code == 422


async def test_misbehaving_on_request(client: httpx.AsyncClient, api: EmulatorAPI) -> None:
    api.misbehave(status=503, body=b'{"detail": "down"}', headers={"retry-after": "3"}, times=1)
    failed = await create(client)
    assert failed.status_code == 503 and failed.headers["retry-after"] == "3"
    assert (await create(client)).status_code == 201
    assert [r.path for r in api.received] == ["/v1/calls/web", "/v1/calls/web"]
    assert api.received[0].json() == {"agent_id": "agt_demo"}


def test_tokens_are_checked_for_signature_issuer_time_and_grant() -> None:
    signer = TokenSigner("APIkey", "s" * 32)
    token = signer.mint(room="room_1", identity="me", ttl=60, now=1000)
    assert signer.verify(token, now=1030).room == "room_1"
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, now=1061)
    with pytest.raises(TokenError, match="not valid yet"):
        signer.verify(token, now=900)
    with pytest.raises(TokenError, match="signature"):
        TokenSigner("APIkey", "t" * 32).verify(token, now=1030)
    with pytest.raises(TokenError, match="another API key"):
        TokenSigner("APIother", "s" * 32).verify(token, now=1030)
    no_room = jwt.encode(
        {"iss": "APIkey", "sub": "me", "exp": 2000, "video": {"roomJoin": True}}, "s" * 32
    )
    with pytest.raises(TokenError, match="does not grant joining a room"):
        signer.verify(no_room, now=1030)
    with pytest.raises(TokenError, match="malformed"):
        signer.verify("not.a.token", now=1030)


async def test_usage_counts_today_and_this_month(clock: Clock) -> None:
    clock.now = 1_764_460_800.0  # 2025-11-30T00:00:00Z: a day that is also in a month's end
    api = EmulatorAPI(registry=CallRegistry(["agt_demo"], clock=clock), max_calls_per_day=3)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        clock.now -= 3600  # yesterday, this month
        yesterday = (await create(client)).json()["id"]
        api.registry.mark_joined(yesterday)
        clock.now += 90
        await client.post(f"/v1/calls/{yesterday}/stop", headers=auth())
        clock.now += 3600
        for _ in range(2):
            await create(client)
        usage = (await client.get("/v1/usage", headers=auth())).json()
        assert usage == {
            "calls_made_today": 2,
            "max_calls_per_day": 3,
            "calls_remaining_today": 1,
            "calls_this_month": 3,
            "minutes_used_this_month": 1.5,
            "cost_cents_this_month": 15.0,
            "period_start": "2025-11-01T00:00:00Z",
        }
        assert (await create(client)).status_code == 201
        # The daily cap: how OneInbox signals it is undocumented; the emulator answers 429.
        refused = await create(client)
        assert refused.status_code == 429 and "Daily call limit" in refused.json()["detail"]
        usage = (await client.get("/v1/usage", headers=auth())).json()
        assert usage["calls_made_today"] == 3 and usage["calls_remaining_today"] == 0
        clock.now += 86_400  # a new UTC day (and month)
        assert (await create(client)).status_code == 201
        usage = (await client.get("/v1/usage", headers=auth())).json()
        assert usage["calls_this_month"] == 1 and usage["period_start"] == "2025-12-01T00:00:00Z"
        assert (await client.get("/v1/usage")).status_code == 401


async def test_without_a_cap_usage_says_so(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await create(client)).status_code == 201
    usage = (await client.get("/v1/usage", headers=auth())).json()
    assert usage["calls_made_today"] == 3
    assert usage["max_calls_per_day"] is None and usage["calls_remaining_today"] is None


async def test_the_api_alone_writes_the_record_as_the_call_ends(
    client: httpx.AsyncClient, api: EmulatorAPI, clock: Clock
) -> None:
    call_id = (await create(client, variables={"customer_name": "Ada"})).json()["id"]
    api.registry.mark_joined(call_id)
    api.registry.add_message(call_id, "agent", "Hi Ada!")
    api.registry.add_message(call_id, "user", "(caller spoke 1.0 s)")
    during = (await client.get(f"/v1/calls/{call_id}", headers=auth())).json()
    assert during["messages"] == [] and during["ai_summary"] is None  # only after the end
    clock.now += 120
    record = (await client.post(f"/v1/calls/{call_id}/stop", headers=auth())).json()
    assert [m["role"] for m in record["messages"]] == ["agent", "user"]
    assert record["credits_used"] == 2.0 and record["cost_cents"] == 20.0
    assert record["analysis"]["successful"] is True and record["analysis"]["user_turns"] == 1
    assert record["ai_summary"].startswith("The demo agent greeted Ada; Ada spoke once.")
    assert record["latency"]["llm_ttft"]["samples"] == 0
