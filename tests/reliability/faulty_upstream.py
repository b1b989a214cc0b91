"""A OneInbox stand-in on a raw TCP socket that misbehaves below the HTTP layer.

The emulator's API misbehaves politely (a status, a body). This one can also hang
after accepting, reset the connection mid-answer, lie about Content-Length or send
50 MB, which only a socket-level server can do.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

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


@dataclass
class FaultyUpstream:
    """Serves one behaviour at a time, named by ``mode``; counts requests it read."""

    mode: str = "good"
    requests: int = 0
    open_connections: int = 0
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
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
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


@contextmanager
def faulty_upstream() -> Iterator[tuple[FaultyUpstream, str]]:
    """Run a FaultyUpstream on 127.0.0.1 in its own thread; yield it and its base URL."""
    upstream = FaultyUpstream()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, asyncio.AbstractServer] = {}

    async def start() -> None:
        holder["server"] = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    ready.wait(5)
    port = holder["server"].sockets[0].getsockname()[1]
    try:
        yield upstream, f"http://127.0.0.1:{port}"
    finally:

        async def stop() -> None:
            server = holder["server"]
            server.close()
            for writer in list(upstream._writers):
                writer.transport.abort()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
