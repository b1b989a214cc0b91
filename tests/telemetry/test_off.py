"""Without opentelemetry-api the broker works the same, and every telemetry call is a
no-op; with the API but no SDK nothing is recorded and the routes still answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace

from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, broker, client_for

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_OTEL = """
import sys, asyncio

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"no module named {name!r} (hidden by the test)")
        return None

sys.meta_path.insert(0, Absent())

import httpx
from starlette.applications import Starlette
from oneinbox_asgi import OneInboxMiddleware, logs, telemetry
from oneinbox_emulator.api import DEFAULT_API_KEY, EmulatorAPI

async def main():
    api = EmulatorAPI(api_keys=[DEFAULT_API_KEY])
    api.registry.agents.add("agt_demo")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api)) as upstream:
        app = OneInboxMiddleware(Starlette(), api_key=DEFAULT_API_KEY, agent_id="agt_demo",
                                 authorize=lambda r: "u1", http_client=upstream, webhooks=True)
        assert app.broker.telemetry is telemetry.OFF
        assert app.broker.lifecycle.ledger is app.store  # not wrapped
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as client:
            started = await client.post("/oneinbox/start-call", json={})
            assert started.status_code == 201, started.text
            ended = await client.post("/oneinbox/end-call",
                                      json={"end_token": started.json()["end_token"]})
            assert ended.status_code == 200
        assert "traceparent" not in api.received[0].headers
    assert "opentelemetry" not in sys.modules
    import logging
    line = logs.JSONFormatter().format(logging.makeLogRecord({"msg": "x"}))
    assert "trace_id" not in line
    print("ok")

asyncio.run(main())
"""


def test_without_the_api_package_everything_works_and_nothing_is_imported() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OTEL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.anyio
async def test_with_the_api_and_no_sdk_nothing_is_recorded_or_sent(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient
) -> None:
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"  # no SDK
    app = broker(http_client=upstream_client)
    assert app.broker.telemetry.enabled
    async with client_for(app, "u1") as client:
        started = await client.post(START, json={})
        ended = await client.post(END, json={"end_token": started.json()["end_token"]})
    assert started.status_code == 201 and ended.status_code == 200
    assert all("traceparent" not in r.headers for r in oneinbox.received)
