"""The span tree of a started, a refused and an upstream-failed call; the trace OneInbox
sees in ``traceparent``; ours under the host's own server span."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from oneinbox_asgi import ConfigurationError
from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, broker, client_for
from .support import Otel

pytestmark = pytest.mark.anyio


async def test_a_started_call_is_a_route_span_with_a_client_span_to_oneinbox(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    app = otel.broker(http_client=upstream_client, agents={"sales": "agt_sales"})
    async with client_for(app, "u1") as client:
        answer = await client.post(START, json={"agent": "sales"})
    assert answer.status_code == 201, answer.text
    call_id = answer.json()["call_id"]

    route = otel.span("oneinbox start-call")
    assert route.parent is None and route.kind is SpanKind.SERVER  # no host span: ours is
    assert route.status.status_code is StatusCode.UNSET
    assert dict(route.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/oneinbox/start-call",
        "url.scheme": "http",
        "oneinbox.route": "start-call",
        "http.response.status_code": 201,
        "oneinbox.outcome": "started",
        "oneinbox.agent_id": "agt_sales",
        "oneinbox.agent": "sales",
        "oneinbox.call_id": call_id,
    }
    (upstream,) = otel.children(route)
    assert upstream.name == "POST /v1/calls/web" and upstream.kind is SpanKind.CLIENT
    assert dict(upstream.attributes or {}) == {
        "http.request.method": "POST",
        "server.address": "api.oneinbox.ai",
        "server.port": 443,
        "url.template": "/v1/calls/web",
        "url.full": "https://api.oneinbox.ai/v1/calls/web",
        "http.response.status_code": 201,
    }
    # OneInbox is told the trace: the CLIENT span is the parent of what it does.
    (created,) = [r for r in oneinbox.received if r.path == "/v1/calls/web"]
    assert upstream.context is not None
    version, trace_id, parent_id, flags = created.headers["traceparent"].split("-")
    assert (version, trace_id, parent_id) == (
        "00",
        f"{upstream.context.trace_id:032x}",
        f"{upstream.context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled


async def test_end_call_and_its_stop_are_spans_with_the_call_id(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    app = otel.broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        started = (await client.post(START, json={})).json()
        ended = await client.post(END, json={"end_token": started["end_token"]})
    assert ended.status_code == 200
    route = otel.span("oneinbox end-call")
    attributes = dict(route.attributes or {})
    assert attributes["oneinbox.outcome"] == "ended"
    assert attributes["oneinbox.call_id"] == started["call_id"]
    assert attributes["http.response.status_code"] == 200
    stop = [s.name for s in otel.children(route)]
    assert stop == ["POST /v1/calls/{call_id}/stop"]
    (stop_span,) = otel.children(route)
    assert stop_span.attributes is not None
    assert stop_span.attributes["url.full"].endswith(f"/v1/calls/{started['call_id']}/stop")
    (ended_event,) = [e for e in route.events if e.name == "oneinbox.call.ended"]
    assert dict(ended_event.attributes or {}) == {
        "oneinbox.call_id": started["call_id"],
        "oneinbox.ended_by": "end_call",
    }


async def test_a_refused_call_is_one_span_with_its_code_and_no_upstream_request(
    upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    app = otel.broker(http_client=upstream_client)
    async with client_for(app) as client:
        refused = await client.post(START, json={})  # nobody signed in
    assert refused.status_code == 401
    (route,) = otel.spans()
    assert route.name == "oneinbox start-call"
    attributes = dict(route.attributes or {})
    assert attributes["oneinbox.outcome"] == "unauthorized"
    assert attributes["oneinbox.error.code"] == "unauthorized"
    assert attributes["oneinbox.scope"] == "caller"
    assert attributes["http.response.status_code"] == 401
    assert route.status.status_code is StatusCode.UNSET  # the caller's doing, not ours


async def test_an_upstream_failure_marks_both_spans_as_errors(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    oneinbox.misbehave(status=500, body=b'{"detail": "boom"}', times=1)
    app = otel.broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        failed = await client.post(START, json={})
    assert failed.status_code == 502
    route = otel.span("oneinbox start-call")
    assert route.status.status_code is StatusCode.ERROR
    assert route.status.description == "upstream_error"
    attributes = dict(route.attributes or {})
    assert attributes["error.type"] == attributes["oneinbox.error.code"] == "upstream_error"
    assert attributes["http.response.status_code"] == 502
    (upstream,) = otel.children(route)
    assert upstream.status.status_code is StatusCode.ERROR
    assert upstream.attributes is not None
    assert upstream.attributes["http.response.status_code"] == 500
    assert upstream.attributes["error.type"] == "500"


async def test_an_unreachable_oneinbox_is_a_client_span_per_attempt(
    otel: Otel, closed_port: int
) -> None:
    app = otel.broker(base_url=f"http://127.0.0.1:{closed_port}")
    try:
        async with client_for(app, "u1") as client:
            failed = await client.post(START, json={})
    finally:
        await app.aclose()
    assert failed.status_code == 503
    route = otel.span("oneinbox start-call")
    attempts = otel.children(route)
    assert [a.name for a in attempts] == ["POST /v1/calls/web"] * 2  # retried once: not sent
    for attempt in attempts:
        assert attempt.attributes is not None
        assert attempt.attributes["error.type"] == "not_sent"
        assert attempt.attributes["server.port"] == closed_port
    metrics = otel.metrics()
    assert otel.total(metrics, "http.client.request.duration", error__type="not_sent") == 2


async def test_ours_is_a_child_of_the_hosts_server_span(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    app = otel.broker(http_client=upstream_client)
    host = otel.tracer_provider.get_tracer("host")
    async with client_for(app, "u1") as client:
        with host.start_as_current_span("POST /oneinbox/start-call", kind=SpanKind.SERVER):
            answer = await client.post(START, json={})
    assert answer.status_code == 201
    outer = otel.span("POST /oneinbox/start-call")
    route = otel.span("oneinbox start-call")
    assert route.kind is SpanKind.INTERNAL
    assert route.parent is not None and outer.context is not None
    assert route.parent.span_id == outer.context.span_id
    assert {s.context.trace_id for s in otel.spans() if s.context} == {outer.context.trace_id}


def test_a_provider_that_is_not_one_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="tracer_provider"):
        broker(tracer_provider=object())
    with pytest.raises(ConfigurationError, match="meter_provider"):
        broker(meter_provider="prometheus")


async def test_an_agent_picked_the_livekit_way_is_on_the_span(
    upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    app = otel.broker(http_client=upstream_client, agents={"sales": "agt_sales"})
    body = {"room_config": {"agents": [{"agent_name": "sales"}]}}
    async with client_for(app, "u1") as client:
        answer = await client.post(START, json=body)
    assert answer.status_code == 201, answer.text
    attributes = dict(otel.span("oneinbox start-call").attributes or {})
    assert (attributes["oneinbox.agent"], attributes["oneinbox.agent_id"]) == ("sales", "agt_sales")
