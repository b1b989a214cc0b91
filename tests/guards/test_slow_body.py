"""A request body trickled in is cut off: 408 ``request_timeout``, nothing upstream, no slot.

The bound is ``oneinbox_asgi.asgi.BODY_TIMEOUT_SECONDS`` (10 s), shortened here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from oneinbox_asgi import asgi
from oneinbox_emulator.api import EmulatorAPI

from ..servers import serve
from ..support import START, broker, client_for, error_code

BOUND = 0.5


@pytest.fixture
def short_bound(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(asgi, "BODY_TIMEOUT_SECONDS", BOUND)
    return BOUND


def creates(oneinbox: EmulatorAPI) -> int:
    return sum(1 for r in oneinbox.received if r.path == "/v1/calls/web")


def trickle_over_http(url: str, *, every: float, give_up: float) -> tuple[bytes, float, bool]:
    """POST a start-call over a raw socket, one byte of body per ``every`` seconds; answer
    what the server sent back, when it started answering (seconds since the headers), and
    whether it then closed the connection."""
    host, port = url.removeprefix("http://").split(":")
    body = b"{" + b" " * 400 + b"}"
    head = (
        f"POST {START} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-User: u1\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=give_up) as sock:
        sock.sendall(head)
        started = time.monotonic()
        answered: float | None = None
        received = b""
        closed = False
        sent = 0
        while time.monotonic() - started < give_up:
            if sent < len(body):
                try:
                    sock.sendall(body[sent : sent + 1])
                    sent += 1
                except OSError:  # the server closed its side after answering
                    sent = len(body)
            sock.settimeout(every)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            if answered is None:
                answered = time.monotonic() - started
            if not chunk:
                closed = True
                break
            received += chunk
        assert answered is not None, f"no answer within {give_up} s while trickling the body"
        return received, answered, closed


def test_a_trickled_body_over_real_http_is_cut_off(
    oneinbox: EmulatorAPI, short_bound: float
) -> None:
    with serve(oneinbox) as upstream_url:
        app = broker(base_url=upstream_url, max_concurrent_calls=1)
        with serve(app) as url:
            answer, after, closed = trickle_over_http(url, every=0.1, give_up=short_bound + 5)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), answer
            assert b"\r\nconnection: close" in head.lower(), answer
            assert closed  # the server does not go on reading the trickle
            assert b'"code":"request_timeout"' in body, answer
            assert short_bound - 0.05 <= after < short_bound + 1.5, after
            assert oneinbox.received == []  # nothing went upstream
            # No slot was taken and no attempt counted: the same caller, cap 1, calls at once.
            good = httpx.post(url + START, json={}, headers={"X-User": "u1"})
            assert good.status_code == 201, good.text
    assert creates(oneinbox) == 1


@pytest.mark.anyio
async def test_a_trickled_body_in_process_is_cut_off(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, short_bound: float
) -> None:
    async def one_byte_at_a_time() -> AsyncIterator[bytes]:
        yield b"{"
        for _ in range(1000):
            await anyio.sleep(0.05)
            yield b" "
        yield b"}"

    app = broker(http_client=upstream_client, max_concurrent_calls=1)
    async with client_for(app, "u1") as client:
        started = time.monotonic()
        with anyio.fail_after(short_bound + 5):
            slow = await client.post(
                START, content=one_byte_at_a_time(), headers={"content-type": "application/json"}
            )
        elapsed = time.monotonic() - started
        assert slow.status_code == 408 and error_code(slow) == "request_timeout"
        assert slow.headers["connection"] == "close"
        assert short_bound - 0.05 <= elapsed < short_bound + 1.5, elapsed
        assert oneinbox.received == []
        assert (await client.post(START, json={})).status_code == 201  # no slot was held


@pytest.mark.anyio
async def test_a_body_sent_in_pieces_within_the_bound_is_read(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, short_bound: float
) -> None:
    async def in_pieces() -> AsyncIterator[bytes]:
        for piece in (b"{", b' "variables"', b": {}", b"}"):
            await anyio.sleep(short_bound / 10)
            yield piece

    app = broker(http_client=upstream_client)
    async with client_for(app, "u1") as client:
        response = await client.post(
            START, content=in_pieces(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 201, response.text
