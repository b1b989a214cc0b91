"""A fast fake OneInbox: raw ASGI, answers ``POST /v1/calls/web`` with 201 at once.

The emulator (``oneinbox_emulator.api``) routes with Starlette, mints real JWTs
and keeps a registry: correct, and far too slow to be the floor of a benchmark. This
one does the least an upstream can: read the body, check the key, answer a fixed-size
JSON call (a token about as long as a real LiveKit participant token).
"""

from __future__ import annotations

import itertools
from typing import Any

API_KEY = "oi_sk_bench_0123456789abcdef"
AGENT_ID = "agt_bench"
SERVER_URL = "ws://127.0.0.1:9"  # nothing listens: a clicked widget fails fast, locally
CALL_PATH = "/v1/calls/web"
AUTHORIZATION = f"Bearer {API_KEY}".encode()
_TOKEN = "eyJ" + "x" * 477  # a LiveKit participant JWT is ~400-600 characters

_CREATED_HEADERS = [(b"content-type", b"application/json")]
_UNAUTHORIZED = b'{"detail":"Invalid API key"}'
_NOT_FOUND = b'{"detail":"Not Found"}'


class FakeOneInbox:
    """``POST /v1/calls/web`` -> 201 ``{"id", "server_url", "participant_token"}``."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if scope["path"] != CALL_PATH or scope["method"] != "POST":
            await _answer(send, 404, _NOT_FOUND)
            return
        for key, value in scope["headers"]:
            if key == b"authorization":
                if value != AUTHORIZATION:
                    break
                number = next(self._ids)
                body = (
                    f'{{"id":"call_{number:012d}","type":"web","status":"registered",'
                    f'"server_url":"{SERVER_URL}","participant_token":"{_TOKEN}"}}'
                ).encode()
                await _answer(send, 201, body)
                return
        await _answer(send, 401, _UNAUTHORIZED)


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_CREATED_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
