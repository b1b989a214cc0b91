"""One call's room: the caller's session, the demo agent, and the call's timers.

A room lives exactly as long as its call: it is opened when the caller first joins and
closed (caller sent away, peer connections and tasks gone) when the call ends, whoever
ends it. It is also the agent's ``AgentIO``: speech goes to the agent's track, state and
transcripts go to the caller as LiveKit expects them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Coroutine
from typing import Any

from livekit.protocol import models

from ..agent import AgentSettings, AgentState, DemoAgent, Role
from ..registry import Call, CallRegistry, EndReason
from . import protocol
from .media import (
    AgentAudioTrack,
    AgentVoice,
    CallerAudio,
    Pcm,
    Samples,
    level_dbfs,
    pump_caller_audio,
)
from .session import SignalSession

log = logging.getLogger("oneinbox_emulator.voice")

AGENT_IDENTITY = "agent"
AGENT_NAME = "OneInbox demo agent"

# Why the caller is sent away, in LiveKit's terms, for each way a call can end.
LEAVE_REASONS: dict[str, models.DisconnectReason] = {
    "api_stop": protocol.DisconnectReason.PARTICIPANT_REMOVED,
    "agent_hangup": protocol.DisconnectReason.ROOM_DELETED,
    "max_duration": protocol.DisconnectReason.ROOM_CLOSED,
    "connection_lost": protocol.DisconnectReason.SIGNAL_CLOSE,
    "join_timeout": protocol.DisconnectReason.JOIN_FAILURE,
    "server_shutdown": protocol.DisconnectReason.SERVER_SHUTDOWN,
}


class VoiceRoom:
    def __init__(
        self,
        call: Call,
        registry: CallRegistry,
        settings: AgentSettings,
        *,
        departure_timeout: float,
    ) -> None:
        self.call = call
        self.registry = registry
        self.settings = settings
        self.departure_timeout = departure_timeout
        self.sid = protocol.new_sid("RM")
        self.name = call.room_name
        self.created_at = time.time()
        self.agent_sid = protocol.new_sid("PA")
        self.agent_track = protocol.TrackSpec(sid=protocol.new_sid("TR"), name="agent-voice")
        self.voice = AgentVoice()
        self.caller: SignalSession | None = None
        self.caller_audio = CallerAudio()
        self.agent = DemoAgent(settings, call.variables, self)
        self.closed = False
        self._agent_version = 1
        self._segments = itertools.count(1)
        self._started = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._departure: asyncio.Task[Any] | None = None
        self._greeted = False
        # The agent "answers" as the room opens (the caller's first join dispatches it).
        call.timings.answered = time.monotonic()

    # -- what the caller is told about the agent ----------------------------------------------

    def agent_info(self) -> Any:
        return protocol.participant_info(
            sid=self.agent_sid,
            identity=AGENT_IDENTITY,
            name=AGENT_NAME,
            joined_at=self.created_at,
            kind=models.ParticipantInfo.Kind.AGENT,
            tracks=(self.agent_track,),
            attributes={protocol.AGENT_STATE_ATTRIBUTE: self.agent.state},
            version=self._agent_version,
        )

    def track_owners(self) -> dict[str, str]:
        return {self.agent_track.sid: self.agent_sid}

    def new_agent_track(self) -> AgentAudioTrack:
        return AgentAudioTrack(self.voice, self.agent_track.sid)

    # -- sessions -------------------------------------------------------------------------------

    async def admit(self, session: SignalSession) -> None:
        """A caller joins; one already here (same call, e.g. a re-join) is sent away."""
        previous, self.caller = self.caller, session
        if self._departure is not None:
            self._departure.cancel()
            self._departure = None
        if previous is not None and not previous.closed:
            await previous.leave(protocol.DisconnectReason.DUPLICATE_IDENTITY)

    def session_connected(self, session: SignalSession) -> None:
        if session is not self.caller or self.closed:
            return
        self.registry.mark_joined(self.call.id)
        if not self._started:
            self._started = True
            self._spawn(self._run_agent())
            if self.settings.max_duration is not None:
                self._spawn(self._end_after(self.settings.max_duration, "max_duration"))

    def caller_track(self, session: SignalSession, track: Any) -> None:
        if session is self.caller and not self.closed:
            self._spawn(pump_caller_audio(track, self._hear))

    def session_gone(self, session: SignalSession) -> None:
        if session is not self.caller or self.closed:
            return
        self.caller = None
        if session.left_by_request:
            self._end("user_hangup")
        else:
            # The socket dropped without a leave: the client may re-join (resume is off, so it
            # does a full join with the same token). Wait a while before calling it over.
            self._departure = self._spawn(
                self._end_after(self.departure_timeout, "connection_lost")
            )

    # -- AgentIO ----------------------------------------------------------------------------------

    def set_state(self, state: AgentState) -> None:
        self._agent_version += 1
        if self.caller is not None:
            self.caller.send_signal(protocol.participant_update([self.agent_info()]))

    async def speak(self, pcm: Pcm) -> None:
        asked = time.monotonic()

        def first_frame() -> None:
            # Time to first audio of each utterance; the first one is also the greeting.
            now = time.monotonic()
            self.call.timings.add("tts_ttfb", (now - asked) * 1000)
            if not self._greeted:
                self._greeted = True
                self.call.timings.greeting = now

        played = self.voice.say(pcm, on_start=first_frame)
        # Bounded: if nobody pulls the audio (caller gone), the agent must not hang forever.
        # (asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
        # arrives as the future completes, and close() does both at once.)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pcm.size / 48_000 + 2.0):
                await played

    def transcript(self, role: Role, text: str) -> None:
        self.registry.add_message(self.call.id, role, text)
        session = self.caller
        if session is None:
            return
        agent = protocol.Speaker(AGENT_IDENTITY, self.agent_sid, self.agent_track.sid)
        caller = protocol.Speaker(session.identity, session.sid, session.microphone_sid)
        subject = agent if role == "agent" else caller
        segment_id = f"SG_{self.call.id}_{next(self._segments)}"
        elapsed_ms = int((time.time() - self.created_at) * 1000)
        session.send_data(
            protocol.transcription_packet(agent, subject, segment_id, text, elapsed_ms, elapsed_ms)
        )
        for packet in protocol.text_stream_packets(subject, segment_id, text):
            session.send_data(packet)

    def measured(self, metric: str, ms: float) -> None:
        self.call.timings.add(metric, ms)

    def hang_up(self) -> None:
        self._end("agent_hangup")

    def _hear(self, samples: Samples, seconds: float) -> None:
        level = level_dbfs(samples)
        voiced = level >= self.settings.speech_threshold_db
        self.caller_audio.add(level, seconds, voiced=voiced)
        self.agent.hear(samples, seconds)

    # -- ending -------------------------------------------------------------------------------

    def _end(self, reason: EndReason) -> None:
        """End the call; the registry tells the voice server, which closes this room."""
        call = self.registry.get(self.call.id)
        if call is None or call.status in ("completed", "failed"):
            return
        if call.status == "initiated":
            self.registry.fail(call.id, reason)
        else:
            self.registry.end(call.id, reason)

    async def _end_after(self, seconds: float, reason: EndReason) -> None:
        await asyncio.sleep(seconds)
        self._end(reason)

    async def _run_agent(self) -> None:
        try:
            await self.agent.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("demo agent failed in %s", self.name)
            self._end("agent_hangup")

    async def close(self, reason: str) -> None:
        """Send the caller away, stop the agent, close every connection (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.voice.hush()
        caller, self.caller = self.caller, None
        if caller is not None:
            leave_reason = LEAVE_REASONS.get(reason, protocol.DisconnectReason.ROOM_DELETED)
            await caller.leave(leave_reason)
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def open_tasks(self) -> int:
        return sum(1 for t in self._tasks if not t.done())
