"""What OneInbox writes on a call record a moment after the call ends, from what the call
measured: the latency figures, a summary, an analysis, credits and cost.

The emulator has no language model: the summary and the analysis are made from the call's
own facts (who spoke how often, how it ended), so they are true, if plain.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LATENCY_METRICS = ("llm_ttft", "tts_ttfb", "eou_delay")
"""Per-turn figures: the agent's think time, time to its first audio, end-of-utterance delay."""
CONNECT_STEPS = (
    "setup_ms",
    "dispatch_to_answer_ms",
    "answer_to_active_ms",
    "active_to_greeting_ms",
)

COST_CENTS_PER_MINUTE = 10.0
"""Made up (OneInbox publishes no price here); 1 credit = 1 minute, as OneInbox documents."""


@dataclass(slots=True)
class CallTimings:
    """What a call measured while it ran; all times from ``time.monotonic()``."""

    setup_ms: float | None = None
    """How long the API took to create the call (room, token)."""
    created: float | None = None
    answered: float | None = None
    """The agent joined the room (the caller's first join opened it)."""
    active: float | None = None
    """The caller's media connected."""
    greeting: float | None = None
    """The first audio frame of the agent's greeting went out."""
    samples: dict[str, list[float]] = field(default_factory=dict)
    """Per-turn figures in milliseconds, by metric (``LATENCY_METRICS``)."""

    def add(self, metric: str, ms: float) -> None:
        self.samples.setdefault(metric, []).append(ms)


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 1)


def _summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"avg_ms": None, "p50_ms": None, "min_ms": None, "max_ms": None, "samples": 0}
    return {
        "avg_ms": round(statistics.fmean(values), 1),
        "p50_ms": round(statistics.median(values), 1),
        "min_ms": round(min(values), 1),
        "max_ms": round(max(values), 1),
        "samples": len(values),
    }


def latency(timings: CallTimings) -> dict[str, Any]:
    """``{llm_ttft, tts_ttfb, eou_delay}`` summaries plus ``connect.{...}`` steps, in ms."""
    figures: dict[str, Any] = {m: _summary(timings.samples.get(m, [])) for m in LATENCY_METRICS}
    figures["connect"] = {
        "setup_ms": None if timings.setup_ms is None else round(timings.setup_ms, 1),
        "dispatch_to_answer_ms": _ms(timings.created, timings.answered),
        "answer_to_active_ms": _ms(timings.answered, timings.active),
        "active_to_greeting_ms": _ms(timings.active, timings.greeting),
    }
    return figures


def credits(duration_seconds: float) -> float:
    return round(duration_seconds / 60, 4)


def cost_cents(duration_seconds: float) -> float:
    return round(credits(duration_seconds) * COST_CENTS_PER_MINUTE, 2)


def analysis(
    *, status: str, end_reason: str | None, messages: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    user_turns = sum(1 for m in messages if m.get("role") == "user")
    agent_turns = sum(1 for m in messages if m.get("role") == "agent")
    return {
        "successful": status == "completed" and user_turns > 0,
        "user_turns": user_turns,
        "agent_turns": agent_turns,
        "outcome": end_reason,
    }


_ENDINGS = {
    "user_hangup": "the caller hung up",
    "api_stop": "it was stopped through the API",
    "agent_hangup": "the agent said goodbye and hung up",
    "max_duration": "it reached its maximum duration",
    "connection_lost": "the caller's connection was lost",
    "join_timeout": "the caller never joined",
    "silence_timeout": "the caller stayed silent",
}


def summary(
    *,
    variables: Mapping[str, Any],
    end_reason: str | None,
    duration_seconds: float,
    messages: Sequence[Mapping[str, Any]],
) -> str:
    name = str(variables.get("customer_name") or "").strip() or "the caller"
    ending = _ENDINGS.get(end_reason or "", f"it ended ({end_reason})")
    if not messages:
        return f"No conversation took place with {name}; {ending}."
    spoke = sum(1 for m in messages if m.get("role") == "user")
    times = "once" if spoke == 1 else f"{spoke} times"
    said = f"{name} spoke {times}" if spoke else f"{name} did not speak"
    return (
        f"The demo agent greeted {name}; {said}. The call lasted {duration_seconds:.0f} s "
        f"and ended because {ending}."
    )
