"""Per-caller rate limit and concurrent-call cap, on the in-process store and on real Redis."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import httpx
import pytest

from oneinbox_asgi import CallRequest, ConfigurationError, allow_anonymous
from oneinbox_asgi.client_address import ClientAddress
from oneinbox_asgi.config import Settings
from oneinbox_asgi.guards import MemoryStore, RateLimit
from oneinbox_asgi.guards.limits import limit_key
from oneinbox_emulator.api import EmulatorAPI

from ..support import (
    END,
    START,
    FakeClock,
    StoreFactory,
    broker,
    client_for,
    creates,
    error_code,
    options,
)

pytestmark = pytest.mark.anyio


async def test_rate_limit_then_retry_after_then_passes_again(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    clock = FakeClock()
    store = make_store(clock=clock)
    app = broker(
        http_client=upstream_client, rate_limit="3/minute", max_concurrent_calls=None, store=store
    )
    async with client_for(app, "u1") as client:
        for _ in range(3):
            assert (await client.post(START, json={})).status_code == 201
            clock.advance(1)
        clock.advance(-1)  # the three calls were at t, t+1, t+2; now is t+2
        over = await client.post(START, json={})
        assert over.status_code == 429
        assert error_code(over) == "rate_limited"
        assert over.headers["retry-after"] == "58"  # t's attempt leaves the window at t+60
        clock.advance(57.5)
        still = await client.post(START, json={})
        assert still.status_code == 429
        assert still.headers["retry-after"] == "1"  # 0.5 s, rounded up
        clock.advance(0.5)
        assert (await client.post(START, json={})).status_code == 201
        again = await client.post(START, json={})  # t+1's attempt leaves at t+61
        assert again.status_code == 429 and again.headers["retry-after"] == "1"
    async with client_for(app, "u2") as other:  # the limit is per caller
        assert (await other.post(START, json={})).status_code == 201
    assert creates(oneinbox) == 5  # refused attempts never reach OneInbox


async def test_default_rate_limit_is_five_a_minute(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    app = broker(
        http_client=upstream_client, max_concurrent_calls=None, store=MemoryStore(clock=clock)
    )
    async with client_for(app, "u1") as client:
        statuses = [(await client.post(START, json={})).status_code for _ in range(6)]
        assert statuses == [201] * 5 + [429]
        clock.advance(60)
        assert (await client.post(START, json={})).status_code == 201


async def test_default_cap_is_one_call_at_a_time(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        first = await client.post(START, json={})
        second = await client.post(START, json={})
    assert first.status_code == 201
    assert second.status_code == 429 and error_code(second) == "too_many_calls"
    assert "retry-after" not in second.headers
    assert creates(oneinbox) == 1


async def test_100_concurrent_start_calls_with_cap_2_exactly_2_succeed(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    oneinbox.misbehave(delay=0.05)  # every create takes a while, so all 100 overlap
    app = broker(
        http_client=upstream_client, rate_limit=None, max_concurrent_calls=2, store=make_store()
    )
    results: list[tuple[int, str]] = []

    async with client_for(app, "same-user") as client:

        async def one() -> None:
            response = await client.post(START, json={})
            code = "created" if response.status_code == 201 else error_code(response)
            results.append((response.status_code, code))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                for _ in range(100):
                    tasks.start_soon(one)
    tally = Counter(results)
    print(f"100 concurrent, cap 2: {dict(tally)}")
    assert tally == {(201, "created"): 2, (429, "too_many_calls"): 98}
    assert creates(oneinbox) == 2


async def test_a_failed_upstream_call_gives_the_slot_back(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    app = broker(http_client=upstream_client, rate_limit=None, store=make_store())
    oneinbox.misbehave(status=500, times=1)
    async with client_for(app, "u1") as client:
        failed = await client.post(START, json={})
        assert failed.status_code == 502 and error_code(failed) == "upstream_error"
        assert (await client.post(START, json={})).status_code == 201
        assert (await client.post(START, json={})).status_code == 429


async def test_a_failing_hook_before_the_upstream_call_holds_no_slot(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    calls = 0

    def flaky_variables(request: CallRequest) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database down")
        return {}

    app = broker(http_client=upstream_client, variables=flaky_variables)
    async with client_for(app, "u1") as client:
        assert (await client.post(START, json={})).status_code == 500
        assert (await client.post(START, json={})).status_code == 201


async def test_hang_up_frees_the_slot(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    app = broker(http_client=upstream_client, rate_limit=None, store=make_store())
    async with client_for(app, "u1") as client:
        first = await client.post(START, json={})
        assert (await client.post(START, json={})).status_code == 429
        ended = await client.post(END, json={"end_token": first.json()["end_token"]})
        assert ended.status_code == 200 and ended.json() == {"ended": True}
        assert (await client.post(START, json={})).status_code == 201


async def test_a_lease_expires_on_its_own(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, make_store: StoreFactory
) -> None:
    clock = FakeClock()
    app = broker(
        http_client=upstream_client,
        rate_limit=None,
        max_call_seconds=900,
        store=make_store(clock=clock),
    )
    async with client_for(app, "u1") as client:
        first = await client.post(START, json={})
        assert first.status_code == 201
        clock.advance(899)
        assert (await client.post(START, json={})).status_code == 429
        clock.advance(1)
        assert (await client.post(START, json={})).status_code == 201  # the tab was closed
        late = await client.post(END, json={"end_token": first.json()["end_token"]})
        assert late.status_code == 404 and error_code(late) == "not_found"  # its handle expired too


async def test_callers_are_keyed_by_id_else_by_address(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    def yes(request: CallRequest) -> bool:
        return True  # no id: the limit falls back to the client address

    by_address = broker(http_client=upstream_client, authorize=yes, trusted_proxies=["127.0.0.1"])
    async with client_for(by_address) as client:

        async def start(forwarded: str | None) -> int:
            headers = {"X-Forwarded-For": forwarded} if forwarded else {}
            return (await client.post(START, json={}, headers=headers)).status_code

        assert await start("203.0.113.7") == 201
        assert await start("203.0.113.7") == 429  # same address
        assert await start("198.51.100.1, 203.0.113.8") == 201  # the proxy saw .8
        assert await start(None) == 201  # the proxy itself

    untrusted = broker(http_client=upstream_client, authorize=yes)
    async with client_for(untrusted) as client:
        first = await client.post(START, json={}, headers={"X-Forwarded-For": "203.0.113.7"})
        spoofed = await client.post(START, json={}, headers={"X-Forwarded-For": "203.0.113.9"})
    assert first.status_code == 201
    assert spoofed.status_code == 429  # a browser cannot pick its own key


async def test_allow_anonymous_sees_the_forwarded_address(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    app = broker(
        http_client=upstream_client, authorize=allow_anonymous, trusted_proxies=["10.0.0.0/8"]
    )
    async with client_for(app, client=("10.1.2.3", 5000)) as client:
        response = await client.post(START, json={}, headers={"X-Forwarded-For": "192.0.2.44"})
    assert response.status_code == 201
    assert oneinbox.received[-1].json()["metadata"]["caller"] == "anonymous:192.0.2.44"


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("127.0.0.1", "203.0.113.7", [], "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7", ["127.0.0.1"], "203.0.113.7"),
        ("10.0.0.5", "1.1.1.1, 203.0.113.7, 10.0.0.9", ["10.0.0.0/8"], "203.0.113.7"),
        ("10.0.0.5", "10.0.0.7, 10.0.0.9", ["10.0.0.0/8"], "10.0.0.7"),
        ("10.0.0.5", "", ["10.0.0.0/8"], "10.0.0.5"),
        ("10.0.0.5", "203.0.113.7:4711", ["10.0.0.0/8"], "203.0.113.7"),
        ("10.0.0.5", "[2001:db8::1]:443", ["10.0.0.0/8"], "2001:db8::1"),
        ("::1", "2001:db8::2", ["::1"], "2001:db8::2"),
        ("::ffff:10.0.0.5", "203.0.113.7", ["10.0.0.0/8"], "203.0.113.7"),
        ("192.0.2.1", "203.0.113.7", ["10.0.0.0/8"], "192.0.2.1"),
    ],
)
def test_client_address(peer: str, forwarded: str, trusted: list[str], expected: str) -> None:
    scope = {
        "client": (peer, 1234),
        "headers": [(b"x-forwarded-for", forwarded.encode())] if forwarded else [],
    }
    networks = Settings.from_options(**options(trusted_proxies=trusted)).trusted_proxies
    assert ClientAddress(networks).of(scope) == expected


def test_limit_keys() -> None:
    assert limit_key("u1", "1.2.3.4") == "id:u1"
    assert limit_key(42, "1.2.3.4") == "id:42"
    assert limit_key(True, "1.2.3.4") == "ip:1.2.3.4"
    assert limit_key({"id": 1}, None) == "ip:unknown"


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("5/minute", 5, 60),
        ("5/minutes", 5, 60),
        ("100/hour", 100, 3600),
        ("2/s", 2, 1),
        ("10/30 seconds", 10, 30),
        ("1000/day", 1000, 86400),
        (" 3 / 2 min ", 3, 120),
    ],
)
def test_rate_limit_syntax(text: str, limit: int, period: float) -> None:
    assert RateLimit.parse(text) == RateLimit(limit, period)


BAD_OPTIONS: list[tuple[str, Any]] = [
    ("rate_limit", "5 per minute"),
    ("rate_limit", "5/ms"),
    ("rate_limit", "0/minute"),
    ("rate_limit", "5/0 minutes"),
    ("rate_limit", 5),
    ("max_concurrent_calls", 0),
    ("max_concurrent_calls", True),
    ("max_concurrent_calls", 1.5),
    ("max_call_seconds", 0),
    ("max_call_seconds", float("inf")),
    ("max_call_seconds", None),
    ("trusted_proxies", "10.0.0.0/8"),
    ("trusted_proxies", ["10.0.0.0/33"]),
    ("trusted_proxies", ["proxy.internal"]),
    ("store", "memcached://127.0.0.1"),
    ("store", 42),
    ("on_call_started", "log it"),
    ("on_call_ended", 1),
]


@pytest.mark.parametrize(("option", "value"), BAD_OPTIONS)
def test_each_option_is_checked_at_construction(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=option):
        broker(**{option: value})


def test_limits_can_be_switched_off() -> None:
    middleware = broker(rate_limit=None, max_concurrent_calls=None)
    assert isinstance(middleware.store, MemoryStore)
