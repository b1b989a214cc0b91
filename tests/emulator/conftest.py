"""Fixtures for the emulator's own tests: the API in-process, the whole emulator on loopback,
and (for the browser tests) Chromium with the stock livekit-client bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from oneinbox_emulator import DEFAULT_API_KEY
from oneinbox_emulator.agent import AgentSettings
from oneinbox_emulator.app import Emulator
from oneinbox_emulator.serving import bind, url_of
from oneinbox_emulator.voice.server import VoiceOptions
from oneinbox_emulator.voice.session import SessionTimings

from ..chromium import launched, unavailable

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def auth(key: str = DEFAULT_API_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def quick_emulator(*, record_delay: float = 0.0, **agent: Any) -> Emulator:
    """An emulator whose timeouts suit tests; ``agent`` overrides the demo agent's settings.
    Records are written as calls end unless ``record_delay`` says otherwise."""
    return Emulator(
        agents={"agt_demo": AgentSettings(**agent)},
        voice=VoiceOptions(
            departure_timeout=1.0,
            timings=SessionTimings(connect_timeout=5.0, leave_grace=0.2),
        ),
        record_delay=record_delay,
    )


class LiveEmulator:
    """An emulator served by uvicorn in the test's own event loop, plus an HTTP client."""

    def __init__(self, emulator: Emulator, client: httpx.AsyncClient) -> None:
        self.emulator = emulator
        self.client = client

    async def create_call(self, name: str = "Ada", **extra: Any) -> dict[str, Any]:
        body = {"agent_id": "agt_demo", "variables": {"customer_name": name}, **extra}
        response = await self.client.post("/v1/calls/web", json=body, headers=auth())
        assert response.status_code == 201, response.text
        call: dict[str, Any] = response.json()
        return call

    async def record(self, call_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/calls/{call_id}", headers=auth())
        assert response.status_code == 200
        record: dict[str, Any] = response.json()
        return record


@contextlib.asynccontextmanager
async def serving(emulator: Emulator) -> AsyncIterator[LiveEmulator]:
    """Serve ``emulator`` on a free loopback port in this event loop."""
    sock = bind()
    emulator.bind(url_of(sock))
    server = uvicorn.Server(
        uvicorn.Config(emulator, log_level="warning", lifespan="on", ws_ping_interval=None)
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=emulator.base_url, timeout=5) as client:
            yield LiveEmulator(emulator, client)
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await asyncio.gather(task, return_exceptions=True)
        sock.close()


@pytest.fixture
async def live() -> AsyncIterator[LiveEmulator]:
    async with serving(quick_emulator(thinking_seconds=0.05)) as served:
        yield served


@pytest.fixture
async def live_short() -> AsyncIterator[LiveEmulator]:
    """Calls end by themselves after one second (max_duration)."""
    async with serving(quick_emulator(max_duration=1.0)) as served:
        yield served


# -- the browser ---------------------------------------------------------------------------


def livekit_client_bundle() -> Path | None:
    """livekit-client's stock UMD build, from the widget's pinned npm install.

    ``$LIVEKIT_CLIENT_JS`` may point at another copy.
    """
    candidates = [
        os.environ.get("LIVEKIT_CLIENT_JS", ""),
        str(REPO / "widget/node_modules/livekit-client/dist/livekit-client.umd.js"),
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched() as browser:
        yield browser


@pytest.fixture(scope="module")
def livekit_js() -> Path:
    found = livekit_client_bundle()
    if found is None:
        unavailable("livekit-client is not installed (run `npm ci` in widget/)")
    return found
