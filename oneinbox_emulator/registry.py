"""The emulator's call records and their life cycle: initiated → in_progress → completed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

CallStatus = Literal["queued", "initiated", "in_progress", "completed", "failed"]
EndReason = Literal[
    "api_stop", "user_hangup", "max_duration", "agent_hangup", "silence_timeout", "connection_lost"
]


def _iso(ts: float | None) -> str | None:
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
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.started_at, 3)

    def record(self) -> dict[str, Any]:
        """The call as GET /v1/calls/{id} documents it."""
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "type": "web",
            "status": self.status,
            "room_name": self.room_name,
            "variables": self.variables,
            "metadata": self.metadata,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration_seconds": self.duration_seconds,
            "end_reason": self.end_reason,
            "messages": list(self.messages),
            "recording_url": None,
            "created_at": _iso(self.created_at),
        }


EndListener = Callable[[Call], None]


class CallRegistry:
    """All calls the emulator knows, and who wants to hear when one ends.

    Lives in one event loop; every method is synchronous, so no locking is needed.
    """

    def __init__(
        self,
        agents: Iterable[str] = ("agt_demo",),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agents = set(agents)
        self._clock = clock
        self._calls: dict[str, Call] = {}
        self._by_room: dict[str, str] = {}
        self._end_listeners: list[EndListener] = []

    def create(self, agent_id: str, variables: dict[str, Any], metadata: dict[str, Any]) -> Call:
        call_id = "call_" + secrets.token_hex(8)
        call = Call(
            id=call_id,
            agent_id=agent_id,
            room_name="room_" + call_id.removeprefix("call_"),
            variables=dict(variables),
            metadata=dict(metadata),
            created_at=self._clock(),
        )
        self._calls[call.id] = call
        self._by_room[call.room_name] = call.id
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
        call = self._calls[call_id]
        if call.status == "initiated":
            call.status = "in_progress"
            call.started_at = self._clock()

    def add_message(self, call_id: str, role: str, text: str) -> None:
        call = self._calls[call_id]
        started = call.started_at or call.created_at
        call.messages.append(
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
        if call.status in ("completed", "failed"):
            return call
        now = self._clock()
        call.status = status
        call.started_at = call.started_at or now
        call.ended_at = now
        call.end_reason = reason
        for listener in list(self._end_listeners):
            listener(call)
        return call

    def on_end(self, listener: EndListener) -> None:
        """Register ``listener(call)``, called once when any call ends (the voice server kicks)."""
        self._end_listeners.append(listener)
