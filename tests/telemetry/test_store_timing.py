"""The store as telemetry sees it: every operation timed under its own name, the store's
own methods looked up at each call, and the forwarders' signatures the protocols' own."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest

from oneinbox_asgi.guards import MemoryStore
from oneinbox_asgi.stores.base import (
    BudgetStore,
    CallEntry,
    CallLedger,
    LimitStore,
    ScopeRule,
    StoreUnavailable,
)
from oneinbox_asgi.telemetry import OpenTelemetry, _Operations

from .support import Otel

pytestmark = pytest.mark.anyio

RULES = (ScopeRule("caller", "id:u1", (5, 60.0), 2),)
ENTRY = CallEntry(
    call_id="call_1",
    limit_key="id:u1",
    slot="s1",
    caller="u1",
    agent_id="agt_1",
    agent=None,
    started_ms=1,
    deadline_ms=10**13,
    tenant=None,
)


def protocol_method(name: str) -> Any:
    for protocol in (LimitStore, BudgetStore, CallLedger):
        if name in protocol.__dict__:
            return protocol.__dict__[name]
    raise AssertionError(f"{name} is in no store protocol")


@pytest.mark.parametrize("name", [n for n in _Operations.__dict__ if not n.startswith("_")])
def test_each_forwarder_takes_its_protocol_operation_s_arguments(name: str) -> None:
    forwarder = inspect.signature(_Operations.__dict__[name])
    protocol = inspect.signature(protocol_method(name))
    assert list(forwarder.parameters.values()) == list(protocol.parameters.values())


def watched(otel: Otel, store: Any) -> Any:
    telemetry = OpenTelemetry(tracer_provider=None, meter_provider=otel.meter_provider, prefix="")
    return telemetry.watched_store(store)


async def test_every_operation_a_call_makes_is_timed_under_its_name(otel: Otel) -> None:
    store = watched(otel, MemoryStore())
    assert isinstance(store, BudgetStore) and isinstance(store, CallLedger)
    admission = await store.admit(RULES, slot="s1", lease=60.0, pauses=("global",))
    assert admission.expires_ms > 0
    await store.record_call(ENTRY)
    assert await store.call("call_1") == (ENTRY, False)
    assert await store.claim("job", 5.0) is True
    await store.unclaim("job")
    assert await store.add_minutes(RULES, 1000, admission.day) == (1000,)
    assert (await store.finish("call_1", 5, "end_call")) is not None
    await store.unadmit(RULES, "s1", admission.day)
    assert await store.hit("id:u2", 1, 60.0) == 0.0
    assert await store.acquire("id:u2", "s2", 1, 60.0) > 0
    assert await store.release("id:u2", "s2") is True
    assert await store.usage("id:u1", admission.day) is not None  # a generic forwarder's
    timed = {
        point.attributes["oneinbox.store.operation"]: point.count
        for point in otel.metrics()["oneinbox.store.duration"]
    }
    assert timed == {
        name: 1
        for name in (
            "admit",
            "record_call",
            "call",
            "claim",
            "unclaim",
            "add_minutes",
            "finish",
            "unadmit",
            "hit",
            "acquire",
            "release",
            "usage",
        )
    }


async def test_an_operation_replaced_on_the_store_is_the_one_called(otel: Otel) -> None:
    inner = MemoryStore()
    store = watched(otel, inner)
    await store.record_call(ENTRY)

    async def down(call_id: str) -> None:
        raise StoreUnavailable("down")

    inner.call = down  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        await store.call("call_1")
    assert otel.total(otel.metrics(), "oneinbox.store.outages", oneinbox__store__operation="call")


async def test_without_a_listener_the_store_s_own_awaitable_is_answered() -> None:
    telemetry = OpenTelemetry(tracer_provider=None, meter_provider=None, prefix="")
    assert not telemetry.metering()  # no test sets a global meter provider
    inner = MemoryStore()
    store = telemetry.watched_store(inner)
    operation = store.admit(RULES, slot="s1", lease=60.0, pauses=())
    assert inspect.getcoroutinestate(operation) == inspect.CORO_CREATED
    assert operation.cr_code is MemoryStore.admit.__code__
    assert (await operation).expires_ms > 0


class PriorityStore(MemoryStore):
    """A store whose ``acquire`` takes more than the protocol's arguments."""

    async def acquire(self, key: str, slot: str, cap: int, lease: float, priority: int = 0) -> int:
        self.priority = priority
        return await super().acquire(key, slot, cap, lease)


async def test_a_method_with_its_own_parameters_is_forwarded_whole(otel: Otel) -> None:
    inner = PriorityStore()
    store = watched(otel, inner)
    assert await store.acquire("id:u1", "s1", 1, 60.0, priority=3) > 0
    assert inner.priority == 3
    assert otel.total(
        otel.metrics(), "oneinbox.store.duration", oneinbox__store__operation="acquire"
    )


async def test_a_watched_store_copies_without_recursing(otel: Otel) -> None:
    inner = MemoryStore()
    store = watched(otel, inner)
    copied = copy.copy(store)
    assert type(copied) is type(store) and copied.clock is inner.clock
    await copied.record_call(ENTRY)  # the same store underneath
    assert await store.call("call_1") == (ENTRY, False)
