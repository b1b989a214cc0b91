"""OneInboxClient over a scripted fake at the transport seam: what is retried (only a
request that surely never left, once, within what is left of ONE deadline), how each
failure and each answer maps to an UpstreamError, and how call ids become paths."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import pytest

from oneinbox_asgi.contract import as_call_error
from oneinbox_asgi.transport import Broken, NotSent, Response, TimedOut
from oneinbox_asgi.upstream import (
    AgentNotFound,
    OneInboxClient,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    WebCall,
    call_path,
)

from ..support import AGENT_ID, API_KEY
from .support import ScriptedTransport, Sleep, Step, good_answer

pytestmark = pytest.mark.anyio

BASE = "https://oneinbox.invalid"
TIMEOUT = 0.5
SLACK = 0.25


def client_for(*script: Step, timeout: float = TIMEOUT) -> tuple[OneInboxClient, ScriptedTransport]:
    fake = ScriptedTransport(list(script))
    return OneInboxClient(api_key=API_KEY, base_url=BASE, timeout=timeout, transport=fake), fake


async def create(client: OneInboxClient) -> WebCall:
    return await client.create_web_call(AGENT_ID, variables={"a": 1}, metadata={})


def answer(status: int, body: Any = None, **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


# -- retries and the one deadline ---------------------------------------------------------


async def test_a_good_exchange_is_sent_once_with_the_key_in_one_header() -> None:
    client, fake = client_for(good_answer())
    call = await create(client)
    assert call == WebCall("call_good", "wss://voice.example", "tok.en.x")
    (sent,) = fake.calls
    assert (sent.method, sent.url) == ("POST", BASE + "/v1/calls/web")
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert [v for v in sent.headers.values() if API_KEY in v] == [f"Bearer {API_KEY}"]
    assert sent.body is not None and API_KEY.encode() not in sent.body
    assert json.loads(sent.body) == {"agent_id": AGENT_ID, "variables": {"a": 1}}
    assert TIMEOUT - 0.05 < sent.seconds <= TIMEOUT


async def test_not_sent_is_retried_once_with_what_is_left() -> None:
    client, fake = client_for(NotSent("refused"), good_answer())
    assert (await create(client)).call_id == "call_good"
    first, second = fake.calls
    assert second.seconds < TIMEOUT  # what is left, not the whole timeout again
    assert second.seconds <= first.seconds - (second.at - first.at) + 0.05  # scheduling jitter
    assert (first.url, first.body) == (second.url, second.body)


async def test_a_retry_gets_only_the_time_left_after_a_slow_refusal() -> None:
    """Issue item 23: a retry given the full timeout would pass a check of the answer but
    not this one: the refusal took 0.3 s of 0.5, so the retry has at most 0.2 s."""
    client, fake = client_for(Sleep(0.3, NotSent("refused")), good_answer())
    await create(client)
    first, second = fake.calls
    assert second.seconds <= TIMEOUT - (second.at - first.at) + 0.05  # scheduling jitter
    assert second.seconds < TIMEOUT - 0.25


async def test_the_timeout_bounds_the_whole_exchange_with_its_retry() -> None:
    """Issue item 23: the first attempt is refused after 0.3 s, the retry hangs. The whole
    exchange ends at the timeout (0.5 s), not at 0.3 + a fresh 0.5 s."""
    client, fake = client_for(Sleep(0.3, NotSent("refused")), Sleep(60, good_answer()))
    began = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await create(client)
    elapsed = time.monotonic() - began
    assert TIMEOUT - 0.05 <= elapsed < TIMEOUT + SLACK
    assert len(fake.calls) == 2


async def test_no_retry_when_the_refusal_came_after_the_deadline() -> None:
    client, fake = client_for(Sleep(TIMEOUT + 0.05, NotSent("late"), honour=False))
    with pytest.raises(UpstreamTimeout):
        await create(client)
    assert len(fake.calls) == 1


async def test_not_sent_twice_is_unavailable() -> None:
    client, fake = client_for(NotSent("refused"), NotSent("refused again"))
    began = time.monotonic()
    with pytest.raises(UpstreamUnavailable) as caught:
        await create(client)
    assert time.monotonic() - began < SLACK
    assert len(fake.calls) == 2
    assert "refused again" in str(caught.value)
    assert as_call_error(caught.value).code == "upstream_unavailable"


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (TimedOut("slow"), UpstreamTimeout),
        (Broken("reset"), UpstreamBadResponse),
        (Sleep(60, good_answer()), UpstreamTimeout),  # a hang: the fake times out itself
    ],
    ids=["timed-out", "broken", "hang"],
)
async def test_what_may_have_left_is_never_retried(
    failure: TimedOut | Broken | Sleep, expected: type[UpstreamError]
) -> None:
    # A second step is scripted so that a retry would succeed (and the test fail).
    client, fake = client_for(failure, good_answer())
    began = time.monotonic()
    with pytest.raises(expected):
        await create(client)
    assert time.monotonic() - began < TIMEOUT + SLACK
    assert len(fake.calls) == 1


@pytest.mark.parametrize("method", ["stop", "get"])
async def test_stop_and_get_keep_the_same_rules(method: str) -> None:
    client, fake = client_for(NotSent("refused"), Broken("reset"), good_answer())

    async def call() -> object:
        if method == "stop":
            return await client.stop_call("call_1")
        return await client.get_call("call_1")

    with pytest.raises(UpstreamBadResponse):
        await call()
    assert len(fake.calls) == 2
    assert fake.calls[1].seconds < TIMEOUT
    expected = ("POST", BASE + "/v1/calls/call_1/stop") if method == "stop" else None
    expected = expected or ("GET", BASE + "/v1/calls/call_1")
    assert (fake.calls[0].method, fake.calls[0].url) == expected
    assert fake.calls[0].body is None


async def test_an_injected_transport_is_never_closed() -> None:
    client, fake = client_for(good_answer())
    await create(client)
    await client.aclose()
    assert not fake.closed
    assert not client.is_open


# -- answers to errors -------------------------------------------------------------------

FUTURE = "an HTTP-date 30 s from now"
PAST = "Wed, 21 Oct 2015 07:28:00 GMT"

CREATE_ANSWERS: list[tuple[str, Response, type[UpstreamError], str]] = [
    ("401", answer(401, {"detail": "bad key"}), UpstreamAuthError, "upstream_auth"),
    ("403", answer(403, {}), UpstreamAuthError, "upstream_auth"),
    ("404 agent", answer(404, {"detail": "no agent"}), AgentNotFound, "upstream_agent_not_found"),
    ("422", answer(422, {"detail": [{"msg": "x"}]}), UpstreamBadResponse, "upstream_error"),
    ("429", answer(429, {}), UpstreamBusy, "upstream_busy"),
    ("500", answer(500, b"<html>oops</html>"), UpstreamBadResponse, "upstream_error"),
    ("502", answer(502, b""), UpstreamBadResponse, "upstream_error"),
    ("503", answer(503, {"detail": "later"}), UpstreamBadResponse, "upstream_error"),
    ("302", answer(302, b"", location="/elsewhere"), UpstreamBadResponse, "upstream_error"),
]


@pytest.mark.parametrize(
    ("response", "expected", "code"),
    [case[1:] for case in CREATE_ANSWERS],
    ids=[case[0] for case in CREATE_ANSWERS],
)
async def test_create_statuses_map_to_upstream_errors(
    response: Response, expected: type[UpstreamError], code: str
) -> None:
    client, fake = client_for(response, good_answer())
    with pytest.raises(UpstreamError) as caught:
        await create(client)
    assert type(caught.value) is expected
    assert as_call_error(caught.value).code == code
    assert len(fake.calls) == 1  # an answer is never retried


def created(**fields: Any) -> dict[str, Any]:
    """A 201's body: a good call with ``fields`` changed (None: left out)."""
    body = {"id": "call_1", "server_url": "wss://x", "participant_token": "t"} | fields
    return {name: value for name, value in body.items() if value is not None}


UNUSABLE: list[tuple[str, bytes | Any]] = [
    ("not json", b"<html>hi</html>"),
    ("truncated json", b'{"id": "call_1", "server_url": "wss://x'),
    ("json array", []),
    ("json string", "call_1"),
    ("no id", created(id=None)),
    ("no url", created(server_url=None)),
    ("no token", created(participant_token=None)),
    ("id not text", created(id=7)),
    ("url not text", created(server_url=["wss://x"])),
    ("empty token", created(participant_token="")),
    ("id .", created(id=".")),
    ("id ..", created(id="..")),
    ("id empty", created(id="")),
    ("call_id ..", created(id=None, call_id="..")),
]


@pytest.mark.parametrize("body", [case[1] for case in UNUSABLE], ids=[c[0] for c in UNUSABLE])
async def test_an_unusable_created_answer_is_a_bad_response(body: Any) -> None:
    client, fake = client_for(answer(201, body), good_answer())
    with pytest.raises(UpstreamError) as caught:
        await create(client)
    assert type(caught.value) is UpstreamBadResponse
    assert as_call_error(caught.value).code == "upstream_error"
    assert len(fake.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 422, 409])
async def test_a_bad_status_keeps_its_number(status: int) -> None:
    client, _ = client_for(answer(status, {"detail": "no"}))
    with pytest.raises(UpstreamBadResponse) as caught:
        await create(client)
    assert caught.value.status == status
    assert f"OneInbox answered {status}: no" == str(caught.value)


async def test_the_other_id_field_and_extra_fields_are_accepted() -> None:
    body = {"call_id": "c/1", "server_url": "wss://x", "participant_token": "t", "more": 1}
    client, _ = client_for(answer(201, body))
    assert await create(client) == WebCall("c/1", "wss://x", "t")


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("7", 7, 7),
        (" 12 ", 12, 12),
        ("999999", 86400, 86400),  # capped at a day
        (FUTURE, 29, 30),
        (PAST, 0, 0),
        ("soon", None, None),
        ("-5", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
async def test_429_gives_retry_after_in_seconds(
    retry_after: str | None, low: int | None, high: int | None
) -> None:
    if retry_after == FUTURE:
        retry_after = email.utils.formatdate(time.time() + 30, usegmt=True)
    headers = {} if retry_after is None else {"retry_after": retry_after}
    client, _ = client_for(answer(429, {"detail": "slow down"}, **headers))
    with pytest.raises(UpstreamBusy) as caught:
        await create(client)
    seconds = caught.value.retry_after
    if low is None:
        assert seconds is None
        assert as_call_error(caught.value).retry_after == 5  # the contract's default
    else:
        assert seconds is not None and low <= seconds <= high
        assert as_call_error(caught.value).retry_after == seconds


@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        (answer(200, {}), None),
        (answer(204, b""), None),
        (answer(404, {"detail": "no such call"}), None),  # already over: fine
        (answer(401, {}), UpstreamAuthError),
        (answer(403, {}), UpstreamAuthError),
        (answer(429, {}, retry_after="3"), UpstreamBusy),
        (answer(500, {}), UpstreamBadResponse),
        (answer(409, {}), UpstreamBadResponse),
    ],
)
async def test_stop_answers(response: Response, outcome: type[UpstreamError] | None) -> None:
    client, _ = client_for(response)
    if outcome is None:
        assert await client.stop_call("call_1") is None
    else:
        with pytest.raises(UpstreamError) as caught:
            await client.stop_call("call_1")
        assert type(caught.value) is outcome  # never AgentNotFound


@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        (answer(200, {"id": "call_1", "status": "ended"}), {"id": "call_1", "status": "ended"}),
        (answer(404, {}), None),
        (answer(200, []), UpstreamBadResponse),
        (answer(200, b"nope"), UpstreamBadResponse),
        (answer(401, {}), UpstreamAuthError),
        (answer(500, {}), UpstreamBadResponse),
    ],
)
async def test_get_answers(response: Response, outcome: Any) -> None:
    client, _ = client_for(response)
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            await client.get_call("call_1")
    else:
        assert await client.get_call("call_1") == outcome


# -- call ids in paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call_id", "path"),
    [
        ("call_1", "/v1/calls/call_1"),
        ("a/b", "/v1/calls/a%2Fb"),
        ("../admin", "/v1/calls/..%2Fadmin"),
        ("%", "/v1/calls/%25"),
        ("%2F", "/v1/calls/%252F"),
        ("a b?c#d", "/v1/calls/a%20b%3Fc%23d"),
        ("é☎", "/v1/calls/%C3%A9%E2%98%8E"),
        ("...", "/v1/calls/..."),
        ("a\\b", "/v1/calls/a%5Cb"),
    ],
)
async def test_call_path_encodes_the_id_as_one_segment(call_id: str, path: str) -> None:
    assert call_path(call_id) == path
    assert call_path(call_id, "stop") == path + "/stop"
    client, fake = client_for(answer(200, {}))
    await client.stop_call(call_id)
    assert fake.calls[0].url == BASE + path + "/stop"


@pytest.mark.parametrize("call_id", ["", ".", ".."])
async def test_call_path_refuses_ids_that_are_not_a_segment(call_id: str) -> None:
    with pytest.raises(ValueError, match="cannot be a call id"):
        call_path(call_id)
    client, fake = client_for()
    with pytest.raises(ValueError):
        await client.stop_call(call_id)
    with pytest.raises(ValueError):
        await client.get_call(call_id)
    assert fake.calls == []  # refused before anything was sent
