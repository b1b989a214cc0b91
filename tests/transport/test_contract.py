"""Both transports keep the same contract over real loopback HTTP: one whole answer, or
exactly one of NotSent / TimedOut / Broken, within ``seconds``; redirects returned as they
are; header names in lower case; no answer over MAX_RESPONSE_BYTES."""

from __future__ import annotations

import time

import httpx
import pytest

from oneinbox_asgi.transport import Broken, NotSent, Response, TimedOut, Transport
from oneinbox_asgi.transport.base import MAX_RESPONSE_BYTES
from oneinbox_asgi.transport.httpx_transport import HttpxTransport

from ..reliability.faulty_upstream import GOOD_BODY, FaultyUpstream
from .support import TRANSPORTS, make_transport

pytestmark = pytest.mark.anyio

SECONDS = 0.4
SLACK = 0.3
PATH = "/v1/calls/web"


async def send(transport: Transport, url: str, seconds: float = SECONDS) -> Response:
    return await transport.send(
        "POST",
        url + PATH,
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        body=b'{"agent_id": "agt_demo"}',
        seconds=seconds,
    )


async def test_a_good_answer_whole(
    transport: Transport, upstream: tuple[FaultyUpstream, str]
) -> None:
    fake, url = upstream
    answer = await send(transport, url)
    assert (answer.status, answer.body) == (201, GOOD_BODY)
    assert answer.headers["content-type"] == "application/json"
    assert fake.requests == 1
    assert fake.heads[0].startswith(b"POST /v1/calls/web HTTP/1.1\r\n")
    assert b"\r\nauthorization: bearer k\r\n" in fake.heads[0].lower()


async def test_refused_is_not_sent(transport: Transport, closed_port: int) -> None:
    began = time.monotonic()
    with pytest.raises(NotSent):
        await send(transport, f"http://127.0.0.1:{closed_port}")
    assert time.monotonic() - began < SECONDS


@pytest.mark.parametrize("mode", ["hang", "trickle"])
async def test_no_whole_answer_in_time_is_timed_out(
    transport: Transport, upstream: tuple[FaultyUpstream, str], mode: str
) -> None:
    """``hang`` reads the request and never answers; ``trickle`` answers a byte every 50 ms,
    so only a deadline over the whole exchange (not one per read) ends it in time."""
    fake, url = upstream
    fake.mode = mode
    began = time.monotonic()
    with pytest.raises(TimedOut):
        await send(transport, url)
    elapsed = time.monotonic() - began
    assert SECONDS - 0.05 <= elapsed < SECONDS + SLACK
    assert fake.requests == 1


@pytest.mark.parametrize(
    "mode",
    [
        "reset",  # a reset inside the answer's head
        "reset_body",  # the whole head, half the body, then a reset
        "close",  # the request read, then the connection closed without a word
        "truncated",  # fewer bytes than the Content-Length, then closed
        "over_declared",  # Content-Length over the bound
        "over_chunked",  # chunked, over the bound
        "over_unframed",  # no length, no chunks: ends at the close, over the bound
        "bomb_declared",  # 1 KB of gzip (Content-Length) inflating to 1 MB
        "bomb_chunked",  # the same, chunked
        "bad_gzip",  # says gzip, is not
        "garbage",  # not HTTP at all
    ],
)
async def test_a_broken_exchange_is_broken(
    transport: Transport, upstream: tuple[FaultyUpstream, str], mode: str
) -> None:
    fake, url = upstream
    fake.mode = mode
    began = time.monotonic()
    with pytest.raises(Broken):
        await send(transport, url)
    assert time.monotonic() - began < SECONDS
    assert fake.requests == 1
    # The broken connection was not kept: the next exchange on the pool is whole.
    fake.mode = "good"
    answer = await send(transport, url)
    assert (answer.status, answer.body) == (201, GOOD_BODY)


@pytest.mark.parametrize("mode", ["close", "reset"])
async def test_a_kept_connection_that_breaks_is_broken_too(
    transport: Transport, upstream: tuple[FaultyUpstream, str], mode: str
) -> None:
    """The request goes out on a connection the pool kept from a good exchange."""
    fake, url = upstream
    assert (await send(transport, url)).status == 201
    fake.mode = mode
    with pytest.raises(Broken):
        await send(transport, url)
    assert fake.requests == 2  # one each: the broken one was not sent again


@pytest.mark.parametrize("mode", ["at_declared", "at_chunked"])
async def test_an_answer_of_exactly_the_bound_is_read(
    transport: Transport, upstream: tuple[FaultyUpstream, str], mode: str
) -> None:
    fake, url = upstream
    fake.mode = mode
    answer = await send(transport, url)
    assert answer.status == 200
    assert len(answer.body) == MAX_RESPONSE_BYTES


async def test_a_redirect_is_returned_not_followed(
    transport: Transport, upstream: tuple[FaultyUpstream, str]
) -> None:
    fake, url = upstream
    fake.mode = "redirect"
    answer = await send(transport, url)
    assert answer.status == 302
    assert answer.headers["location"] == "/v1/calls/elsewhere"
    assert answer.body == b'{"detail": "moved"}'
    assert fake.requests == 1


async def test_an_injected_client_that_follows_redirects_does_not_here(
    upstream: tuple[FaultyUpstream, str],
) -> None:
    fake, url = upstream
    fake.mode = "redirect"
    async with httpx.AsyncClient(follow_redirects=True) as client:
        answer = await send(HttpxTransport(client), url)
    assert answer.status == 302
    assert fake.requests == 1


async def test_an_injected_client_is_used_and_left_open(
    upstream: tuple[FaultyUpstream, str],
) -> None:
    fake, url = upstream
    async with httpx.AsyncClient() as client:
        injected = HttpxTransport(client)
        assert (await send(injected, url)).status == 201
        await injected.aclose()
        assert not client.is_closed
        assert (await send(injected, url)).status == 201
    assert fake.requests == 2


async def test_header_names_are_lower_case_and_the_last_value_wins(
    transport: Transport, upstream: tuple[FaultyUpstream, str]
) -> None:
    fake, url = upstream
    fake.mode = "headers"  # X-Mixed-Case, RETRY-AFTER, x-twice: 1 then X-Twice: 2
    answer = await send(transport, url)
    assert all(name == name.lower() for name in answer.headers)
    assert answer.headers["x-mixed-case"] == "Kept"
    assert answer.headers["retry-after"] == "7"
    assert answer.headers["x-twice"] == "2"


async def test_both_give_the_same_answer(upstream: tuple[FaultyUpstream, str]) -> None:
    """The same status, headers and body from each, for the modes that answer."""
    fake, url = upstream
    made = {kind: make_transport(kind) for kind in TRANSPORTS}
    try:
        for mode in ("good", "redirect", "headers", "status_404", "at_chunked"):
            fake.mode = mode
            ours, theirs = [await send(made[kind], url) for kind in TRANSPORTS]
            assert (ours.status, ours.body) == (theirs.status, theirs.body), mode
            assert dict(ours.headers) == dict(theirs.headers), mode
    finally:
        for each in made.values():
            await each.aclose()
