"""Budgets for a platform: limits per caller, per tenant and for everyone, daily budgets in
calls and minutes, alerts before the wall, and a kill switch; on memory and real Redis."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import Any

import anyio
import httpx
import pytest

from oneinbox_asgi import ConfigurationError
from oneinbox_asgi.guards import Budget, BudgetAlert, KillSwitch, RedisStore
from oneinbox_emulator.api import EmulatorAPI

from ..support import (
    END,
    START,
    FakeClock,
    StoreFactory,
    broker,
    client_for,
    error_code,
    tenant_from_header,
)

pytestmark = pytest.mark.anyio

DAY = 86_400.0


def budgets(**extra: Any) -> dict[str, Any]:
    """Caller limits off unless asked: these tests are about the other scopes."""
    options: dict[str, Any] = {"rate_limit": None, "max_concurrent_calls": None}
    options["tenant"] = tenant_from_header
    options.update(extra)
    return options


async def start(client: httpx.AsyncClient, user: str, tenant: str | None = None) -> httpx.Response:
    headers = {"x-user": user}
    if tenant:
        headers["x-tenant"] = tenant
    return await client.post(START, json={}, headers=headers)


async def test_a_tenants_cap_is_shared_by_its_callers_only(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    app = broker(
        http_client=upstream_client,
        store=make_store(),
        **budgets(tenant_budget=Budget(max_concurrent_calls=2)),
    )
    async with client_for(app) as client:
        first = await start(client, "u1", "acme")
        second = await start(client, "u2", "acme")
        third = await start(client, "u3", "acme")
        other = await start(client, "u4", "globex")
        assert third.status_code == 429 and error_code(third) == "tenant_busy"
        assert "organisation" in third.json()["error"]["message"]
        ended = await client.post(
            END, json={"end_token": first.json()["end_token"]}, headers={"x-user": "u1"}
        )
        again = await start(client, "u3", "acme")
    assert [first.status_code, second.status_code, other.status_code] == [201, 201, 201]
    assert ended.status_code == 200 and again.status_code == 201


async def test_a_slot_refused_at_one_scope_is_taken_at_none(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    """The caller's cap has room, the tenant's does not: nothing is held by the refusal, so
    once the tenant frees a call the same caller starts at once."""
    app = broker(
        http_client=upstream_client,
        store=make_store(),
        **budgets(max_concurrent_calls=1, tenant_budget=Budget(max_concurrent_calls=1)),
    )
    async with client_for(app) as client:
        holder = await start(client, "u1", "acme")
        refused = [await start(client, "u2", "acme") for _ in range(3)]
        await client.post(
            END, json={"end_token": holder.json()["end_token"]}, headers={"x-user": "u1"}
        )
        after = await start(client, "u2", "acme")
    assert {error_code(r) for r in refused} == {"tenant_busy"}
    assert after.status_code == 201, after.text  # u2's own slot was never taken


async def test_the_global_scope_caps_every_caller_and_tenant(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    app = broker(
        http_client=upstream_client,
        store=make_store(),
        **budgets(global_budget=Budget(max_concurrent_calls=2, rate_limit="100/minute")),
    )
    async with client_for(app) as client:
        answers = [await start(client, f"u{i}", f"t{i}") for i in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 503, 503]
    assert error_code(answers[2]) == "service_busy"


async def test_a_daily_call_budget_runs_out_and_comes_back_tomorrow(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    clock = FakeClock(1_700_006_400.0)  # 00:00 UTC plus a little: 1_700_006_400 is 00:00
    clock.now = (clock.now // DAY) * DAY + 3600  # 01:00 UTC
    app = broker(
        http_client=upstream_client,
        store=make_store(clock=clock),
        **budgets(tenant_budget=Budget(calls_per_day=3)),
    )
    async with client_for(app) as client:
        made = [await start(client, f"u{i}", "acme") for i in range(3)]
        out = await start(client, "u9", "acme")
        others = await start(client, "u9", "globex")
        clock.advance(23 * 3600)  # the next UTC day
        tomorrow = await start(client, "u9", "acme")
    assert [m.status_code for m in made] == [201, 201, 201]
    assert out.status_code == 429 and error_code(out) == "tenant_budget_exhausted"
    assert out.json()["error"]["message"] == "Voice calls are paused for your organisation today."
    assert out.headers["retry-after"] == str(23 * 3600)  # until 00:00 UTC
    assert others.status_code == 201 and tomorrow.status_code == 201


async def test_a_daily_minutes_budget_counts_ended_calls(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    clock = FakeClock(1_700_006_400.0 + 3600)
    app = broker(
        http_client=upstream_client,
        store=make_store(clock=clock),
        **budgets(max_concurrent_calls=5, caller_budget=Budget(minutes_per_day=1.5)),
    )
    async with client_for(app, "u1") as client:
        first = (await client.post(START, json={})).json()
        clock.advance(60)
        await client.post(END, json={"end_token": first["end_token"]})
        second = (await client.post(START, json={})).json()  # 1 min used: 0.5 left
        clock.advance(31)
        await client.post(END, json={"end_token": second["end_token"]})
        out = await client.post(START, json={})  # 1 min 31 s used
    assert out.status_code == 429 and error_code(out) == "daily_limit_reached"


async def test_budget_alerts_fire_once_per_level_and_day_across_replicas(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    heard: list[BudgetAlert] = []
    store = make_store()
    options = budgets(
        tenant_budget=Budget(calls_per_day=5),
        global_budget=Budget(calls_per_day=10),
        on_budget_alert=heard.append,
    )
    replica_a = broker(http_client=upstream_client, store=store, **options)
    replica_b = broker(http_client=upstream_client, store=store, **options)
    async with client_for(replica_a) as a, client_for(replica_b) as b:
        answers = []
        for i in range(7):
            answers.append(await start(a if i % 2 else b, f"u{i}", "acme"))
    assert [r.status_code for r in answers] == [201] * 5 + [429] * 2
    assert [(h.scope, h.key, h.kind, h.level, h.used, h.budget) for h in heard] == [
        ("tenant", "acme", "calls", "threshold", 4, 5),
        ("tenant", "acme", "calls", "exhausted", 5, 5),
    ]
    assert len(heard[0].day) == 10  # YYYY-MM-DD


async def test_many_concurrent_start_calls_never_pass_a_tenant_cap(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    oneinbox.misbehave(delay=0.05)  # every create takes a while, so all overlap
    store = make_store()
    replicas = [
        broker(
            http_client=upstream_client,
            store=store,
            **budgets(tenant_budget=Budget(max_concurrent_calls=3)),
        )
        for _ in range(2)
    ]
    results: list[str] = []
    async with client_for(replicas[0]) as a, client_for(replicas[1]) as b:

        async def one(i: int) -> None:
            response = await start(a if i % 2 else b, f"u{i}", "acme")
            results.append("created" if response.status_code == 201 else error_code(response))

        async with anyio.create_task_group() as group:
            for i in range(100):
                group.start_soon(one, i)
    assert Counter(results) == {"created": 3, "tenant_busy": 97}


async def test_the_kill_switch_pauses_and_resumes_every_replica(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    store = make_store()
    switch = KillSwitch(store)  # the operator's side: the same store, no middleware
    replicas = [broker(http_client=upstream_client, store=store, **budgets()) for _ in range(2)]
    async with client_for(replicas[0]) as a, client_for(replicas[1]) as b:
        await switch.pause(tenant="acme")
        paused = [await start(c, "u1", "acme") for c in (a, b)]
        elsewhere = await start(a, "u2", "globex")
        await switch.pause(agent="agt_demo")
        by_agent = await start(b, "u3", "globex")
        await switch.resume(agent="agt_demo")
        await switch.pause(everyone=True)
        everyone = await start(b, "u4", "globex")
        assert await switch.paused() == ["global", "tenant:acme"]
        await switch.resume(everyone=True)
        await switch.resume(tenant="acme")
        back = await start(a, "u1", "acme")
    assert {(r.status_code, error_code(r)) for r in paused} == {(503, "calls_paused")}
    assert elsewhere.status_code == 201 and back.status_code == 201
    assert error_code(by_agent) == "calls_paused" and error_code(everyone) == "calls_paused"
    usage = await switch.usage("tenant", "acme")
    assert (usage.live, usage.calls) == (1, 1)


async def test_usage_reports_each_scopes_own_budgets(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    # Regression: the memory store recorded the last scope's budgets for every scope.
    store = make_store()
    app = broker(
        http_client=upstream_client,
        store=store,
        **budgets(
            caller_budget=Budget(calls_per_day=7, minutes_per_day=3),
            tenant_budget=Budget(calls_per_day=50, minutes_per_day=30),
            global_budget=Budget(calls_per_day=900),
        ),
    )
    async with client_for(app) as client:
        assert (await start(client, "u1", "acme")).status_code == 201
    switch = KillSwitch(store)
    caller = await switch.usage("caller", "id:u1")
    tenant = await switch.usage("tenant", "acme")
    everyone = await switch.usage("global")
    assert (caller.calls, caller.calls_per_day, caller.minutes_per_day) == (1, 7, 3)
    assert (tenant.calls, tenant.calls_per_day, tenant.minutes_per_day) == (1, 50, 30)
    assert (everyone.calls, everyone.calls_per_day, everyone.minutes_per_day) == (1, 900, None)


async def test_stopping_live_calls_with_the_kill_switch(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    store = make_store()
    app = broker(http_client=upstream_client, store=store, **budgets())
    async with client_for(app) as client:
        acme = [(await start(client, f"u{i}", "acme")).json()["call_id"] for i in range(2)]
        other = (await start(client, "u9", "globex")).json()["call_id"]
    switch = KillSwitch(store, upstream=app.upstream)
    result = await switch.pause(tenant="acme", stop_live=True)
    assert result.stopped == 2 and result.failed == ()
    stopped = {r.path.split("/")[3] for r in oneinbox.received if r.path.endswith("/stop")}
    assert stopped == set(acme) and other not in stopped


async def test_budget_options_are_checked_once() -> None:
    with pytest.raises(ConfigurationError, match="tenant_budget= needs tenant="):
        broker(tenant_budget=Budget(calls_per_day=1))
    with pytest.raises(ConfigurationError, match="rate_limit= and max_concurrent_calls="):
        broker(caller_budget=Budget(max_concurrent_calls=2))
    with pytest.raises(ConfigurationError, match="calls_per_day"):
        Budget(calls_per_day=0)
    with pytest.raises(ConfigurationError, match="rate_limit"):
        Budget(rate_limit="lots")
    with pytest.raises(ConfigurationError, match="budget_alert_threshold"):
        broker(budget_alert_threshold=1.5)
    with pytest.raises(ConfigurationError, match=r"a oneinbox_asgi\.guards\.Budget"):
        broker(global_budget={"calls_per_day": 3})


@pytest.mark.redis
async def test_redis_measures_leases_on_its_own_clock(redis_url: str) -> None:
    """No clock given: windows, leases and days come from Redis's TIME, so replicas with
    skewed clocks still agree; a handle's expiry is checked on the same clock."""
    store = RedisStore(redis_url)
    try:
        server_ms = await store.now_ms()
        admission = await store.admit((), slot="s", lease=60, pauses=())
        assert abs(admission.expires_ms - (server_ms + 60_000)) < 1_000
        skewed = RedisStore(redis_url, clock=lambda: 0.0)  # a test clock replaces TIME
        try:
            assert await skewed.now_ms() == 0
        finally:
            await skewed.aclose()
    finally:
        await store.aclose()


@pytest.mark.redis
def test_the_cli_pauses_resumes_and_reports(redis_url: str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "oneinbox_asgi", *args, "--store", redis_url],
            capture_output=True,
            text=True,
            timeout=30,
        )

    paused = cli("pause", "--tenant", "acme")
    report = cli("usage", "--tenant", "acme", "--json")
    resumed = cli("resume", "--tenant", "acme")
    assert paused.returncode == 0, paused.stderr
    assert "paused: tenant acme" in paused.stdout
    assert '"paused": [\n    "tenant:acme"\n  ]' in report.stdout, report.stdout
    assert '"tenant:acme"' in report.stdout
    assert resumed.returncode == 0 and "paused now: nothing" in resumed.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "oneinbox_asgi", "pause", "--all"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert refused.returncode == 2 and "ONEINBOX_REDIS_URL" in refused.stderr
