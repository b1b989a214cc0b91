"""The memory store and the Redis store decide every admission alike.

Random sequences of start-calls at up to three scopes (each scope with or without a rate,
a cap and daily budgets in calls and minutes), give-backs, ended calls' minutes and the
passing of time, on a ``MemoryStore`` and a ``RedisStore`` with the same fake clock: the
same admissions, the same refusals (which scope, and why: rates outrank caps, caps
outrank daily budgets), the same counts and usage. Each store is written on its own
(Python, a Lua script), so this is what keeps them one contract.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from oneinbox_asgi.guards import MemoryStore, RedisStore
from oneinbox_asgi.stores.base import DAY_MS, Admission, ScopeRule, scope_key

from ..support import FakeClock

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

SEQUENCES = 30
STEPS = 40
PAUSES = ("global", "agent:agt_demo")


def random_limits(rng: random.Random) -> dict[str, Any]:
    return {
        "rate": rng.choice([None, (rng.randint(1, 4), rng.choice([1.0, 5.0]))]),
        "cap": rng.choice([None, rng.randint(1, 3)]),
        "calls_per_day": rng.choice([None, rng.randint(1, 6)]),
        "minutes_per_day": rng.choice([None, 0.5, 2.0]),
    }


def random_callers(rng: random.Random) -> dict[str, tuple[ScopeRule, ...]]:
    """Three callers, each in a tenant or none, most also under a global budget; and one
    with its own scope only (the memory store's one-scope path, the usual start-call)."""
    everyone = random_limits(rng)
    tenants = {name: random_limits(rng) for name in ("acme", "globex")}
    callers = {}
    for caller in ("id:u1", "id:u2", "id:u3"):
        rules = [ScopeRule("caller", caller, **random_limits(rng))]
        tenant = rng.choice(["acme", "globex", None])
        if tenant is not None:
            rules.append(ScopeRule("tenant", tenant, **tenants[tenant]))
        if rng.random() < 0.7:
            rules.append(ScopeRule("global", "all", **everyone))
        callers[caller] = tuple(rules)
    callers["id:solo"] = (ScopeRule("caller", "id:solo", **random_limits(rng)),)
    return callers


async def decide_alike(seed: int, memory: MemoryStore, redis: RedisStore, clock: FakeClock) -> int:
    rng = random.Random(seed)
    callers = random_callers(rng)
    stores = (memory, redis)
    held: list[tuple[str, str, Admission]] = []
    decided = 0
    for step in range(STEPS):
        action = rng.random()
        if action < 0.6:
            caller = rng.choice(sorted(callers))
            slot = f"s{seed}-{step}"
            count_rate = rng.random() < 0.9
            answers = [
                await store.admit(
                    callers[caller], slot=slot, lease=30.0, pauses=PAUSES, count_rate=count_rate
                )
                for store in stores
            ]
            assert answers[0] == answers[1], (seed, step, callers[caller], answers)
            decided += 1
            if answers[0].expires_ms:
                held.append((caller, slot, answers[0]))
        elif action < 0.7 and held:  # a call never made: its admission given back
            caller, slot, admission = held.pop(rng.randrange(len(held)))
            for store in stores:
                await store.unadmit(callers[caller], slot, admission.day)
        elif action < 0.8 and held:  # an ended call's minutes
            caller, _, admission = held[rng.randrange(len(held))]
            minutes = rng.choice([10_000, 45_000, 90_000])
            totals = [
                await store.add_minutes(callers[caller], minutes, admission.day) for store in stores
            ]
            assert totals[0] == totals[1], (seed, step, totals)
        else:
            clock.advance(rng.choice([0.3, 1.1, 5.0, 31.0]))
    day = int(clock() * 1000) // DAY_MS
    for rules in callers.values():
        for rule in rules:
            key = scope_key(rule.scope, rule.key)
            assert await memory.usage(key, day) == await redis.usage(key, day), (seed, key)
    return decided


async def test_memory_and_redis_decide_every_admission_alike(redis_url: str) -> None:
    decided = 0
    for seed in range(SEQUENCES):
        clock = FakeClock(1_700_000_000.0 + seed * 86_400)
        memory = MemoryStore(clock=clock)
        redis = RedisStore(redis_url, clock=clock, key_prefix=f"agree{seed}")
        try:
            decided += await decide_alike(seed, memory, redis, clock)
        finally:
            await redis.aclose()
            await memory.aclose()
    assert decided > SEQUENCES * STEPS // 2  # most steps were admissions, each compared
