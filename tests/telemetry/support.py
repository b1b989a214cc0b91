"""What the telemetry tests share: the OpenTelemetry SDK with in-memory exporters, passed
to the middleware as ``tracer_provider=`` / ``meter_provider=`` (no global state)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from oneinbox_asgi import OneInboxMiddleware

from ..support import broker


async def shut(app: Any) -> None:
    """Stop the background work a first request started (no lifespan in these tests),
    and wait for it: with a meter provider the broker fetches ended calls' records."""
    task = app._detached
    await app.aclose()
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Otel:
    """An SDK tracer and meter provider of one test's own, and what they exported."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.apps: list[OneInboxMiddleware] = []

    def broker(self, **options: Any) -> OneInboxMiddleware:
        """``support.broker`` reporting to these providers; shut by the fixture."""
        app = broker(**options, **self.options())
        self.apps.append(app)
        return app

    async def shut(self) -> None:
        for app in self.apps:
            await shut(app)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def options(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        (found,) = self.spans(name)
        return found

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        assert parent.context is not None
        return [
            s
            for s in self.spans()
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]

    def metrics(self) -> dict[str, list[Any]]:
        """Every metric's data points by name, as collected now."""
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def total(self, metrics: dict[str, list[Any]], name: str, **attributes: Any) -> float:
        """The sum (counters) or count (histograms) of ``name``'s points whose attributes
        include ``attributes`` (dots in names written as ``__``)."""
        wanted = {key.replace("__", "."): value for key, value in attributes.items()}
        total = 0.0
        for point in metrics.get(name, []):
            if all(point.attributes.get(k) == v for k, v in wanted.items()):
                total += point.count if hasattr(point, "count") else point.value
        return total

    def unit(self, name: str) -> str:
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return str(metric.unit)
        raise KeyError(name)


def every_attribute(otel: Otel) -> Iterator[tuple[str, str]]:
    """(where, text) for every span name, span and event attribute, and metric attribute."""
    for span in otel.spans():
        yield "span name", span.name
        for key, value in (span.attributes or {}).items():
            yield f"span {span.name} {key}", str(value)
        for event in span.events:
            yield f"event {event.name}", event.name
            for key, value in (event.attributes or {}).items():
                yield f"event {event.name} {key}", str(value)
        if span.status.description:
            yield f"span {span.name} status", span.status.description
    for name, points in otel.metrics().items():
        for point in points:
            for key, value in point.attributes.items():
                yield f"metric {name} {key}", str(value)
