"""The emulator's call records and their life cycle.

initiated (created) → in_progress (the caller's media connected) → completed or failed
(ended). A moment after the end the record is *written*: transcript, summary, analysis,
latency, credits and cost appear, as OneInbox fills them a few seconds after a call.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# Names, not ``from . import report``: that form reads as an import of the package itself.
from .report import CallTimings, cost_cents, credits
from .report import analysis as analyse
from .report import latency as latency_figures
from .report import summary as summarise

CallStatus = Literal["queued", "initiated", "in_progress", "completed", "failed"]
EndReason = Literal[
    "api_stop",
    "user_hangup",
    "max_duration",
    "agent_hangup",
    "silence_timeout",
    "connection_lost",
    "join_timeout",
]
CallEventKind = Literal["created", "started", "ended", "written"]
ENDED: tuple[CallStatus, ...] = ("completed", "failed")


def iso(ts: float | None) -> str | None:
    """A Unix time as OneInbox writes it: ISO 8601, UTC, ``Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Call:
    id: str
    agent_id: str
    room_name: str
    variables: dict[str, Any]
    metadata: dict[str, Any]
    created_at: float
    status: CallStatus = "initiated"
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReason | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    """Written as the call goes (the agent's and the caller's lines)."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The transcript as the record shows it: empty until the record is written."""
    written: bool = False
    ai_summary: str | None = None
    analysis: dict[str, Any] | None = None
    latency: dict[str, Any] | None = None
    timings: CallTimings = field(default_factory=CallTimings)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from the caller connecting to the end; 0 for a call that never connected."""
        if self.ended_at is None:
            return None
        if self.started_at is None:
            return 0.0
        return round(self.ended_at - self.started_at, 3)

    def record(self) -> dict[str, Any]:
        """The call as GET /v1/calls/{id} documents it."""
        duration = self.duration_seconds
        # Credits and cost are part of what is written after the call, like the transcript.
        billed = self.written and duration is not None
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "type": "web",
            "status": self.status,
            "room_name": self.room_name,
            "variables": self.variables,
            "metadata": self.metadata,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_seconds": duration,
            "end_reason": self.end_reason,
            "messages": list(self.messages),
            "recording_url": None,
            "analysis": self.analysis,
            "ai_summary": self.ai_summary,
            "latency": self.latency,
            "credits_used": credits(duration) if billed and duration is not None else None,
            "cost_cents": cost_cents(duration) if billed and duration is not None else None,
            "created_at": iso(self.created_at),
        }


EndListener = Callable[[Call], None]
EventListener = Callable[[CallEventKind, Call], None]


class CallRegistry:
    """All calls the emulator knows, and who wants to hear when one ends.

    Lives in one event loop; every method is synchronous, so no locking is needed.

    ``deferred_records``: False (the default, for the API alone) writes a call's record the
    moment it ends; True leaves it to whoever calls ``write_record`` (the ``CallLifecycle``
    does, a configurable moment later, as OneInbox does).
    """

    def __init__(
        self,
        agents: Iterable[str] = ("agt_demo",),
        *,
        clock: Callable[[], float] = time.time,
        deferred_records: bool = False,
    ) -> None:
        self.agents = set(agents)
        self.deferred_records = deferred_records
        self._clock = clock
        self._calls: dict[str, Call] = {}
        self._by_room: dict[str, str] = {}
        self._end_listeners: list[EndListener] = []
        self._listeners: list[EventListener] = []

    def now(self) -> float:
        return self._clock()

    def create(
        self,
        agent_id: str,
        variables: dict[str, Any],
        metadata: dict[str, Any],
        *,
        room_name: str | None = None,
        setup_ms: float | None = None,
    ) -> Call:
        """A new ``initiated`` call; ``room_name`` may be chosen first (the token names it),
        and ``setup_ms`` is how long creating it took (for the record's latency)."""
        suffix = room_name.removeprefix("room_") if room_name else secrets.token_hex(8)
        call_id = "call_" + suffix
        call = Call(
            id=call_id,
            agent_id=agent_id,
            room_name=room_name or "room_" + suffix,
            variables=dict(variables),
            metadata=dict(metadata),
            created_at=self._clock(),
        )
        call.timings.created = time.monotonic()
        call.timings.setup_ms = setup_ms
        self._calls[call.id] = call
        self._by_room[call.room_name] = call.id
        self._announce("created", call)
        return call

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def by_room(self, room_name: str) -> Call | None:
        call_id = self._by_room.get(room_name)
        return None if call_id is None else self._calls.get(call_id)

    def list(
        self,
        *,
        agent_id: str | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[Call], int]:
        matches = [
            c
            for c in reversed(self._calls.values())
            if (agent_id is None or c.agent_id == agent_id)
            and (status is None or c.status == status)
        ]
        return matches[offset : offset + limit], len(matches)

    def mark_joined(self, call_id: str) -> None:
        """The caller's media connected: the call is live."""
        call = self._calls[call_id]
        if call.status == "initiated":
            call.status = "in_progress"
            call.started_at = self._clock()
            call.timings.active = time.monotonic()
            self._announce("started", call)

    def add_message(self, call_id: str, role: str, text: str) -> None:
        """A transcript line; it shows in the record's ``messages`` once the record is written."""
        call = self._calls[call_id]
        started = call.started_at or call.created_at
        call.transcript.append(
            {"role": role, "content": text, "time": round(self._clock() - started, 3)}
        )

    def end(self, call_id: str, reason: EndReason) -> Call:
        """Complete a call (a no-op if it already ended) and tell the listeners once."""
        return self._finish(call_id, "completed", reason)

    def fail(self, call_id: str, reason: EndReason) -> Call:
        """End a call whose caller never got connected (a no-op if it already ended)."""
        return self._finish(call_id, "failed", reason)

    def _finish(self, call_id: str, status: CallStatus, reason: EndReason) -> Call:
        call = self._calls[call_id]
        if call.ended:
            return call
        call.status = status
        call.ended_at = self._clock()
        call.end_reason = reason
        for listener in list(self._end_listeners):
            listener(call)
        self._announce("ended", call)
        if not self.deferred_records:
            self.write_record(call_id)
        return call

    def write_record(self, call_id: str) -> Call:
        """Fill what OneInbox writes after a call: transcript, summary, analysis, latency.

        Once per ended call; a no-op before the end or when already written.
        """
        call = self._calls[call_id]
        if not call.ended or call.written:
            return call
        duration = call.duration_seconds or 0.0
        call.messages = list(call.transcript)
        call.latency = latency_figures(call.timings)
        call.analysis = analyse(
            status=call.status, end_reason=call.end_reason, messages=call.messages
        )
        call.ai_summary = summarise(
            variables=call.variables,
            end_reason=call.end_reason,
            duration_seconds=duration,
            messages=call.messages,
        )
        call.written = True
        self._announce("written", call)
        return call

    def on_end(self, listener: EndListener) -> None:
        """Register ``listener(call)``, called once when any call ends (the voice server kicks)."""
        self._end_listeners.append(listener)

    def subscribe(self, listener: EventListener) -> None:
        """Register ``listener(kind, call)`` for every call's created / started / ended /
        written, each once per call, in that order (after the ``on_end`` listeners)."""
        self._listeners.append(listener)

    def _announce(self, kind: CallEventKind, call: Call) -> None:
        for listener in list(self._listeners):
            listener(kind, call)

    # -- usage -------------------------------------------------------------------------------

    def usage(self, *, max_calls_per_day: int | None) -> dict[str, Any]:
        """GET /v1/usage: today's and this month's calls (UTC), minutes and cost."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        today = self.calls_today()
        this_month = [c for c in self._calls.values() if c.created_at >= month]
        seconds = sum(c.duration_seconds or 0.0 for c in this_month if c.ended)
        return {
            "calls_made_today": today,
            "max_calls_per_day": max_calls_per_day,
            "calls_remaining_today": (
                None if max_calls_per_day is None else max(0, max_calls_per_day - today)
            ),
            "calls_this_month": len(this_month),
            "minutes_used_this_month": round(seconds / 60, 2),
            "cost_cents_this_month": cost_cents(seconds),
            "period_start": iso(month),
        }

    def calls_today(self) -> int:
        """Calls created since 00:00 UTC (OneInbox's daily figures reset then)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        return sum(1 for c in self._calls.values() if c.created_at >= day)
