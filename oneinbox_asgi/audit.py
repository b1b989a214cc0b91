"""The audit trail: one line on the ``oneinbox_asgi`` logger per start, end, refusal and failure.

Each line reads ``call <event> outcome=… limit_key=… call_id=… agent_id=… latency_ms=…``
(plus ``status`` and ``reason`` for refusals) and carries the same fields as a dict in
``record.oneinbox`` for structured logging. It is the only line a refusal or failure
logs. Only these fields are logged: never a participant token, an end handle or the
key, and a ``reason`` is redacted where it was made. Nothing is formatted when the
logger would drop the line.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from .errors import FAILURES, CallError

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


def record(
    event: str,
    outcome: str,
    *,
    started: float,
    limit_key: str | None,
    agent_id: str | None = None,
    call_id: str | None = None,
    level: int = logging.INFO,
    exc_info: BaseException | None = None,
    **more: Any,
) -> None:
    """Log one audit line; ``started`` is the request's ``time.perf_counter()``."""
    if not logger.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "outcome": outcome,
        "limit_key": limit_key,
        "call_id": call_id,
        "agent_id": agent_id,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    fields.update((name, value) for name, value in more.items() if value is not None)
    text = " ".join(f"{name}={_field(value)}" for name, value in fields.items())
    logger.log(level, "call %s %s", event, text, extra={"oneinbox": fields}, exc_info=exc_info)


def refused(
    event: str,
    error: CallError,
    *,
    started: float,
    limit_key: str | None,
    agent_id: str | None = None,
    call_id: str | None = None,
) -> None:
    """The one line for a refusal: a warning when it is the service's fault."""
    level = logging.WARNING if error.code in FAILURES else logging.INFO
    record(
        event,
        error.code,
        started=started,
        limit_key=limit_key,
        agent_id=agent_id,
        call_id=call_id,
        level=level,
        status=error.status,
        reason=error.reason,
        exc_info=error.__cause__ if error.code == "internal_error" else None,
    )
