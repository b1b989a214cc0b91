"""Where a start-call's CPU goes: each part measured alone, in CPU time per call.

    python -m bench.costs --upstream URL [--round-seconds S] [--rounds R]   (prints JSON)

CPU time (not wall time) of this one pinned process, so the numbers hold up on a busy
machine better than throughput does; the best of R interleaved rounds each.

* the upstream client, 16 calls in flight against the fast fake OneInbox: the
  middleware's own pooled client (the aiohttp transport), httpx's own transport (an
  injected client, or trio), and the raw keep-alive client of the ceiling;
* the broker's own logic: ``POST /oneinbox/start-call`` through ``OneInboxMiddleware``
  called in-process with the upstream call stubbed out (body, guards, hooks, handle,
  answer), against a bare Starlette JSON route driven the same way;
* the end-call handle alone (``guards.handles.HandleSigner.issue``), when it exists;
* telemetry (docs/telemetry.md): the same start-call with the OneInbox request answered
  by a canned transport (so its CLIENT span and ``traceparent`` count too), three ways:
  ``opentelemetry-api`` absent, the API with its no-op providers (no SDK), and the SDK
  on (a tracer provider whose simple processor exports to nothing, a meter provider
  whose reader is never collected).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvloop

from oneinbox_asgi import OneInboxMiddleware, jsoncodec
from oneinbox_asgi import telemetry as telemetry_module
from oneinbox_asgi.transport import Response
from oneinbox_asgi.transport.httpx_transport import HttpxTransport
from oneinbox_asgi.upstream import OneInboxClient, WebCall

from . import apps
from .fake_oneinbox import AGENT_ID, API_KEY, CALL_PATH, SERVER_URL
from .inprocess import scope_for
from .rawclient import RawPool

VARIABLES = {"customer_name": "Bench user1"}
METADATA = {"caller": "user1", "path": apps.START_CALL}
Call = Callable[[], Awaitable[Any]]


async def cpu_per_call(call: Call, calls: int, concurrency: int) -> float:
    """CPU µs per call of ``calls`` calls, ``concurrency`` at a time."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    gc.collect()
    started = time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (calls // concurrency * concurrency) * 1e6


async def best_of(
    calls: dict[str, Call], round_seconds: float, rounds: int, concurrency: int, warm_up: int
) -> dict[str, float]:
    """Each call's best CPU µs per call over ``rounds`` interleaved rounds of about
    ``round_seconds`` each (the count calibrated once per call, during warm-up)."""
    counts: dict[str, int] = {}
    for name, call in calls.items():  # warm up (connections, imports, caches), calibrate
        await cpu_per_call(call, max(warm_up // 2, concurrency), concurrency)
        cost = await cpu_per_call(call, max(warm_up, concurrency), concurrency)
        counts[name] = max(concurrency * 4, round(round_seconds * 1e6 / max(cost, 1.0)))
    results: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            results[name].append(await cpu_per_call(call, counts[name], concurrency))
    return {name: min(values) for name, values in results.items()}


def _create(client: OneInboxClient) -> Call:
    return lambda: client.create_web_call(AGENT_ID, variables=VARIABLES, metadata=METADATA)


async def client_costs(
    url: str, round_seconds: float, rounds: int, warm_up: int
) -> dict[str, float]:
    through_httpcore = httpx.AsyncClient(limits=apps.POOL_LIMITS)
    clients = {
        "own pooled client (aiohttp transport)": OneInboxClient(api_key=API_KEY, base_url=url),
        "httpx's own transport (injected client, or trio)": OneInboxClient(
            api_key=API_KEY, base_url=url, transport=HttpxTransport(through_httpcore)
        ),
    }
    calls: dict[str, Call] = {name: _create(client) for name, client in clients.items()}
    parts = urlsplit(url)
    pool = RawPool(parts.hostname or "127.0.0.1", parts.port or 80)
    headers = f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n".encode()
    body = json.dumps({"agent_id": AGENT_ID, "variables": VARIABLES, "metadata": METADATA})

    async def raw() -> None:
        _, answer = await pool.post(CALL_PATH, headers, body.encode())
        json.loads(answer)

    calls["raw keep-alive client (ceiling's, not production)"] = raw
    try:
        return await best_of(calls, round_seconds, rounds, 16, warm_up)
    finally:
        for client in clients.values():
            await client.aclose()
        await through_httpcore.aclose()
        pool.close()


def _stubbed(**options: Any) -> OneInboxMiddleware:
    """The middleware as in (b), with the upstream call answered at once, in-process."""
    middleware = OneInboxMiddleware(
        apps.passthrough_bare(),
        api_key=API_KEY,
        agent_id=AGENT_ID,
        base_url="http://127.0.0.1:9",
        authorize=apps.authorize,
        variables=apps.variables,
        **options,
    )
    call = WebCall(call_id="call_000000000001", server_url=SERVER_URL, participant_token="x" * 480)

    async def stub(agent_id: str, *, variables: Any, metadata: Any) -> WebCall:
        return call

    middleware.upstream.create_web_call = stub  # type: ignore[method-assign]
    return middleware


class Canned:
    """A transport that answers every request with the same created call, at once."""

    answer = Response(
        201,
        {"content-type": "application/json"},
        json.dumps(
            {"id": "call_000000000001", "server_url": SERVER_URL, "participant_token": "x" * 480}
        ).encode(),
    )

    async def send(self, method: str, url: str, **kwargs: Any) -> Response:
        return self.answer

    async def aclose(self) -> None:
        pass


class NoExport:
    """A span exporter that drops what it is given (the SDK's work, not an exporter's)."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _canned(telemetry: str) -> OneInboxMiddleware:
    """The middleware as in (b) with OneInbox a canned transport; ``telemetry``: "absent"
    (built as without opentelemetry-api), "api" (no SDK) or "sdk"."""
    options: dict[str, Any] = {}
    if telemetry == "sdk":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        tracer_provider = TracerProvider()
        # Simple, not batch: each span's work is done in the call that made it, so none of
        # it lands in the next variant's round (a batch worker thread's CPU would).
        tracer_provider.add_span_processor(SimpleSpanProcessor(NoExport()))  # type: ignore[arg-type]
        options = {
            "tracer_provider": tracer_provider,
            "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()]),
        }
    saved = telemetry_module.otel_trace
    if telemetry == "absent":
        telemetry_module.otel_trace = None  # type: ignore[assignment]
    try:
        middleware = OneInboxMiddleware(
            apps.passthrough_bare(),
            api_key=API_KEY,
            agent_id=AGENT_ID,
            base_url="http://127.0.0.1:9",
            authorize=apps.authorize,
            variables=apps.variables,
            **apps.guard_options(None),
            **options,
        )
    finally:
        telemetry_module.otel_trace = saved
    assert middleware.broker.telemetry.enabled is (telemetry != "absent")
    upstream = middleware.upstream
    upstream._own = middleware.broker.telemetry.traced_transport(Canned())  # type: ignore[arg-type]
    return middleware


async def logic_costs(round_seconds: float, rounds: int, warm_up: int) -> dict[str, float]:
    middleware = _stubbed(**apps.guard_options(None))
    without_limits = _stubbed(**apps.limits_off())
    bare = apps.passthrough_bare()
    numbers = iter(range(10**9))
    statuses: set[int] = set()
    request = {"type": "http.request", "body": b"{}", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    def start_call_scope() -> dict[str, Any]:
        scope = scope_for(apps.START_CALL)
        scope["method"] = "POST"
        scope["headers"] = [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            (b"origin", b"http://127.0.0.1:8000"),
            (b"sec-fetch-site", b"same-origin"),
            (b"sec-fetch-mode", b"cors"),
            (apps.USER_HEADER.encode(), b"user%d" % (next(numbers) % 1000)),
        ]
        return scope

    json_scope = scope_for("/json")

    async def start_call() -> None:
        await middleware(start_call_scope(), receive, send)

    async def start_call_without_limits() -> None:
        await without_limits(start_call_scope(), receive, send)

    async def json_route() -> None:
        await bare(dict(json_scope), receive, send)

    calls: dict[str, Call] = {
        "broker logic: start-call with the upstream stubbed": start_call,
        "the same with the rate limit and concurrency cap off": start_call_without_limits,
        "for scale: a bare Starlette JSON route": json_route,
    }
    from oneinbox_asgi.guards.handles import HandleSigner

    signer = HandleSigner(API_KEY, clock=time.time)
    expires_ms = int(time.time() * 1000) + 3_600_000

    async def handle() -> None:
        signer.issue(
            "id:user1",
            call_id="call_000000000001",
            agent_id=AGENT_ID,
            slot="s" * 16,
            expires_ms=expires_ms,
        )

    calls["of which: the end-call handle (guards/handles.py, issue)"] = handle
    # The answer's JSON, as jsoncodec writes it (orjson), and as 0.1 wrote it: json.dumps
    # with these separators (a C encoder made per call; made once, 2.4 µs of the 3).
    answer = {
        "call_id": "call_000000000001",
        "server_url": SERVER_URL,
        "participant_token": "x" * 480,
        "end_token": signer.issue(
            "id:user1", call_id="call_000000000001", agent_id=AGENT_ID, slot=None, expires_ms=1
        ),
    }
    stdlib = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

    async def answer_orjson() -> None:
        jsoncodec.dumps(answer)

    async def answer_json() -> None:
        stdlib.encode(answer).encode()

    calls["json: the 201 answer, jsoncodec (orjson)"] = answer_orjson
    calls["json: the 201 answer, json.dumps (0.1)"] = answer_json
    for telemetry, label in [
        ("absent", "telemetry: start-call, opentelemetry-api absent"),
        ("api", "telemetry: start-call, the API's no-op providers (no SDK)"),
        ("sdk", "telemetry: start-call, the SDK on (spans and metrics recorded)"),
    ]:
        variant = _canned(telemetry)

        async def traced(variant: OneInboxMiddleware = variant) -> None:
            await variant(start_call_scope(), receive, send)

        calls[label] = traced
    costs = await best_of(calls, round_seconds, rounds, 1, warm_up)
    if statuses - {200, 201}:
        raise RuntimeError(f"in-process start-call answered {sorted(statuses)}")
    return costs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.costs")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--round-seconds", type=float, default=0.25)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm-up-calls", type=int, default=320)
    args = parser.parse_args(argv)

    async def measure() -> dict[str, dict[str, float]]:
        return {
            "client": await client_costs(
                args.upstream, args.round_seconds, args.rounds, args.warm_up_calls
            ),
            "logic": await logic_costs(args.round_seconds, args.rounds, args.warm_up_calls),
        }

    print(json.dumps(uvloop.run(measure())))


if __name__ == "__main__":
    main()
