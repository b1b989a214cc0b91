"""OneInbox's per-call ``latency`` figures become histograms by agent, in seconds, once per
call: from the record an ending path fetched, or from the post-call record fetch."""

from __future__ import annotations

import anyio
import httpx
import pytest

from oneinbox_asgi import lifecycle as lifecycle_module
from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, client_for
from .support import Otel

pytestmark = pytest.mark.anyio

WEBHOOK = "/oneinbox/webhook"
TURNS = {"llm_ttft": [400.0, 600.0, 500.0], "tts_ttfb": [180.0, 220.0], "eou_delay": [700.0]}


def speak(oneinbox: EmulatorAPI, call_id: str) -> None:
    """The call goes live and its turns are measured, as the emulator's agent does."""
    oneinbox.registry.mark_joined(call_id)
    call = oneinbox.registry.get(call_id)
    assert call is not None
    for metric, samples in TURNS.items():
        for ms in samples:
            call.timings.add(metric, ms)


def assert_observed_once(otel: Otel, agent_id: str) -> None:
    metrics = otel.metrics()
    for name, p50 in [("llm_ttft", 0.5), ("tts_ttfb", 0.2), ("eou_delay", 0.7)]:
        (point,) = metrics[f"oneinbox.voice.{name}"]
        assert dict(point.attributes) == {"oneinbox.agent_id": agent_id}
        assert point.count == 1
        assert point.sum == pytest.approx(p50)
        assert otel.unit(f"oneinbox.voice.{name}") == "s"
    (setup,) = metrics["oneinbox.voice.connect.setup"]
    assert setup.count == 1 and 0 <= setup.sum < 5  # the emulator's own create time
    # Steps the record has no figure for (no voice server here) are not observed.
    assert "oneinbox.voice.connect.answer_to_active" not in metrics


async def test_the_record_an_ending_webhook_fetched_gives_the_latencies(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, otel: Otel
) -> None:
    app = otel.broker(http_client=upstream_client, webhooks=True, agents={"sales": "agt_sales"})
    async with client_for(app, "u1") as client:
        call_id = (await client.post(START, json={"agent": "sales"})).json()["call_id"]
        speak(oneinbox, call_id)
        oneinbox.registry.end(call_id, "agent_hangup")  # the record is written at once here
        for event in ("call.ended", "call.analyzed"):  # the second changes nothing
            delivery = {"event": event, "call_id": call_id}
            assert (await client.post(WEBHOOK, json=delivery)).status_code == 200
            await anyio.sleep(lifecycle_module.LOOKUP_SECONDS + 0.05)
    assert_observed_once(otel, "agt_sales")


async def test_the_post_call_record_fetch_gives_the_latencies(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    otel: Otel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No webhooks, no on_call_record hook: with a meter provider the broker still asks
    OneInbox for the record after the end, as it would for on_call_record."""
    monkeypatch.setattr(lifecycle_module, "RECORD_DELAYS", (0.05, 0.05, 0.1))
    oneinbox.registry.deferred_records = True  # written a little after the end, as OneInbox
    app = otel.broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        started = (await client.post(START, json={})).json()
        await anyio.sleep(0.02)  # the background work started at the first request runs
        speak(oneinbox, started["call_id"])
        await client.post(END, json={"end_token": started["end_token"]})
        await anyio.sleep(0.02)
        oneinbox.registry.write_record(started["call_id"])
        with anyio.fail_after(3):
            while "oneinbox.voice.llm_ttft" not in otel.metrics():
                await anyio.sleep(0.02)
    assert_observed_once(otel, "agt_demo")


async def test_without_a_meter_provider_no_record_is_fetched(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's no-op provider (no SDK): ended calls cost OneInbox no extra lookups."""
    from ..support import broker

    monkeypatch.setattr(lifecycle_module, "RECORD_DELAYS", (0.01,))
    app = broker(http_client=upstream_client)
    assert app.broker.telemetry.enabled
    async with client_for(app, "u1") as client:
        started = (await client.post(START, json={})).json()
        await anyio.sleep(0.02)
        await client.post(END, json={"end_token": started["end_token"]})
        await anyio.sleep(0.1)
    await app.aclose()
    assert [r.method for r in oneinbox.received] == ["POST", "POST"]  # create, stop
