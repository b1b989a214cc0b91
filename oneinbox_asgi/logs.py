"""The audit trail as JSON lines, for log pipelines (docs/telemetry.md).

``JSONFormatter`` renders any record as one JSON object: ``time`` (UTC, ISO 8601 with
milliseconds), ``level``, ``logger``, ``message``, the audit fields of ``record.oneinbox``
under ``oneinbox``, the ``trace_id`` and ``span_id`` of the span current when the line was
formatted (or that OpenTelemetry's logging instrumentation put on the record), and
``exception`` when there is one. A ``logging.Formatter``, so ``logging.config`` and
uvicorn's ``--log-config`` take it by name::

    "formatters": {"json": {"()": "oneinbox_asgi.logs.JSONFormatter"}}

It needs nothing but the standard library; the trace ids only with ``opentelemetry-api``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

try:
    from opentelemetry import trace as otel_trace
except ImportError:  # no [otel] extra: no trace ids
    otel_trace = None  # type: ignore[assignment]


class JSONFormatter(logging.Formatter):
    """One JSON object per record; non-JSON values become their ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "oneinbox", None)
        if isinstance(fields, dict):
            line["oneinbox"] = fields
        line.update(_trace_ids(record))
        if record.exc_info and record.exc_info[1] is not None:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def _trace_ids(record: logging.LogRecord) -> dict[str, str]:
    trace_id = getattr(record, "otelTraceID", None)  # opentelemetry-instrumentation-logging
    span_id = getattr(record, "otelSpanID", None)
    if isinstance(trace_id, str) and isinstance(span_id, str) and trace_id != "0":
        return {"trace_id": trace_id, "span_id": span_id}
    if otel_trace is None:
        return {}
    context = otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
