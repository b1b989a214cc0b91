"""The call lifecycle from OneInbox's word: reconciliation at the cap, webhooks, the reaper,
and exactly one on_call_ended per call whichever path sees the end first."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from oneinbox_asgi import CallEvent
from oneinbox_asgi import lifecycle as lifecycle_module
from oneinbox_asgi.guards import RedisStore
from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, FakeClock, StoreFactory, broker, client_for, error_code

pytestmark = pytest.mark.anyio

WEBHOOK = "/oneinbox/webhook"


def lookups(oneinbox: EmulatorAPI, call_id: str) -> int:
    return sum(
        1 for r in oneinbox.received if r.method == "GET" and r.path == f"/v1/calls/{call_id}"
    )


def deliver(event: str, call_id: str, **more: Any) -> dict[str, Any]:
    return {"event": event, "call_id": call_id, "agent_id": "agt_demo", **more}


class Heard:
    """An on_call_ended / on_call_record hook that keeps what it heard."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    def __call__(self, event: CallEvent) -> None:
        self.events.append(event)


# -- reconciliation at the cap ---------------------------------------------------------


async def test_a_caller_whose_call_really_ended_never_waits_for_the_lease(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    """A crashed tab never posts end-call: 0.1 locked its user out for max_call_seconds."""
    ended = Heard()
    app = broker(http_client=upstream_client, store=make_store(), on_call_ended=ended)
    async with client_for(app, "u1") as client:
        first = (await client.post(START, json={})).json()
        oneinbox.registry.mark_joined(first["call_id"])
        still_live = await client.post(START, json={})
        assert still_live.status_code == 429 and error_code(still_live) == "too_many_calls"
        assert "already in a call" in still_live.json()["error"]["message"]
        oneinbox.registry.end(first["call_id"], "connection_lost")  # the tab died
        again = await client.post(START, json={})
    assert again.status_code == 201, again.text
    assert [(e.call_id, e.ended_by, e.end_reason, e.caller) for e in ended.events] == [
        (first["call_id"], "reconciliation", "connection_lost", "u1")
    ]
    assert ended.events[0].record is not None
    assert ended.events[0].record["status"] == "completed"


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "body": b"{}"},
        {"status": 404, "body": b'{"detail": "Not Found"}'},
        {"delay": 5.0},
    ],
    ids=["error", "unknown", "no answer in time"],
)
async def test_reconciliation_fails_closed(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    fault: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle_module, "RECONCILE_SECONDS", 0.3)
    ended = Heard()
    app = broker(http_client=upstream_client, on_call_ended=ended)
    async with client_for(app, "u1") as client:
        first = (await client.post(START, json={})).json()
        oneinbox.registry.end(first["call_id"], "user_hangup")
        oneinbox.misbehave(**fault, times=1)
        with anyio.fail_after(3):
            refused = await client.post(START, json={})
    assert refused.status_code == 429 and error_code(refused) == "too_many_calls"
    assert ended.events == []


# -- webhooks ----------------------------------------------------------------------------


@pytest.mark.redis
async def test_a_webhook_ends_a_call_once_across_replicas_and_retries(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, redis_url: str
) -> None:
    """Two replicas, each with its own connection to one real Redis."""
    ended = Heard()
    options = {"http_client": upstream_client, "webhooks": True, "on_call_ended": ended}
    stores = [RedisStore(redis_url), RedisStore(redis_url)]
    replica_a = broker(store=stores[0], **options)
    replica_b = broker(store=stores[1], **options)
    async with client_for(replica_a, "u1") as a, client_for(replica_b) as b:
        call_id = (await a.post(START, json={})).json()["call_id"]
        oneinbox.registry.mark_joined(call_id)
        oneinbox.registry.end(call_id, "agent_hangup")
        delivery = deliver("call.ended", call_id, status="completed", duration_seconds=12)
        answers = [
            await a.post(WEBHOOK, json=delivery),
            await b.post(WEBHOOK, json=delivery),  # the same event retried to replica B
        ]
        await anyio.sleep(lifecycle_module.LOOKUP_SECONDS + 0.1)
        answers.append(await b.post(WEBHOOK, json=delivery))  # and again, later
        assert (await a.post(START, json={})).status_code == 201  # the slot is free
    for store in stores:  # a store passed in is the caller's to close
        await store.aclose()
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [(e.call_id, e.ended_by, e.end_reason) for e in ended.events] == [
        (call_id, "webhook", "agent_hangup")
    ]


async def test_a_forged_webhook_frees_nothing_and_costs_at_most_one_lookup(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    ended = Heard()
    app = broker(
        http_client=upstream_client, webhooks=True, store=make_store(), on_call_ended=ended
    )
    async with client_for(app, "u1") as client, client_for(app) as outsider:
        call_id = (await client.post(START, json={})).json()["call_id"]
        oneinbox.registry.mark_joined(call_id)  # live, whatever a forger says
        forged = deliver("call.ended", call_id, status="completed")
        answers = [await outsider.post(WEBHOOK, json=forged) for _ in range(20)]
        at_cap = await client.post(START, json={})
    assert {r.status_code for r in answers} == {200}  # OneInbox would not retry forever
    assert at_cap.status_code == 429
    assert lookups(oneinbox, call_id) <= 2  # one per LOOKUP_SECONDS; the 429 adds one
    assert ended.events == []


async def test_webhooks_for_calls_we_did_not_start_are_acknowledged_and_ignored(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client, webhooks=True)
    async with client_for(app) as client:
        phone = await client.post(WEBHOOK, json=deliver("call.ended", "call_from_a_phone"))
        other = await client.post(WEBHOOK, json={"event": "agent.updated", "call_id": "call_x"})
    assert phone.status_code == 200 and other.status_code == 200
    assert [r for r in oneinbox.received if r.method == "GET"] == []


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"method": "GET"}, 405, "method_not_allowed"),
        (
            {"content": b"not json", "headers": {"content-type": "application/json"}},
            400,
            "bad_request",
        ),
        ({"json": {"event": "call.ended"}}, 400, "bad_request"),
        ({"json": {"event": "call.ended", "call_id": ".."}}, 400, "bad_request"),
        ({"content": b'{"pad": "' + b"x" * 70_000 + b'"}'}, 413, "payload_too_large"),
    ],
    ids=["GET", "not JSON", "no call_id", "dot-dot id", "oversize"],
)
async def test_webhook_bad_deliveries(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    request_kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    app = broker(http_client=upstream_client, webhooks=True)
    kwargs = dict(request_kwargs)
    method = kwargs.pop("method", "POST")
    async with client_for(app) as client:
        response = await client.request(method, WEBHOOK, **kwargs)
    assert response.status_code == status, response.text
    assert error_code(response) == code


async def test_the_webhook_route_is_exempt_from_cross_site_and_sessions_only_with_webhooks(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    cross_site = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    with_webhooks = broker(http_client=upstream_client, webhooks=True)
    without = broker(http_client=upstream_client)
    async with client_for(with_webhooks) as client, client_for(without) as plain:
        accepted = await client.post(WEBHOOK, json=deliver("call.ended", "c1"), headers=cross_site)
        absent = await plain.post(WEBHOOK, json=deliver("call.ended", "c1"))
    assert accepted.status_code == 200
    assert absent.status_code == 404


async def test_a_webhook_verifier_refuses_what_it_does_not_sign(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    seen: list[tuple[str | None, bytes]] = []

    async def verifier(headers: Any, raw: bytes) -> bool:
        seen.append((headers.get("x-oneinbox-signature"), raw))
        return headers.get("x-oneinbox-signature") == "good"

    app = broker(http_client=upstream_client, webhooks=True, webhook_verifier=verifier)
    body = json.dumps(deliver("call.ended", "c1")).encode()
    async with client_for(app) as client:
        bad = await client.post(WEBHOOK, content=body, headers={"x-oneinbox-signature": "bad"})
        good = await client.post(WEBHOOK, content=body, headers={"x-oneinbox-signature": "good"})
    assert bad.status_code == 401 and error_code(bad) == "unauthorized"
    assert good.status_code == 200
    assert seen == [("bad", body), ("good", body)]  # the raw body, as it arrived


# -- the reaper ------------------------------------------------------------------------


async def test_a_call_past_max_call_seconds_is_stopped_at_oneinbox_once(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    clock = FakeClock()
    ended = Heard()
    app = broker(
        http_client=upstream_client,
        store=make_store(clock=clock),
        max_call_seconds=60,
        on_call_ended=ended,
    )
    lifecycle = app.broker.lifecycle
    assert lifecycle is not None
    async with client_for(app, "u1") as client:
        call_id = (await client.post(START, json={})).json()["call_id"]
        oneinbox.registry.mark_joined(call_id)
        assert await lifecycle.reap() == 0  # not due yet
        clock.advance(60)
        await lifecycle.ledger.unclaim("reaper")
        assert await lifecycle.reap() == 1
        await lifecycle.ledger.unclaim("reaper")
        assert await lifecycle.reap() == 0  # once
    call = oneinbox.registry.get(call_id)
    assert call is not None and call.status == "completed" and call.end_reason == "api_stop"
    assert [(e.call_id, e.ended_by) for e in ended.events] == [(call_id, "max_call_seconds")]


@pytest.mark.redis
async def test_one_replica_reaps_at_a_time(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, redis_url: str
) -> None:
    stores = [RedisStore(redis_url), RedisStore(redis_url)]
    replica_a = broker(http_client=upstream_client, store=stores[0])
    replica_b = broker(http_client=upstream_client, store=stores[1])
    a, b = replica_a.broker.lifecycle, replica_b.broker.lifecycle
    assert a is not None and b is not None
    try:
        assert await a.reap() == 0  # took the tick
        assert await b.ledger.claim("reaper", 5) is False
        await a.ledger.unclaim("reaper")
        assert await b.ledger.claim("reaper", 5) is True
    finally:
        for store in stores:
            await store.aclose()


async def test_the_reaper_runs_with_the_lifespan_and_stops_at_shutdown(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    ended = Heard()
    app = broker(http_client=upstream_client, max_call_seconds=0.4, on_call_ended=ended)
    messages: list[str] = []
    inbox: list[dict[str, str]] = [{"type": "lifespan.startup"}]
    shutdown = anyio.Event()

    async def receive() -> dict[str, str]:
        if inbox:
            return inbox.pop(0)
        await shutdown.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message["type"])

    async with anyio.create_task_group() as group:
        group.start_soon(app, {"type": "lifespan"}, receive, send)
        async with client_for(app, "u1") as client:
            call_id = (await client.post(START, json={})).json()["call_id"]
            oneinbox.registry.mark_joined(call_id)
            with anyio.fail_after(5):
                while not ended.events:
                    await anyio.sleep(0.05)
        shutdown.set()
    assert [(e.call_id, e.ended_by) for e in ended.events] == [(call_id, "max_call_seconds")]
    assert messages == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not app.upstream.is_open


# -- one ending, whichever path is first -------------------------------------------------


async def test_end_call_after_a_webhook_fires_nothing_twice(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    ended = Heard()
    app = broker(
        http_client=upstream_client, webhooks=True, store=make_store(), on_call_ended=ended
    )
    async with client_for(app, "u1") as client:
        started = (await client.post(START, json={})).json()
        oneinbox.registry.end(started["call_id"], "agent_hangup")
        await client.post(WEBHOOK, json=deliver("call.ended", started["call_id"]))
        late = await client.post(END, json={"end_token": started["end_token"]})
    assert late.status_code == 200
    assert [e.ended_by for e in ended.events] == ["webhook"]


async def test_the_post_call_record_reaches_the_host_once(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    records = Heard()
    app = broker(http_client=upstream_client, webhooks=True, on_call_record=records)
    async with client_for(app, "u1") as client:
        started = (await client.post(START, json={})).json()
        call_id = started["call_id"]
        oneinbox.registry.mark_joined(call_id)
        oneinbox.registry.add_message(call_id, "agent", "Hi Ada!")
        await client.post(END, json={"end_token": started["end_token"]})
        for _ in range(3):  # call.analyzed, retried
            await client.post(WEBHOOK, json=deliver("call.analyzed", call_id))
            await anyio.sleep(lifecycle_module.LOOKUP_SECONDS + 0.05)
    assert len(records.events) == 1
    record = records.events[0].record
    assert record is not None
    assert record["messages"][0]["content"] == "Hi Ada!"
    assert records.events[0].caller == "u1"
