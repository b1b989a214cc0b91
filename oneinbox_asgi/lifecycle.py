"""Knowing when a call ended, from OneInbox's word, and telling the host exactly once.

Four paths can see a call end: end-call (the browser hangs up), a webhook delivery, a
start-call at the cap asking OneInbox about the calls that hold the caller's slots
(reconciliation), and the reaper, which stops calls past ``max_call_seconds``. Each
goes through ``Lifecycle.end``, and so through the store's ``finish``: atomic, it
answers the call's entry to the first path only (and frees its slot), so
``on_call_ended`` fires once per call across every path and replica.

OneInbox's word is its call record (``GET /v1/calls/{id}``), never a webhook's body:
a delivery only says which call to look up. Statuses other than queued, initiated and
in_progress are terminal (ONEINBOX_API.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .context import CallEvent
from .guards.limits import Limits
from .hooks import EventHook, run_event_hook
from .stores.base import CallEntry, CallLedger, Ended, StoreUnavailable
from .telemetry import OFF, Telemetry
from .upstream import OneInboxClient, UpstreamError

logger = logging.getLogger("oneinbox_asgi")

LIVE_STATUSES = frozenset({"queued", "initiated", "in_progress"})
#: How long a start-call at the cap may spend asking OneInbox about the held calls.
RECONCILE_SECONDS = 2.0
#: One lookup per call id at a time, and at most one per this many seconds (webhooks).
LOOKUP_SECONDS = 2.0
#: The reaper's period, at most; a short ``max_call_seconds`` makes it tick faster.
REAP_EVERY_SECONDS = 5.0
#: Calls the reaper handles per tick: bounded work, the rest wait for the next one.
REAP_BATCH = 50
#: OneInbox writes the transcript and analysis a few seconds after the end.
RECORD_DELAYS = (3.0, 3.0, 6.0, 12.0)
#: Ended calls waiting for their record, at most (more are dropped, with a warning).
RECORD_QUEUE = 1000


def is_terminal(record: Mapping[str, Any] | None) -> bool:
    if record is None:
        return False
    status = record.get("status")
    return isinstance(status, str) and status.lower() not in LIVE_STATUSES


def has_transcript(record: Mapping[str, Any]) -> bool:
    """Whether OneInbox has written the post-call part of the record."""
    return bool(record.get("messages") or record.get("ai_summary") or record.get("analysis"))


class Lifecycle:
    """The calls this broker started, from start to the one ended event."""

    def __init__(
        self,
        *,
        ledger: CallLedger,
        upstream: OneInboxClient,
        limits: Limits,
        on_call_ended: EventHook | None,
        on_call_record: EventHook | None,
        telemetry: Telemetry = OFF,
    ) -> None:
        self.ledger = ledger
        self.upstream = upstream
        self.limits = limits
        max_call_seconds = limits.max_call_seconds
        self.on_call_ended = on_call_ended
        self.on_call_record = on_call_record
        self.telemetry = telemetry
        self.reap_every = min(REAP_EVERY_SECONDS, max(0.05, max_call_seconds / 4))
        #: Ended calls whose record to fetch; open while ``run`` runs.
        self._records: MemoryObjectSendStream[str] | None = None

    # -- the one door -------------------------------------------------------------------

    async def end(
        self,
        call_id: str,
        *,
        ended_by: str,
        record: Mapping[str, Any] | None = None,
        caller: Any = None,
    ) -> bool:
        """Report that a call ended; True if this report was the first (the host is told)."""
        reason = _text(record.get("end_reason")) if record else None
        ended = await self.ledger.finish(call_id, await self.limits.now_ms(), reason or ended_by)
        if ended is None:
            return False
        event = self._event(ended, ended_by=ended_by, reason=reason, record=record)
        entry = ended.entry
        try:
            await self.limits.count_minutes(
                self.limits.rules(entry.limit_key, entry.tenant),
                round((event.duration or 0.0) * 1000),
            )
        except StoreUnavailable as exc:
            logger.warning("call %s's minutes not counted: %s", call_id, exc)
        if caller is not None:  # the live caller object, not its JSON form
            event = _replace(event, caller=caller)
        self.telemetry.call_ended(event)
        await run_event_hook("on_call_ended", self.on_call_ended, event)
        if record is not None and has_transcript(record):
            await self._recorded(ended.entry, event)
        elif self._wants_records():
            self._want_record(call_id)
        return True

    def _event(
        self,
        ended: Ended,
        *,
        ended_by: str,
        reason: str | None,
        record: Mapping[str, Any] | None,
    ) -> CallEvent:
        entry = ended.entry
        duration = (ended.ended_ms - entry.started_ms) / 1000
        if record is not None and isinstance(record.get("duration_seconds"), int | float):
            duration = float(record["duration_seconds"])
        return CallEvent(
            call_id=entry.call_id,
            agent_id=entry.agent_id,
            caller=entry.caller,
            duration=max(0.0, duration),
            limit_key=entry.limit_key,
            agent=entry.agent,
            started_at=entry.started_ms / 1000,
            ended_at=ended.ended_ms / 1000,
            ended_by=ended_by,
            end_reason=reason,
            record=record,
        )

    # -- reconciliation at the cap ------------------------------------------------------

    async def reconcile(self, limit_key: str) -> int:
        """Ask OneInbox about the calls holding the caller's slots, in parallel and within
        ``RECONCILE_SECONDS``; end those it reports ended. Answers how many were freed.

        Anything but a terminal status keeps the slot: live, unknown (404), an error or
        no answer in time (failing closed).
        """
        call_ids = await self.ledger.live_calls(limit_key)
        freed = 0

        async def ask(call_id: str) -> None:
            nonlocal freed
            try:
                record = await self.upstream.get_call(call_id)
            except UpstreamError as exc:
                logger.info("reconciliation: OneInbox could not say if %s ended: %s", call_id, exc)
                return
            if is_terminal(record) and await self.end(
                call_id, ended_by="reconciliation", record=record
            ):
                freed += 1

        with anyio.move_on_after(RECONCILE_SECONDS):
            async with anyio.create_task_group() as group:
                for call_id in call_ids:
                    group.start_soon(ask, call_id)
        return freed

    # -- webhooks -----------------------------------------------------------------------

    async def delivered(self, call_id: str) -> str:
        """A webhook named ``call_id``: look the call up (once per ``LOOKUP_SECONDS``) and act
        on what OneInbox says. Answers what was done, for the audit line."""
        known = await self.ledger.call(call_id)
        if known is None:
            return "ignored"  # a call another service (or a phone) started
        entry, ended = known
        if ended and not self._wants_records():
            return "already_ended"
        lookup = f"lookup:{call_id}"
        if not await self.ledger.claim(lookup, LOOKUP_SECONDS):
            return "lookup_pending"
        try:
            record = await self.upstream.get_call(call_id)
        except UpstreamError:
            # OneInbox retries the delivery: let that retry look again (a failed lookup
            # spent nothing a forger could repeat, since OneInbox did not answer).
            await self.ledger.unclaim(lookup)
            raise
        if ended:
            if record is not None and has_transcript(record):
                await self._recorded(entry, _record_event(entry, record))
            return "already_ended"
        if not is_terminal(record):
            return "live"
        await self.end(call_id, ended_by="webhook", record=record)
        return "ended"

    # -- the post-call record -----------------------------------------------------------

    async def _recorded(self, entry: CallEntry, event: CallEvent) -> None:
        """Give the host OneInbox's full record once per call (across replicas), and its
        latency figures to the metrics."""
        if not self._wants_records():
            return
        if await self.ledger.claim(f"recorded:{entry.call_id}", 24 * 3600.0):
            self.telemetry.call_record(event)
            if self.on_call_record is not None:
                await run_event_hook("on_call_record", self.on_call_record, event)

    def _wants_records(self) -> bool:
        return self.on_call_record is not None or self.telemetry.wants_records()

    def _want_record(self, call_id: str) -> None:
        if self._records is None:
            return  # no runner (no lifespan): only webhooks bring the record then
        try:
            self._records.send_nowait(call_id)
        except anyio.WouldBlock:
            logger.warning("post-call records queue full; %s's record is not fetched", call_id)

    async def _fetch_records(self, incoming: MemoryObjectReceiveStream[str]) -> None:
        async with anyio.create_task_group() as group:
            async for call_id in incoming:
                group.start_soon(self._fetch_record, call_id)

    async def _fetch_record(self, call_id: str) -> None:
        for delay in RECORD_DELAYS:
            await anyio.sleep(delay)
            try:
                known = await self.ledger.call(call_id)
                record = await self.upstream.get_call(call_id)
            except (UpstreamError, StoreUnavailable) as exc:
                logger.info("post-call record of %s not fetched yet: %s", call_id, exc)
                continue
            if known is None or record is None:
                return
            if has_transcript(record):
                await self._recorded(known[0], _record_event(known[0], record))
                return

    # -- the reaper ---------------------------------------------------------------------

    async def reap(self) -> int:
        """One tick: stop the calls past their deadline (one replica at a time); answers
        how many ended."""
        if not await self.ledger.claim("reaper", self.reap_every * 2):
            return 0
        reaped = 0
        for call_id in await self.ledger.due_calls(await self.limits.now_ms(), REAP_BATCH):
            try:
                record = await self.upstream.get_call(call_id)
                if not is_terminal(record):
                    await self.upstream.stop_call(call_id)
                    record = await self.upstream.get_call(call_id)
            except UpstreamError as exc:
                logger.warning("max_call_seconds: could not stop %s yet: %s", call_id, exc)
                continue
            if record is not None and not is_terminal(record):
                record = {**record, "end_reason": record.get("end_reason") or "max_duration"}
            if await self.end(call_id, ended_by="max_call_seconds", record=record):
                reaped += 1
        return reaped

    async def run(self) -> None:
        """The background work, for the app's lifetime: the reaper and the post-call
        record fetches. Cancelled at shutdown; a failing tick is logged, never fatal."""
        send, receive = anyio.create_memory_object_stream[str](RECORD_QUEUE)
        self._records = send
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._fetch_records, receive)
                while True:
                    try:
                        await self.reap()
                    except StoreUnavailable as exc:
                        logger.warning("max_call_seconds: the store is unavailable: %s", exc)
                    except Exception:
                        logger.exception("max_call_seconds: the reaper's tick failed")
                    await anyio.sleep(self.reap_every)
        finally:
            self._records = None
            send.close()
            receive.close()


def _record_event(entry: CallEntry, record: Mapping[str, Any]) -> CallEvent:
    """What ``on_call_record`` receives: the call as the store knows it, OneInbox's record."""
    duration = record.get("duration_seconds")
    return CallEvent(
        call_id=entry.call_id,
        agent_id=entry.agent_id,
        caller=entry.caller,
        duration=float(duration) if isinstance(duration, int | float) else None,
        limit_key=entry.limit_key,
        agent=entry.agent,
        started_at=entry.started_ms / 1000,
        end_reason=_text(record.get("end_reason")),
        record=record,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _replace(event: CallEvent, **changes: Any) -> CallEvent:
    return dataclasses.replace(event, **changes)
