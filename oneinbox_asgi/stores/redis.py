"""The Redis limit store: one budget shared by every replica, atomic on the server.

Each operation is one Lua script on one key (nothing spans keys),
run with EVALSHA; redis-py reloads a script the server forgot (NOSCRIPT after a
restart or SCRIPT FLUSH). Every call is bounded: connect and socket timeouts, a
bounded connection pool, and a deadline over the whole operation including its one
retry. A broken connection is replaced on the next call, so the app recovers by
itself when Redis comes back. redis-py is imported only when this store is made.

Times are integer milliseconds of Redis's own clock (``TIME``, read inside the scripts),
so replicas with skewed clocks still share one window, one lease and one day;
``RedisStore(url, clock=...)`` replaces it (tests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ..checks import positive_seconds
from ..deadline import within
from ..errors import ConfigurationError
from .base import (
    ENDED_MEMORY_SECONDS,
    Admission,
    CallEntry,
    Clock,
    Ended,
    ScopeRule,
    StoreUnavailable,
    Usage,
    duration_ms,
    entry_scope_keys,
    now_ms,
    scope_key,
)
from .redis_batch import ScriptBatch
from .redis_connect import client_errors, close, connect, guarded, redacted

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.commands.core import AsyncScript

DEFAULT_KEY_PREFIX = "oneinbox-asgi"
MAX_PLAIN_KEY_CHARS = 200

# KEYS[1]: the caller's window. ARGV: now_ms, cutoff_ms (now - period), limit, member, period_ms.
# Answers 0 (recorded) or the milliseconds until an attempt would be allowed.
HIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local limit = tonumber(ARGV[3])
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local edge = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  local wait = tonumber(edge[2]) - tonumber(ARGV[2])
  if wait < 1 then wait = 1 end
  return wait
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 0
"""

# KEYS[1]: the caller's slots. ARGV: now_ms, cap, slot, expires_ms, lease_ms.
# Answers the lease's end (ms), or 0 at the cap. Idempotent: taking a slot already held
# answers its lease's end, so a retried call cannot leak one.
ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZSCORE', KEYS[1], ARGV[3])
if held then return tonumber(held) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return tonumber(ARGV[4])
"""

# KEYS[1]: the caller's slots. ARGV: slot, now_ms. Answers 1 if it was held and unexpired.
RELEASE = """
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expires then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(expires) > tonumber(ARGV[2]) then return 1 end
return 0
"""


# KEYS: the call's entry, the live index, the caller's live calls. ARGV: call id, entry
# (JSON), deadline_ms, entry ttl_ms.
RECORD = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1
"""

# KEYS: the call's entry, the live index, the caller's live calls, the ended marker, then
# the slots of every scope the call holds one in. ARGV: call id, slot ('' for none), ended
# marker (JSON), its ttl_ms. Answers the entry the first time, nil after: the one door to
# "this call ended".
FINISH = """
local entry = redis.call('GET', KEYS[1])
if not entry then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
if ARGV[2] ~= '' then
  for i = 5, #KEYS do redis.call('ZREM', KEYS[i], ARGV[2]) end
end
return entry
"""

# The time in ms: the test clock's (ARGV) or else the server's own (TIME), so that every
# replica measures windows, leases and days on one clock.
NOW = """
local function now_ms(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# One start-call, every scope, atomically. KEYS[1]: the kill switch's set; then per scope
# its rate window, slots and day (a hash: d = day number, calls, ms). ARGV: now ('' for
# TIME), slot, lease_ms, count_rate (1/0), the pause targets (count, then each), scopes
# (count), then per scope: rate limit, period_ms, cap, calls per day, ms per day (-1: none),
# and the rate member. Answers {expires, scope index, what, retry_ms, day, calls today…}:
# expires 0 when refused. A refusal takes nothing (the attempt is counted at every rated
# scope unless refused by a rate). A retry of an admitted call answers its lease again.
ADMIT = (
    NOW
    + """
local now = now_ms(ARGV[1])
local day = math.floor(now / 86400000)
local np = tonumber(ARGV[5])
for i = 1, np do
  if redis.call('SISMEMBER', KEYS[1], ARGV[5 + i]) == 1 then return {0, 1, 'paused', 0, day} end
end
local ns = tonumber(ARGV[6 + np])
local at = 6 + np
local function key(i, j) return KEYS[1 + (i - 1) * 3 + j] end
local function arg(i, j) return ARGV[at + (i - 1) * 6 + j] end
if ns > 0 then
  local held = redis.call('ZSCORE', key(1, 2), ARGV[2])
  if held and tonumber(held) > now then return {tonumber(held), 0, '', 0, day} end
end
for i = 1, ns do
  local limit = tonumber(arg(i, 1))
  if limit >= 0 then
    local period = tonumber(arg(i, 2))
    redis.call('ZREMRANGEBYSCORE', key(i, 1), '-inf', now - period)
    local count = redis.call('ZCARD', key(i, 1))
    if count >= limit then
      local edge = redis.call('ZRANGE', key(i, 1), count - limit, count - limit, 'WITHSCORES')
      local wait = tonumber(edge[2]) + period - now
      if wait < 1 then wait = 1 end
      return {0, i, 'rate', wait, day}
    end
  end
end
local refused = false
for i = 1, ns do
  local cap = tonumber(arg(i, 3))
  if cap >= 0 then
    redis.call('ZREMRANGEBYSCORE', key(i, 2), '-inf', now)
    if redis.call('ZCARD', key(i, 2)) >= cap then refused = {0, i, 'cap', 0, day} break end
  end
end
if not refused then
  local tomorrow = (day + 1) * 86400000 - now
  for i = 1, ns do
    local today = redis.call('HMGET', key(i, 3), 'd', 'calls', 'ms')
    local calls, ms = 0, 0
    if tonumber(today[1]) == day then
      calls = tonumber(today[2]) or 0
      ms = tonumber(today[3]) or 0
    end
    local per_day, ms_per_day = tonumber(arg(i, 4)), tonumber(arg(i, 5))
    if per_day >= 0 and calls >= per_day then refused = {0, i, 'calls', tomorrow, day} break end
    if ms_per_day >= 0 and ms >= ms_per_day then
      refused = {0, i, 'minutes', tomorrow, day}
      break
    end
  end
end
if ARGV[4] == '1' then
  for i = 1, ns do
    if tonumber(arg(i, 1)) >= 0 then
      redis.call('ZADD', key(i, 1), now, arg(i, 6))
      redis.call('PEXPIRE', key(i, 1), arg(i, 2))
    end
  end
end
if refused then return refused end
local expires = now + tonumber(ARGV[3])
local answer = {expires, 0, '', 0, day}
for i = 1, ns do
  redis.call('ZADD', key(i, 2), expires, ARGV[2])
  redis.call('PEXPIRE', key(i, 2), ARGV[3])
  if tonumber(redis.call('HGET', key(i, 3), 'd')) ~= day then
    redis.call('HSET', key(i, 3), 'd', day, 'calls', 0, 'ms', 0)
  end
  answer[#answer + 1] = redis.call('HINCRBY', key(i, 3), 'calls', 1)
  redis.call('HSET', key(i, 3), 'cb', arg(i, 4), 'mb', arg(i, 5))
  redis.call('PEXPIRE', key(i, 3), 172800000)
end
return answer
"""
)

# Undo an admission whose call was never made. KEYS: per scope its slots and day.
# ARGV: slot, day.
UNADMIT = """
for i = 1, #KEYS, 2 do
  redis.call('ZREM', KEYS[i], ARGV[1])
  local today = redis.call('HMGET', KEYS[i + 1], 'd', 'calls')
  if tonumber(today[1]) == tonumber(ARGV[2]) and (tonumber(today[2]) or 0) > 0 then
    redis.call('HINCRBY', KEYS[i + 1], 'calls', -1)
  end
end
return 1
"""

# An ended call's milliseconds, counted on each scope's day. KEYS: the days. ARGV: ms, day.
ADD_MS = """
local totals = {}
for i = 1, #KEYS do
  if tonumber(redis.call('HGET', KEYS[i], 'd')) ~= tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[i], 'd', ARGV[2], 'calls', 0, 'ms', 0)
  end
  totals[i] = redis.call('HINCRBY', KEYS[i], 'ms', ARGV[1])
  redis.call('PEXPIRE', KEYS[i], 172800000)
end
return totals
"""

# A scope's usage. KEYS: its slots, its day. ARGV: now ('' for TIME), day.
USAGE = (
    NOW
    + """
local live = redis.call('ZCOUNT', KEYS[1], '(' .. now_ms(ARGV[1]), '+inf')
local today = redis.call('HMGET', KEYS[2], 'd', 'calls', 'ms', 'cb', 'mb')
if tonumber(today[1]) ~= tonumber(ARGV[2]) then return {live, 0, 0, -1, -1} end
return {live, tonumber(today[2]) or 0, tonumber(today[3]) or 0,
        tonumber(today[4]) or -1, tonumber(today[5]) or -1}
"""
)


class RedisStore:
    """Sliding-window rate limits and leased slots in Redis, shared by every replica.

    ``timeout`` bounds each operation (connect, command and its one retry), in seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        max_connections: int = 64,
        clock: Clock | None = None,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "store is a Redis URL but redis-py is not installed: "
                "pip install 'oneinbox-asgi[redis]'"
            ) from None
        #: None (the default): windows, leases and days on Redis's own TIME, one clock for
        #: every replica; ``clock`` then only serves what never reaches Redis.
        self._server_time = clock is None
        self.clock = time.time if clock is None else clock
        self.url = redacted(url)
        self.timeout = positive_seconds("RedisStore timeout", timeout)
        self.key_prefix = key_prefix
        # One server, Sentinel or Cluster, as the URL's scheme says (redis_connect.py).
        self._redis: Redis | RedisCluster = connect(
            url, timeout=self.timeout, max_connections=max_connections
        )
        self._hit: AsyncScript = self._redis.register_script(HIT)
        self._acquire: AsyncScript = self._redis.register_script(ACQUIRE)
        self._release: AsyncScript = self._redis.register_script(RELEASE)
        self._record: AsyncScript = self._redis.register_script(RECORD)
        self._finish: AsyncScript = self._redis.register_script(FINISH)
        self._admit: AsyncScript = self._redis.register_script(ADMIT)
        self._unadmit: AsyncScript = self._redis.register_script(UNADMIT)
        self._add_ms: AsyncScript = self._redis.register_script(ADD_MS)
        self._usage: AsyncScript = self._redis.register_script(USAGE)
        # Scripts asked for at the same moment go as one pipeline (redis_batch.py).
        self._batch = ScriptBatch(self._redis, guarded, timeout=self.timeout)

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, timeout={self.timeout!r})"

    def _key(self, kind: str, key: str) -> str:
        """``{<key_prefix>}<kind>:<key>``: the braces are a Redis Cluster hash tag, so every
        key of one store lives in one hash slot and any script may use any of them."""
        if len(key) > MAX_PLAIN_KEY_CHARS:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return f"{{{self.key_prefix}}}{kind}:{key}"

    async def _run(self, script: AsyncScript, key: str, *args: str | int) -> int:
        return int(await self._script(script, [key], *args))

    async def _script(self, script: AsyncScript, keys: list[str], *args: str | int) -> Any:
        return await self._bounded(self._batch.run(script, keys, args))

    async def _bounded(self, operation: Awaitable[Any]) -> Any:
        """One Redis operation within the deadline, its failures as ``StoreUnavailable``."""
        try:
            return await within(self.timeout, operation)
        except TimeoutError:
            raise StoreUnavailable(
                f"Redis at {self.url} did not answer within {self.timeout:g} s"
            ) from None
        except Exception as exc:
            if isinstance(exc, client_errors()):
                reason = str(exc).replace("\n", " ")[:200]
                raise StoreUnavailable(
                    f"Redis at {self.url}: {type(exc).__name__}: {reason}"
                ) from None
            raise

    async def hit(self, key: str, limit: int, period: float) -> float:
        now = now_ms(self.clock)
        period_ms = duration_ms(period)
        member = secrets.token_hex(8)
        wait_ms = await self._run(
            self._hit, self._key("rate", key), now, now - period_ms, limit, member, period_ms
        )
        return wait_ms / 1000

    async def acquire(self, key: str, slot: str, cap: int, lease: float) -> int:
        now = now_ms(self.clock)
        lease_ms = duration_ms(lease)
        return await self._run(
            self._acquire, self._key("slots", key), now, cap, slot, now + lease_ms, lease_ms
        )

    async def release(self, key: str, slot: str) -> bool:
        released = await self._run(self._release, self._key("slots", key), slot, now_ms(self.clock))
        return released == 1

    async def record_call(self, entry: CallEntry) -> None:
        # Kept a day past its deadline at most: the reaper ends it long before that.
        ttl_ms = max(entry.deadline_ms - now_ms(self.clock), 0) + duration_ms(ENDED_MEMORY_SECONDS)
        await self._script(
            self._record,
            [
                self._key("call", entry.call_id),
                self._key("calls", "live"),
                self._key("calls", entry.limit_key),
            ],
            entry.call_id,
            _entry_json(entry),
            entry.deadline_ms,
            ttl_ms,
        )

    async def call(self, call_id: str) -> tuple[CallEntry, bool] | None:
        live, ended = await self._bounded(
            self._redis.mget([self._key("call", call_id), self._key("ended", call_id)])
        )
        if live is not None:
            return _entry(live), False
        if ended is not None:
            return _entry(ended), True
        return None

    async def live_calls(self, limit_key: str) -> list[str]:
        members = await self._bounded(self._redis.smembers(self._key("calls", limit_key)))
        return sorted(_text(member) for member in members)

    async def due_calls(self, now_ms: int, limit: int) -> list[str]:
        members = await self._bounded(
            self._redis.zrangebyscore(
                self._key("calls", "live"), "-inf", now_ms, start=0, num=limit
            )
        )
        return [_text(member) for member in members]

    async def finish(self, call_id: str, ended_ms: int, reason: str) -> Ended | None:
        known = await self.call(call_id)
        if known is None or known[1]:
            return None
        entry = known[0]
        found = await self._script(
            self._finish,
            [
                self._key("call", call_id),
                self._key("calls", "live"),
                self._key("calls", entry.limit_key),
                self._key("ended", call_id),
                *(self._key("slots", key) for key in entry_scope_keys(entry)),
            ],
            call_id,
            entry.slot or "",
            _entry_json(entry),
            duration_ms(ENDED_MEMORY_SECONDS),
        )
        return Ended(_entry(found), ended_ms, reason) if found else None

    def _given_now(self) -> str:
        """The test clock's time for a script, or '' for the server's own TIME."""
        return "" if self._server_time else str(now_ms(self.clock))

    async def admit(
        self,
        rules: tuple[ScopeRule, ...],
        *,
        slot: str,
        lease: float,
        pauses: tuple[str, ...],
        count_rate: bool = True,
    ) -> Admission:
        keys = [self._key("paused", "targets")]
        args: list[str | int] = [
            self._given_now(),
            slot,
            duration_ms(lease),
            1 if count_rate else 0,
            len(pauses),
            *pauses,
            len(rules),
        ]
        for rule in rules:
            where = scope_key(rule.scope, rule.key)
            keys += [self._key("rate", where), self._key("slots", where), self._key("day", where)]
            limit, period = rule.rate if rule.rate is not None else (-1, 0.0)
            args += [
                limit,
                duration_ms(period) if rule.rate is not None else 0,
                -1 if rule.cap is None else rule.cap,
                -1 if rule.calls_per_day is None else rule.calls_per_day,
                -1 if rule.minutes_per_day is None else duration_ms(rule.minutes_per_day * 60),
                secrets.token_hex(8),
            ]
        answer = await self._script(self._admit, keys, *args)
        expires, index, what, retry, day = (
            int(answer[0]),
            int(answer[1]),
            _text(answer[2]),
            int(answer[3]),
            int(answer[4]),
        )
        if expires:
            return Admission(expires, day=day, calls_today=tuple(int(n) for n in answer[5:]))
        return Admission(0, (max(index - 1, 0), what), retry, day)

    async def unadmit(self, rules: tuple[ScopeRule, ...], slot: str, day: int) -> None:
        keys: list[str] = []
        for rule in rules:
            where = scope_key(rule.scope, rule.key)
            keys += [self._key("slots", where), self._key("day", where)]
        await self._script(self._unadmit, keys, slot, day)

    async def add_minutes(
        self, rules: tuple[ScopeRule, ...], milliseconds: int, day: int
    ) -> tuple[int, ...]:
        keys = [self._key("day", scope_key(rule.scope, rule.key)) for rule in rules]
        totals = await self._script(self._add_ms, keys, milliseconds, day)
        return tuple(int(total) for total in totals)

    async def usage(self, scope_key: str, day: int) -> Usage:
        keys = [self._key("slots", scope_key), self._key("day", scope_key)]
        live, calls, used, calls_budget, ms_budget = await self._script(
            self._usage, keys, self._given_now(), day
        )
        return Usage(
            int(live),
            int(calls),
            int(used),
            None if int(calls_budget) < 0 else int(calls_budget),
            None if int(ms_budget) < 0 else int(ms_budget) / 60_000,
        )

    async def set_paused(self, target: str, paused: bool) -> None:
        key = self._key("paused", "targets")
        if paused:
            await self._bounded(self._redis.sadd(key, target))
        else:
            await self._bounded(self._redis.srem(key, target))

    async def paused(self) -> list[str]:
        members = await self._bounded(self._redis.smembers(self._key("paused", "targets")))
        return sorted(_text(member) for member in members)

    async def now_ms(self) -> int:
        if not self._server_time:
            return now_ms(self.clock)
        seconds, micros = await self._bounded(self._redis.time())
        return int(seconds) * 1000 + int(micros) // 1000

    async def claim(self, name: str, seconds: float) -> bool:
        taken = await self._bounded(
            self._redis.set(self._key("claim", name), "1", nx=True, px=duration_ms(seconds))
        )
        return bool(taken)

    async def unclaim(self, name: str) -> None:
        await self._bounded(self._redis.delete(self._key("claim", name)))

    async def aclose(self) -> None:
        await self._batch.aclose()
        await close(self._redis)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_ENTRY_FIELDS = tuple(field.name for field in dataclasses.fields(CallEntry))


def _entry_json(entry: CallEntry) -> str:
    # Its fields are plain values: no need for dataclasses.asdict's deep copy.
    return json.dumps({name: getattr(entry, name) for name in _ENTRY_FIELDS}, separators=(",", ":"))


def _entry(raw: bytes | str) -> CallEntry:
    return CallEntry(**json.loads(raw))
