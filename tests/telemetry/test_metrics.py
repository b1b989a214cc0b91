"""Counters, the live-calls gauge and the histograms after a burst of concurrent calls,
some refused at the cap, all then ended through mixed paths: live returns to 0."""

from __future__ import annotations

import anyio
import httpx
import pytest

from oneinbox_asgi.errors import CallError
from oneinbox_asgi.guards import Budget, MemoryStore
from oneinbox_asgi.stores.base import StoreUnavailable
from oneinbox_asgi.telemetry import refusal_scope
from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, FakeClock, client_for
from .support import Otel

pytestmark = pytest.mark.anyio

WEBHOOK = "/oneinbox/webhook"
USERS = 25


async def test_a_burst_then_every_ending_path_brings_live_calls_back_to_zero(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    app = otel.broker(
        http_client=upstream_client,
        store=store,
        rate_limit=None,
        max_concurrent_calls=1,
        max_call_seconds=60,
        webhooks=True,
    )
    answers: dict[str, list[httpx.Response]] = {f"u{n}": [] for n in range(USERS)}

    async def start(client: httpx.AsyncClient, user: str) -> None:
        answers[user].append(await client.post(START, json={}, headers={"x-user": user}))

    async with client_for(app) as client:
        async with anyio.create_task_group() as burst:  # 50 at once, two per caller
            for user in answers:
                burst.start_soon(start, client, user)
                burst.start_soon(start, client, user)
        started = {
            user: next(a.json() for a in replies if a.status_code == 201)
            for user, replies in answers.items()
        }
        refused = [a for replies in answers.values() for a in replies if a.status_code == 429]
        assert len(started) == USERS and len(refused) == USERS  # one of each per caller

        metrics = otel.metrics()
        assert otel.total(metrics, "oneinbox.calls.started") == USERS
        assert otel.total(metrics, "oneinbox.calls.live") == USERS
        assert (
            otel.total(metrics, "oneinbox.refusals", oneinbox__error__code="too_many_calls")
            == USERS
        )
        assert otel.total(metrics, "oneinbox.call.create.duration") == USERS

        users = list(started)
        by_end_call, by_webhook, by_reaper = users[:8], users[8:16], users[16:]
        for user in by_end_call:
            token = started[user]["end_token"]
            ended = await client.post(END, json={"end_token": token}, headers={"x-user": user})
            assert ended.status_code == 200
        for user in by_webhook + by_end_call[:3]:  # repeated ends change nothing
            call_id = started[user]["call_id"]
            oneinbox.registry.end(call_id, "agent_hangup")
            delivery = {"event": "call.ended", "call_id": call_id}
            assert (await client.post(WEBHOOK, json=delivery)).status_code == 200
        clock.advance(61)
        lifecycle = app.broker.lifecycle
        assert lifecycle is not None
        assert await lifecycle.reap() == len(by_reaper)

    metrics = otel.metrics()
    assert otel.total(metrics, "oneinbox.calls.live") == 0
    assert otel.total(metrics, "oneinbox.call.duration") == USERS
    for ended_by, users_ in [
        ("end_call", by_end_call),
        ("webhook", by_webhook),
        ("max_call_seconds", by_reaper),
    ]:
        assert otel.total(metrics, "oneinbox.call.duration", oneinbox__ended_by=ended_by) == len(
            users_
        )
    assert otel.unit("oneinbox.call.duration") == "s"
    operations = {
        p.attributes["oneinbox.store.operation"] for p in metrics["oneinbox.store.duration"]
    }
    assert {"record_call", "finish"} <= operations  # and the limits' own (hit, admit, …)
    assert operations & {"acquire", "admit"}
    assert (
        otel.total(metrics, "http.client.request.duration", url__template="/v1/calls/web") == USERS
    )
    assert otel.unit("http.client.request.duration") == "s"
    for points in metrics.values():  # low cardinality: no caller, no call id, ever
        for point in points:
            for key, value in point.attributes.items():
                assert "call_id" not in key and not str(value).startswith("call_"), key
                assert not str(value).startswith("u"), (key, value)


async def test_a_store_outage_is_counted_and_refused(
    upstream_client: httpx.AsyncClient, otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()

    async def down(*args: object, **kwargs: object) -> float:
        raise StoreUnavailable("Redis at redis://***@host: connection refused")

    for operation in ("hit", "acquire", "admit"):  # whichever the limits ask first
        if hasattr(store, operation):
            monkeypatch.setattr(store, operation, down)
    app = otel.broker(http_client=upstream_client, store=store)
    async with client_for(app, "u1") as client:
        refused = await client.post(START, json={})
    assert refused.status_code == 503
    metrics = otel.metrics()
    assert otel.total(metrics, "oneinbox.store.outages") == 1
    assert (
        otel.total(
            metrics,
            "oneinbox.refusals",
            oneinbox__error__code="limits_unavailable",
            oneinbox__route="start-call",
            oneinbox__scope="caller",
        )
        == 1
    )


def test_a_refusal_scope_comes_from_the_error_when_it_names_one() -> None:
    error = CallError("too_many_calls", "busy")
    assert refusal_scope(error) == "caller"
    error.scope = "tenant"  # type: ignore[attr-defined]  # what per-tenant budgets add
    assert refusal_scope(error) == "tenant"
    error.scope = "Tenant 42; DROP"  # type: ignore[attr-defined]  # never unbounded text
    assert refusal_scope(error) == "caller"


async def test_a_budgets_refusal_is_counted_under_its_scope(
    upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    app = otel.broker(
        http_client=upstream_client,
        rate_limit=None,
        max_concurrent_calls=None,
        tenant=lambda request: "acme",
        tenant_budget=Budget(max_concurrent_calls=1),
    )
    async with client_for(app, "u1") as first, client_for(app, "u2") as second:
        assert (await first.post(START, json={})).status_code == 201
        refused = await second.post(START, json={})  # another caller, the same tenant
    assert refused.status_code == 429
    code = refused.json()["error"]["code"]
    metrics = otel.metrics()
    assert otel.total(metrics, "oneinbox.refusals", oneinbox__scope="tenant") == 1
    assert otel.total(metrics, "oneinbox.refusals", oneinbox__error__code=code) == 1
    span = otel.spans("oneinbox start-call")[1]
    assert (span.attributes or {})["oneinbox.scope"] == "tenant"
    for points in metrics.values():  # the tenant's name is no attribute either
        assert all("acme" not in str(v) for p in points for v in p.attributes.values())
