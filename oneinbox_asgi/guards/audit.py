"""The audit trail: one line on the ``oneinbox_asgi`` logger per start, end, denial and failure.

Each line reads ``call <event> outcome=… caller=… call_id=… agent=… latency_ms=…``
and carries the same fields as a dict in ``record.oneinbox`` for structured logging.
Only these fields are logged: never a participant token, an end handle or the key.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass

logger = logging.getLogger("oneinbox_asgi")

_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
MAX_FIELD_CHARS = 200


def _field(value: object) -> str:
    """One logfmt value: bare when it is one plain word, else quoted with escapes; bounded."""
    if value is None:
        return "-"
    text = str(value)[:MAX_FIELD_CHARS]
    if text and not _UNSAFE.search(text) and '"' not in text and "=" not in text:
        return text
    return json.dumps(text)


@dataclass(slots=True)
class Trail:
    """What is known so far about one request, for its audit line."""

    started: float
    caller: str | None = None
    agent: str | None = None
    call_id: str | None = None

    @classmethod
    def begin(cls) -> Trail:
        return cls(time.perf_counter())

    def log(self, event: str, outcome: str, *, level: int = logging.INFO, **more: object) -> None:
        if not logger.isEnabledFor(level):
            return
        latency_ms = round((time.perf_counter() - self.started) * 1000, 1)
        fields: dict[str, object] = {
            "outcome": outcome,
            "caller": self.caller,
            "call_id": self.call_id,
            "agent": self.agent,
            "latency_ms": latency_ms,
            **more,
        }
        text = " ".join(f"{name}={_field(value)}" for name, value in fields.items())
        logger.log(level, "call %s %s", event, text, extra={"oneinbox": fields})
