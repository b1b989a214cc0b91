"""The demo site with OpenTelemetry: spans on the console, metrics for Prometheus.

    python examples/telemetry_demo.py            # site on :8000, metrics on :9464/metrics

Needs the dev extra (``pip install -e '.[dev]'``: the emulator, ``opentelemetry-sdk`` and
``opentelemetry-exporter-prometheus``). Sign in, press "Talk to AI", hang up; then

    curl -s 127.0.0.1:9464/metrics | grep oneinbox_

shows the calls started and live, their durations, OneInbox's request durations and each
call's voice latency per agent; every start-call, end-call and webhook delivery prints
its span tree (with the CLIENT spans to OneInbox) on the console.

All this file does is set up the SDK, as any host does once at startup: the broker finds
the global providers by itself (docs/telemetry.md). Nothing in the demo app changes.
"""

from __future__ import annotations

import argparse
import sys

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from prometheus_client import start_http_server


def set_up_opentelemetry(metrics_host: str, metrics_port: int) -> None:
    """The host's part: an SDK, its exporters, the global providers."""
    resource = Resource.create({"service.name": "oneinbox-demo"})
    tracer_provider = TracerProvider(resource=resource)
    # Each span printed as it ends, for the demo; production exports with a BatchSpanProcessor.
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    # Prometheus pulls: the reader answers each scrape from the SDK's current state.
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()])
    )
    start_http_server(metrics_port, addr=metrics_host)
    print(f"metrics for Prometheus: http://{metrics_host}:{metrics_port}/metrics", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=9464)
    args, demo_options = parser.parse_known_args(argv)
    set_up_opentelemetry(args.host, args.metrics_port)

    from oneinbox_emulator.cli import main as demo  # the demo of `python -m oneinbox_asgi demo`

    demo(["demo", "--host", args.host, "--port", str(args.port), *demo_options])


if __name__ == "__main__":
    main(sys.argv[1:])
