"""A webhook receiver for tests: a tiny Starlette app on a loopback port that records every
POST and can be told to fail, answer late, or take its time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oneinbox_emulator.serving import bind, url_of


@dataclass
class Delivery:
    event: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    answered: int


@dataclass
class Receiver:
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    failures: int = 0
    """Answer this many requests with ``failure_status`` before answering 200."""
    failure_status: int = 500
    delay: float = 0.0
    """Seconds to wait before answering each request (cut short when the receiver stops)."""
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def events(self) -> list[str]:
        return [d.event for d in self.deliveries if d.answered == 200]

    def attempts(self, event: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.event == event]

    def delivered(self, event: str) -> dict[str, Any]:
        return next(d.body for d in self.deliveries if d.event == event and d.answered == 200)

    async def endpoint(self, request: Request) -> Response:
        body = json.loads(await request.body())
        status = 200
        if self.failures > 0:
            self.failures -= 1
            status = self.failure_status
        self.deliveries.append(
            Delivery(body.get("event", ""), body, dict(request.headers), time.monotonic(), status)
        )
        if self.delay:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay):
                    await self.released.wait()
        return Response(status_code=status)


def receiver_app(receiver: Receiver) -> Starlette:
    return Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    """A ``Receiver`` served by uvicorn on 127.0.0.1 in this event loop; ``url`` is its hook."""
    receiver = Receiver()
    app = receiver_app(receiver)
    sock = bind()
    receiver.url = url_of(sock) + "/hook?token=not-for-logs"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield receiver
    finally:
        receiver.released.set()  # requests it is sitting on are answered now
        server.should_exit = True
        async with asyncio.timeout(10):
            await asyncio.gather(task, return_exceptions=True)
        sock.close()
