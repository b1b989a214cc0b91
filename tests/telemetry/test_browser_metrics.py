"""``POST {prefix}/metrics`` (``browser_metrics=True``): a call's browser figures, proven by
its end handle, strict and bounded, once per call, recorded as histograms by agent."""

from __future__ import annotations

import httpx
import pytest

from oneinbox_emulator.api import EmulatorAPI

from ..support import START, broker, client_for, error_code
from .support import Otel

pytestmark = pytest.mark.anyio

METRICS = "/oneinbox/metrics"
FIGURES = {
    "click_to_active_ms": 850,
    "click_to_first_audio_ms": 1900.5,
    "round_trip_time_ms": 42,
    "jitter_ms": 3.5,
    "packet_loss": 0.01,
}


async def test_a_calls_figures_are_recorded_once_by_agent(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    app = otel.broker(http_client=upstream_client, browser_metrics=True)
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        first = await client.post(METRICS, json={"end_token": token, **FIGURES})
        again = await client.post(METRICS, json={"end_token": token, **FIGURES})
    assert first.status_code == 200 and first.json() == {"recorded": True}
    assert again.status_code == 200 and again.json() == {"recorded": False}
    metrics = otel.metrics()
    expected = {
        "click_to_active": 0.85,
        "click_to_first_audio": 1.9005,
        "round_trip_time": 0.042,
        "jitter": 0.0035,
        "packet_loss": 0.01,
    }
    for name, value in expected.items():
        (point,) = metrics[f"oneinbox.browser.{name}"]
        assert point.count == 1 and point.sum == pytest.approx(value)
        assert dict(point.attributes) == {"oneinbox.agent_id": "agt_demo"}
    assert otel.unit("oneinbox.browser.jitter") == "s"
    assert otel.unit("oneinbox.browser.packet_loss") == "1"
    spans = otel.spans("oneinbox metrics")
    assert [dict(s.attributes or {})["oneinbox.outcome"] for s in spans] == [
        "recorded",
        "repeated",
    ]


@pytest.mark.parametrize(
    "figure",
    [
        '"click_to_active_ms": -1',
        '"click_to_active_ms": 120001',
        '"round_trip_time_ms": true',
        '"jitter_ms": "3"',
        '"packet_loss": 1.5',
        '"packet_loss": 1e999',
        '"packet_loss": NaN',
        '"mos": 4.2',  # not a figure we know
        '"click_to_active_ms": 1, "click_to_active_ms": 2',
    ],
)
async def test_anything_outside_the_schema_is_400_and_records_nothing(
    upstream_client: httpx.AsyncClient, otel: Otel, figure: str
) -> None:
    app = otel.broker(http_client=upstream_client, browser_metrics=True)
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        refused = await client.post(
            METRICS,
            content=f'{{"end_token": "{token}", {figure}}}'.encode(),
            headers={"content-type": "application/json"},
        )
    assert refused.status_code == 400 and error_code(refused) == "bad_request"
    assert not [name for name in otel.metrics() if name.startswith("oneinbox.browser.")]


async def test_a_forged_handle_a_cross_site_post_and_a_form_are_refused(
    upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    app = otel.broker(http_client=upstream_client, browser_metrics=True)
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        forged = await client.post(METRICS, json={"end_token": token[:-2] + "AA", **FIGURES})
        cross = await client.post(
            METRICS,
            json={"end_token": token, **FIGURES},
            headers={"sec-fetch-site": "cross-site", "origin": "https://evil.example"},
        )
        form = await client.post(METRICS, data={"end_token": token})
        no_token = await client.post(METRICS, json={"end_token": 7, **FIGURES})
        big = await client.post(
            METRICS,
            content=b'{"end_token": "' + b"x" * 20_000 + b'"}',
            headers={"content-type": "application/json"},
        )
    assert (forged.status_code, error_code(forged)) == (404, "not_found")
    assert (cross.status_code, error_code(cross)) == (403, "cross_site")
    assert form.status_code == 415 and big.status_code == 413
    assert no_token.status_code == 400
    assert not [name for name in otel.metrics() if name.startswith("oneinbox.browser.")]
    refusals = otel.metrics()["oneinbox.refusals"]
    assert {p.attributes["oneinbox.route"] for p in refusals} == {"metrics"}


async def test_the_route_is_off_by_default(upstream_client: httpx.AsyncClient) -> None:
    app = broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        token = (await client.post(START, json={})).json()["end_token"]
        answer = await client.post(METRICS, json={"end_token": token})
    assert answer.status_code == 404
