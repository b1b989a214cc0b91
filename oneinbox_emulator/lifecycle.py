"""What happens to a call around its conversation, as OneInbox does it: a caller who never
joins fails the call (``join_timeout``), the record is written a moment after the end, and
webhooks announce each step.

It listens to the registry's events. Those may come from any thread (a test may end a call
from its own), so every reaction is moved onto the emulator's event loop first; the timers
are ``call_later`` handles, cancelled at shutdown with the webhook deliveries.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from .registry import Call, CallEventKind, CallRegistry, iso
from .webhooks import WebhookSender

log = logging.getLogger("oneinbox_emulator.lifecycle")


def webhook_payloads(kind: CallEventKind, call: Call, now: float) -> list[dict[str, Any]]:
    """The webhook events for one registry event, shaped like ONEINBOX_API.md's examples.

    ``created_at`` is when the event happened; the rest describes the call at that moment.
    """
    base = {"call_id": call.id, "agent_id": call.agent_id, "status": call.status}
    at = iso(now)
    if kind == "started":
        return [
            {
                "event": "call.started",
                **base,
                "room_name": call.room_name,
                "metadata": call.metadata,
                "started_at": iso(call.started_at),
                "created_at": at,
            }
        ]
    if kind == "ended":
        return [
            {
                "event": "call.failed" if call.status == "failed" else "call.ended",
                **base,
                "end_reason": call.end_reason,
                "duration_seconds": call.duration_seconds,
                "started_at": iso(call.started_at),
                "ended_at": iso(call.ended_at),
                "metadata": call.metadata,
                "created_at": at,
            }
        ]
    if kind == "written":
        record = call.record()
        events = []
        if record["messages"]:
            events.append(
                {
                    "event": "transcript.final",
                    **base,
                    "messages": record["messages"],
                    "created_at": at,
                }
            )
        events.append(
            {
                "event": "call.analyzed",
                **base,
                "end_reason": call.end_reason,
                "duration_seconds": record["duration_seconds"],
                "ai_summary": record["ai_summary"],
                "analysis": record["analysis"],
                "credits_used": record["credits_used"],
                "cost_cents": record["cost_cents"],
                "created_at": at,
            }
        )
        return events
    return []


class CallLifecycle:
    """Join timeouts, delayed record writing and webhooks for every call of a registry.

    ``join_timeout``: seconds a created call may wait for its caller's media before it fails
    with ``join_timeout`` (None: forever). ``record_delay``: seconds from a call's end to its
    record being written (0: at once). The registry must have ``deferred_records=True``.
    """

    def __init__(
        self,
        registry: CallRegistry,
        *,
        join_timeout: float | None = 60.0,
        record_delay: float = 2.0,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.registry = registry
        self.join_timeout = join_timeout
        self.record_delay = record_delay
        self.webhooks = webhooks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._join_timers: dict[str, asyncio.TimerHandle] = {}
        self._record_timers: dict[str, asyncio.TimerHandle] = {}
        self._closed = False
        registry.subscribe(self._on_event)

    def start(self) -> None:
        """Adopt the running loop (the server's); called at lifespan startup."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closed = False
        if self.webhooks is not None:
            self.webhooks.reopen()

    async def aclose(self) -> None:
        """Cancel every timer and webhook delivery (server shutdown)."""
        self._closed = True
        for handle in [*self._join_timers.values(), *self._record_timers.values()]:
            handle.cancel()
        self._join_timers.clear()
        self._record_timers.clear()
        if self.webhooks is not None:
            await self.webhooks.aclose()

    @property
    def pending_timers(self) -> int:
        return len(self._join_timers) + len(self._record_timers)

    # -- events -----------------------------------------------------------------------------

    def _on_event(self, kind: CallEventKind, call: Call) -> None:
        loop = self._loop
        if loop is None:
            # No lifespan (the app driven in-process): adopt the caller's loop if it has one.
            try:
                self.start()
            except RuntimeError:
                self._react_without_loop(kind, call)
                return
            loop = self._loop
        assert loop is not None
        if threading.get_ident() == self._loop_thread:
            self._react(kind, call)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._react, kind, call)

    def _react_without_loop(self, kind: CallEventKind, call: Call) -> None:
        # Nothing can wait: write the record at once; timers and webhooks need a loop.
        if kind == "ended":
            self.registry.write_record(call.id)

    def _react(self, kind: CallEventKind, call: Call) -> None:
        if self._closed:
            return
        if kind == "created" and self.join_timeout is not None:
            self._join_timers[call.id] = self._later(self.join_timeout, self._join_expired, call.id)
        elif kind in ("started", "ended"):
            timer = self._join_timers.pop(call.id, None)
            if timer is not None:
                timer.cancel()
        self._announce(kind, call)
        if kind == "ended":
            if self.record_delay <= 0:
                self.registry.write_record(call.id)
            else:
                self._record_timers[call.id] = self._later(
                    self.record_delay, self._write_record, call.id
                )

    def _announce(self, kind: CallEventKind, call: Call) -> None:
        if self.webhooks is None:
            return
        for payload in webhook_payloads(kind, call, self.registry.now()):
            self.webhooks.send(payload)

    def _later(
        self, delay: float, callback: Callable[[str], None], call_id: str
    ) -> asyncio.TimerHandle:
        assert self._loop is not None
        return self._loop.call_later(delay, callback, call_id)

    def _join_expired(self, call_id: str) -> None:
        self._join_timers.pop(call_id, None)
        call = self.registry.get(call_id)
        if call is not None and call.status == "initiated":
            log.info("call %s: no caller joined in %s s", call_id, self.join_timeout)
            self.registry.fail(call_id, "join_timeout")

    def _write_record(self, call_id: str) -> None:
        self._record_timers.pop(call_id, None)
        self.registry.write_record(call_id)
