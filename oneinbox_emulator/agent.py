"""The demo agent: greets the caller, listens, answers, and may hang up.

It knows nothing of WebRTC or LiveKit: it speaks, publishes its state and transcript
lines, and hangs up through an ``AgentIO`` the room provides, and hears the caller through
``hear()``. That keeps the conversation logic testable with a fake IO and no browser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from .voice.media import Pcm, Samples, load_clip
from .voice.speech import SpeechDetector, Utterance

AgentState = Literal["initializing", "listening", "thinking", "speaking"]
Role = Literal["agent", "user"]


@dataclass(slots=True)
class AgentSettings:
    """How the demo agent behaves in each call (one instance per agent id, read at call start)."""

    greeting: str = "Hi{customer_name}! This is the OneInbox demo agent. Say something."
    """Transcript of the greeting; ``{customer_name}`` becomes " Ada" (or "" without a name)."""
    reply: Literal["spoken", "echo"] = "spoken"
    """Answer each utterance with a recorded sentence, or by playing the caller's audio back."""
    max_turns: int | None = None
    """After this many caller utterances the agent says goodbye and hangs up (0: right after
    the greeting). None: it never hangs up by itself."""
    max_duration: float | None = 600.0
    """Seconds from connection until the call is ended with ``max_duration``. None: no limit."""
    thinking_seconds: float = 0.3
    speech_threshold_db: float = -45.0
    min_speech_seconds: float = 0.25
    end_of_speech_seconds: float = 0.6


GREETING_CLIP = "greeting.ogg"
REPLY_CLIP = "reply.ogg"
GOODBYE_CLIP = "goodbye.ogg"
REPLY_TEXT = "I heard you. I'm an emulator, so I can't understand words, but your audio reached me."
ECHO_TEXT = "(plays back what it heard)"
GOODBYE_TEXT = "That's all for this demo. Goodbye!"


def preload_sounds() -> None:
    """Decode the agent's sounds now (they are cached) rather than during a first call."""
    for name in (GREETING_CLIP, REPLY_CLIP, GOODBYE_CLIP):
        load_clip(name)


class AgentIO(Protocol):
    """What the agent can do in its room."""

    def set_state(self, state: AgentState) -> None: ...

    async def speak(self, pcm: Pcm) -> None:
        """Play ``pcm`` (48 kHz mono) to the caller; return when it has been played."""

    def transcript(self, role: Role, text: str) -> None: ...

    def measured(self, metric: str, ms: float) -> None:
        """One latency sample for the call record (``llm_ttft``, ``eou_delay``, ...)."""

    def hang_up(self) -> None: ...


def greeting_text(template: str, variables: Mapping[str, Any]) -> str:
    name = str(variables.get("customer_name") or "").strip()
    return template.replace("{customer_name}", f" {name}" if name else "")


def _to_pcm(samples: Samples) -> Pcm:
    pcm: Pcm = np.clip(samples * 32768.0, -32768, 32767).astype(np.int16)
    return pcm


class DemoAgent:
    """One conversation. ``run()`` is the agent's whole life; cancel it to stop the agent."""

    def __init__(self, settings: AgentSettings, variables: Mapping[str, Any], io: AgentIO) -> None:
        self.settings = settings
        self.variables = dict(variables)
        self.io = io
        self.state: AgentState = "initializing"
        self.turns = 0
        self._detector = SpeechDetector(
            threshold_db=settings.speech_threshold_db,
            min_speech=settings.min_speech_seconds,
            end_silence=settings.end_of_speech_seconds,
        )
        self._utterances: asyncio.Queue[Utterance] = asyncio.Queue()

    def hear(self, samples: Samples, seconds: float) -> None:
        """One frame of the caller's audio. Heard only while listening: no barge-in."""
        if self.state != "listening":
            return
        utterance = self._detector.feed(samples, seconds)
        if utterance is not None:
            self._utterances.put_nowait(utterance)

    def _set_state(self, state: AgentState) -> None:
        if state == "listening":
            self._detector.reset()
        self.state = state
        self.io.set_state(state)

    async def _say(self, text: str, pcm: Pcm) -> None:
        self._set_state("speaking")
        self.io.transcript("agent", text)
        await self.io.speak(pcm)

    async def run(self) -> None:
        settings = self.settings
        await self._say(greeting_text(settings.greeting, self.variables), load_clip(GREETING_CLIP))
        while settings.max_turns is None or self.turns < settings.max_turns:
            self._set_state("listening")
            utterance = await self._utterances.get()
            self.turns += 1
            self.io.measured("eou_delay", utterance.end_delay * 1000)
            self.io.transcript("user", f"(caller spoke {utterance.seconds:.1f} s)")
            self._set_state("thinking")
            # The emulator's "LLM" is this pause: its time to first token is the pause as slept.
            thinking = time.monotonic()
            await asyncio.sleep(settings.thinking_seconds)
            self.io.measured("llm_ttft", (time.monotonic() - thinking) * 1000)
            if settings.max_turns is not None and self.turns >= settings.max_turns:
                break
            if settings.reply == "echo":
                await self._say(ECHO_TEXT, _to_pcm(utterance.samples))
            else:
                await self._say(REPLY_TEXT, load_clip(REPLY_CLIP))
        await self._say(GOODBYE_TEXT, load_clip(GOODBYE_CLIP))
        self.io.hang_up()
