"""What the emulator's tests share: the API key header, an emulator with test timings,
one served on loopback in the test's event loop, a forged token, and polling."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from oneinbox_emulator import DEFAULT_API_KEY
from oneinbox_emulator.agent import AgentSettings
from oneinbox_emulator.app import Emulator
from oneinbox_emulator.serving import bind, url_of
from oneinbox_emulator.voice.server import VoiceOptions
from oneinbox_emulator.voice.session import SessionTimings

REPO = Path(__file__).resolve().parents[2]


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


async def until(condition: Callable[[], object], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.02)


def tamper(token: str) -> str:
    """The same token with its room grant changed and the signature left as it was."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["video"]["room"] = "room_someone_else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def livekit_client_bundle() -> Path | None:
    """livekit-client's stock UMD build, from the widget's pinned npm install.

    ``$LIVEKIT_CLIENT_JS`` may point at another copy.
    """
    candidates = [
        os.environ.get("LIVEKIT_CLIENT_JS", ""),
        str(REPO / "widget/node_modules/livekit-client/dist/livekit-client.umd.js"),
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)
