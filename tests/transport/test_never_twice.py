"""Issue item 22: a request that may have reached OneInbox is never sent again (a second
create could bill a second call). Over real loopback HTTP, through OneInboxClient, with
each transport: the server counts what it read."""

from __future__ import annotations

import time

import pytest

from oneinbox_asgi.transport import NotSent, Transport
from oneinbox_asgi.upstream import (
    OneInboxClient,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)

from ..reliability.faulty_upstream import FaultyUpstream
from ..support import AGENT_ID, API_KEY
from .support import FirstAttemptRefused

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5


async def create(transport: Transport, url: str) -> None:
    client = OneInboxClient(api_key=API_KEY, base_url=url, timeout=TIMEOUT, transport=transport)
    await client.create_web_call(AGENT_ID, variables={}, metadata={})


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("reset", UpstreamBadResponse),  # reset mid-answer (in its head)
        ("reset_body", UpstreamBadResponse),  # reset mid-body
        ("close", UpstreamBadResponse),  # read the request, closed without an answer
        ("truncated", UpstreamBadResponse),
        ("hang", UpstreamTimeout),
    ],
)
@pytest.mark.parametrize("warm", [False, True], ids=["new-connection", "kept-connection"])
async def test_a_create_that_may_have_arrived_is_sent_once(
    transport: Transport,
    upstream: tuple[FaultyUpstream, str],
    mode: str,
    error: type[Exception],
    warm: bool,
) -> None:
    fake, url = upstream
    if warm:  # a good exchange first, so the pool sends the next one on a kept connection
        await create(transport, url)
    before = fake.requests
    fake.mode = mode
    began = time.monotonic()
    with pytest.raises(error):
        await create(transport, url)
    assert time.monotonic() - began < TIMEOUT + 0.3
    assert fake.requests - before == 1


async def test_a_refused_first_connection_is_retried_once(
    transport: Transport, upstream: tuple[FaultyUpstream, str], closed_port: int
) -> None:
    """A real refusal from each library (the first attempt goes to a closed port), then
    the retry reaches the server: exactly one request arrived, and a call was made."""
    fake, url = upstream
    refusing = FirstAttemptRefused(transport, f"http://127.0.0.1:{closed_port}")
    client = OneInboxClient(api_key=API_KEY, base_url=url, timeout=TIMEOUT, transport=refusing)
    call = await client.create_web_call(AGENT_ID, variables={}, metadata={})
    assert call.call_id == "call_good"
    assert len(refusing.urls) == 2
    assert [type(e) for e in refusing.failures] == [NotSent]
    assert fake.requests == 1


async def test_refused_twice_is_unavailable_promptly(
    transport: Transport, closed_port: int
) -> None:
    began = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        await create(transport, f"http://127.0.0.1:{closed_port}")
    assert time.monotonic() - began < TIMEOUT
