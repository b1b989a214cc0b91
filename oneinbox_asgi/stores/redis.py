"""The Redis limit store: one budget shared by every replica, atomic on the server.

Each operation is one Lua script on one key (nothing spans keys),
run with EVALSHA; redis-py reloads a script the server forgot (NOSCRIPT after a
restart or SCRIPT FLUSH). Every call is bounded: connect and socket timeouts, a
bounded connection pool, and a deadline over the whole operation including its one
retry. A broken connection is replaced on the next call, so the app recovers by
itself when Redis comes back. redis-py is imported only when this store is made.

Times are integer milliseconds of the store's ``clock`` (wall clock by default):
replicas need synchronised clocks (NTP), as any skew shifts their windows by as much.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import anyio

from ..checks import positive_seconds
from ..errors import ConfigurationError
from .base import (
    ENDED_MEMORY_SECONDS,
    CallEntry,
    Clock,
    Ended,
    StoreUnavailable,
    duration_ms,
    now_ms,
)
from .redis_connect import client_errors, close, connect, redacted

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

# KEYS: the call's entry, the live index, the caller's live calls, the caller's slots, the
# ended marker. ARGV: call id, slot ('' for none), ended marker (JSON), its ttl_ms.
# Answers the entry the first time, nil after: the one door to "this call ended".
FINISH = """
local entry = redis.call('GET', KEYS[1])
if not entry then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[4], ARGV[2]) end
redis.call('SET', KEYS[5], ARGV[3], 'PX', ARGV[4])
return entry
"""


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
        clock: Clock = time.time,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "store is a Redis URL but redis-py is not installed: "
                "pip install 'oneinbox-asgi[redis]'"
            ) from None
        self.clock = clock
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
        return await self._bounded(script(keys=keys, args=list(args)))

    async def _bounded(self, operation: Awaitable[Any]) -> Any:
        """One Redis operation within the deadline, its failures as ``StoreUnavailable``."""
        try:
            with anyio.fail_after(self.timeout):
                return await operation
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
            json.dumps(dataclasses.asdict(entry), separators=(",", ":")),
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
                self._key("slots", entry.limit_key),
                self._key("ended", call_id),
            ],
            call_id,
            entry.slot or "",
            json.dumps(dataclasses.asdict(entry), separators=(",", ":")),
            duration_ms(ENDED_MEMORY_SECONDS),
        )
        return Ended(_entry(found), ended_ms, reason) if found else None

    async def claim(self, name: str, seconds: float) -> bool:
        taken = await self._bounded(
            self._redis.set(self._key("claim", name), "1", nx=True, px=duration_ms(seconds))
        )
        return bool(taken)

    async def unclaim(self, name: str) -> None:
        await self._bounded(self._redis.delete(self._key("claim", name)))

    async def aclose(self) -> None:
        await close(self._redis)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(raw: bytes | str) -> CallEntry:
    return CallEntry(**json.loads(raw))
