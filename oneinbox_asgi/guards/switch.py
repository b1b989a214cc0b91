"""The kill switch and the usage report: operations on a store shared by every service.

``KillSwitch(store).pause(tenant="acme")`` stops new calls for that tenant in every
service and replica sharing the store, at their next start-call (the switch is read in
the same atomic step as the limits: no cache, no delay); ``resume`` undoes it. With
``stop_live=True`` the calls already live in that scope are also stopped at OneInbox;
the replicas then see them end (webhooks, reconciliation, the reaper).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..stores.base import (
    DAY_MS,
    BudgetStore,
    CallLedger,
    Usage,
    pause_target,
    scope_key,
)
from ..upstream import OneInboxClient, UpstreamError

#: Live calls looked at per ``pause(stop_live=True)``, at most.
MAX_STOPPED = 10_000


@dataclass(frozen=True, slots=True)
class Stopped:
    """What ``pause(stop_live=True)`` did: calls stopped, and ids it could not stop."""

    stopped: int
    failed: tuple[str, ...] = ()


class KillSwitch:
    """Pause and resume new calls globally, per tenant or per agent; report usage."""

    def __init__(self, store: BudgetStore, *, upstream: OneInboxClient | None = None) -> None:
        if not isinstance(store, BudgetStore):
            raise TypeError("the kill switch needs a MemoryStore or RedisStore")
        self.store = store
        self.upstream = upstream

    async def pause(
        self,
        *,
        everyone: bool = False,
        tenant: str | None = None,
        agent: str | None = None,
        stop_live: bool = False,
    ) -> Stopped:
        """Refuse new calls (503 ``calls_paused``) in the scope; optionally stop the live
        calls there at OneInbox (needs ``upstream``)."""
        target = _target(everyone, tenant, agent)
        await self.store.set_paused(target, True)
        if not stop_live:
            return Stopped(0)
        if self.upstream is None or not isinstance(self.store, CallLedger):
            raise TypeError("stop_live needs a OneInboxClient (upstream=) and a call ledger")
        stopped, failed = 0, []
        now = await self.store.now_ms()
        for call_id in await self.store.due_calls(now + 100 * DAY_MS, MAX_STOPPED):
            known = await self.store.call(call_id)
            if known is None or known[1]:
                continue
            entry = known[0]
            if (tenant is not None and entry.tenant != tenant) or (
                agent is not None and entry.agent_id != agent
            ):
                continue
            try:
                await self.upstream.stop_call(call_id)
            except UpstreamError:
                failed.append(call_id)
            else:
                stopped += 1
        return Stopped(stopped, tuple(failed))

    async def resume(
        self, *, everyone: bool = False, tenant: str | None = None, agent: str | None = None
    ) -> None:
        await self.store.set_paused(_target(everyone, tenant, agent), False)

    async def paused(self) -> list[str]:
        """What is switched off: ``global``, ``tenant:<name>``, ``agent:<id>``."""
        return await self.store.paused()

    async def usage(self, scope: str, name: str = "all") -> Usage:
        """Today's (UTC) usage of one scope: ``global``, ``tenant`` by name, ``caller`` by
        limit key (``id:<caller>``)."""
        day = (await self.store.now_ms()) // DAY_MS
        return await self.store.usage(scope_key(scope, name), day)


def _target(everyone: bool, tenant: str | None, agent: str | None) -> str:
    chosen = [
        name
        for name, value in (("global", everyone), ("tenant", tenant), ("agent", agent))
        if value
    ]
    if len(chosen) != 1:
        raise ValueError("name exactly one of: everyone=True, tenant=, agent=")
    if chosen[0] == "global":
        return pause_target("global")
    return pause_target(chosen[0], tenant if chosen[0] == "tenant" else agent)
