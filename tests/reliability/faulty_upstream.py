"""A OneInbox stand-in on a raw TCP socket that misbehaves below the HTTP layer.

The emulator's API misbehaves politely (a status, a body). This one can also hang
after accepting, reset the connection mid-answer, lie about Content-Length or send
50 MB, which only a socket-level server can do.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from oneinbox_asgi.transport.base import MAX_RESPONSE_BYTES

GOOD_BODY = json.dumps(
    {"id": "call_good", "server_url": "wss://voice.example", "participant_token": "tok.en.x"}
).encode()


def _response(
    status: int, body: bytes, content_type: str = "application/json", extra: str = ""
) -> bytes:
    head = (
        f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def _chunked(body: bytes, pieces: int, extra: str = "") -> bytes:
    """A 200 answer with ``body`` in ``pieces`` chunks and no Content-Length."""
    head = f"HTTP/1.1 200 X\r\ncontent-type: application/json\r\n{extra}"
    head += "transfer-encoding: chunked\r\n\r\n"
    size = -(-len(body) // pieces)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    return head.encode() + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Make the close that follows a reset (RST), not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


#: Answers of the size modes: just over the transport's bound, and exactly at it.
OVER = b"x" * (MAX_RESPONSE_BYTES + 6 * 1024)
AT = b"x" * MAX_RESPONSE_BYTES
#: A small gzip answer that inflates to 16 times the bound.
BOMB = gzip.compress(b"x" * (16 * MAX_RESPONSE_BYTES))
TRICKLE_SECONDS = 0.05

#: The broker's upstream timeout in the fault tests.
TIMEOUT = 1.0
#: The fault set: (mode, the broker's status, its error code), with ``TIMEOUT``.
FAULTS = [
    ("hang", 504, "upstream_timeout"),
    ("slow", 504, "upstream_timeout"),
    ("reset", 502, "upstream_error"),
    ("html", 502, "upstream_error"),
    ("truncated", 502, "upstream_error"),
    ("no_token", 502, "upstream_error"),
    ("huge", 502, "upstream_error"),
    ("status_500", 502, "upstream_error"),
    ("status_502", 502, "upstream_error"),
    ("status_503", 502, "upstream_error"),
    ("status_401", 502, "upstream_auth"),
    ("status_404", 502, "upstream_agent_not_found"),
    ("busy", 503, "upstream_busy"),
    ("busy_retry_after", 503, "upstream_busy"),
]


@dataclass
class FaultyUpstream:
    """Serves one behaviour at a time, named by ``mode``; counts requests it read and keeps
    their request line and headers (``heads``)."""

    mode: str = "good"
    requests: int = 0
    open_connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.heads.append(head)
                self.requests += 1
                if not await self.answer(writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()

    async def answer(self, writer: asyncio.StreamWriter) -> bool:
        """Write the answer for the current mode; False closes the connection."""
        mode = self.mode
        if mode == "good":
            writer.write(_response(201, GOOD_BODY))
        elif mode == "hang":
            await asyncio.sleep(3600)
        elif mode == "slow":
            await asyncio.sleep(2)
            writer.write(_response(201, GOOD_BODY))
        elif mode == "reset":
            writer.write(_response(201, GOOD_BODY)[:40])
            await writer.drain()
            _reset(writer)
            return False
        elif mode == "reset_body":  # the whole head, half the body, then a reset
            whole = _response(201, GOOD_BODY)
            writer.write(whole[: len(whole) - len(GOOD_BODY) // 2])
            await writer.drain()
            _reset(writer)
            return False
        elif mode == "close":  # read the request, then close without a word
            return False
        elif mode == "trickle":  # a good answer, one byte at a time, for ever longer
            for byte in _response(201, GOOD_BODY):
                if writer.is_closing():
                    return False
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(TRICKLE_SECONDS)
        elif mode == "over_declared":
            writer.write(_response(200, OVER))
        elif mode == "over_chunked":
            writer.write(_chunked(OVER, 7))
        elif mode == "over_unframed":  # no length, no chunks: the body ends at the close
            writer.write(b"HTTP/1.1 200 X\r\ncontent-type: application/json\r\n\r\n" + OVER)
            await writer.drain()
            return False
        elif mode == "at_declared":
            writer.write(_response(200, AT))
        elif mode == "at_chunked":
            writer.write(_chunked(AT, 4))
        elif mode == "bomb_declared":
            writer.write(_response(200, BOMB, extra="content-encoding: gzip\r\n"))
        elif mode == "bomb_chunked":
            writer.write(_chunked(BOMB, 2, extra="content-encoding: gzip\r\n"))
        elif mode == "garbage":  # not HTTP at all
            writer.write(b"HELLO THERE\r\n\r\n")
            await writer.drain()
            return False
        elif mode == "bad_gzip":  # says gzip, is not
            writer.write(_response(200, b"not gzip", extra="content-encoding: gzip\r\n"))
        elif mode == "redirect":
            writer.write(
                _response(302, b'{"detail": "moved"}', extra="location: /v1/calls/elsewhere\r\n")
            )
        elif mode == "headers":
            writer.write(
                _response(
                    200,
                    b"{}",
                    extra="X-Mixed-Case: Kept\r\nRETRY-AFTER: 7\r\nx-twice: 1\r\nX-Twice: 2\r\n",
                )
            )
        elif mode == "html":
            writer.write(_response(200, b"<html><body>Gateway</body></html>", "text/html"))
        elif mode == "truncated":
            whole = _response(201, GOOD_BODY)
            writer.write(whole[: len(whole) - 20])
            await writer.drain()
            return False
        elif mode == "no_token":
            writer.write(_response(201, b'{"id": "call_1", "server_url": "wss://x"}'))
        elif mode == "huge":
            size = 50 * 1024 * 1024
            writer.write(_response(201, b"")[: -len(b"content-length: 0\r\n\r\n")])
            writer.write(f"content-length: {size}\r\n\r\n".encode())
            chunk = b"x" * 65536
            try:
                for _ in range(size // len(chunk)):
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError:
                pass
            return False
        elif mode.startswith("status_"):
            writer.write(_response(int(mode.removeprefix("status_")), b'{"detail": "nope"}'))
        elif mode == "busy_retry_after":
            writer.write(_response(429, b"{}", extra="retry-after: 7\r\n"))
        elif mode == "busy":
            writer.write(_response(429, b"{}"))
        else:
            raise AssertionError(f"unknown mode {mode}")
        await writer.drain()
        return True


class Handler(Protocol):
    """A connection handler that keeps the writers of its open connections."""

    _writers: set[asyncio.StreamWriter]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any: ...


@contextmanager
def faulty_upstream() -> Iterator[tuple[FaultyUpstream, str]]:
    """Run a FaultyUpstream on 127.0.0.1 in its own thread; yield it and its base URL."""
    upstream = FaultyUpstream()
    with serving(upstream) as port:
        yield upstream, f"http://127.0.0.1:{port}"


@contextmanager
def serving(handler: Handler) -> Iterator[int]:
    """Serve ``handler`` on 127.0.0.1 in its own thread and event loop; yield the port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, asyncio.AbstractServer] = {}

    async def start() -> None:
        holder["server"] = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    ready.wait(5)
    port = holder["server"].sockets[0].getsockname()[1]
    try:
        yield int(port)
    finally:

        async def stop() -> None:
            server = holder["server"]
            server.close()
            for writer in list(handler._writers):
                writer.transport.abort()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
