"""Issue 12, items 1 and 2: what OneInbox says in an error is redacted before it becomes
a reason: no participant token, no end handle, no API key (whole, straddling the 200-
character cut, or a piece cut off at an end) in the UpstreamError's message, nor in the
audit line (its message and ``record.oneinbox["reason"]``), nor in the browser's answer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from oneinbox_asgi import OneInboxMiddleware, allow_anonymous
from oneinbox_asgi.guards.handles import HandleSigner
from oneinbox_asgi.redaction import REDACTED, Redactor
from oneinbox_asgi.transport import Response
from oneinbox_asgi.upstream import MAX_DETAIL_CHARS, OneInboxClient, UpstreamError

from ..support import AGENT_ID, API_KEY, START, UNLIMITED
from .support import ScriptedTransport, pieces

pytestmark = pytest.mark.anyio

#: The emulator's key is token-shaped (``oi_sk_…``); this one is not, so only the
#: redactor's knowledge of the key itself can remove it.
OPAQUE_KEY = "Zk7QpL2mW9xR4vT8nB3cY6hJ1dF5gS0a"
KEYS = [API_KEY, OPAQUE_KEY]
KEY_IDS = ["oi-key", "opaque-key"]
#: Words that share no six characters with any secret here.
FILLER = "OneInbox could not use what it was given for this request, so it says why: " * 5
OFFSETS = range(150, 221)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def participant_token() -> str:
    """A LiveKit-style participant token: an HS256 JWT."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": "caller-7", "video": {"room": "call_good", "roomJoin": True}, "exp": 2e9}
    payload = _b64(json.dumps(claims).encode())
    signature = _b64(hmac.new(b"s", f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def end_handle(key: str) -> str:
    signer = HandleSigner(key, clock=lambda: 1_700_000_000.0)
    return signer.issue("user:u1", call_id="call_good", agent_id=AGENT_ID, slot="s1", expires_ms=1)


def secrets_for(key: str) -> dict[str, str]:
    return {"token": participant_token(), "handle": end_handle(key), "key": key}


def leaks(key: str, text: str) -> list[str]:
    """Every piece (6 characters or more) of a secret found in ``text``."""
    return [piece for secret in secrets_for(key).values() for piece in pieces(secret, text)]


def straddling(secret: str, offset: int) -> str:
    """``secret`` starting at ``offset`` of a detail longer than the 200-character cut."""
    return f"{FILLER[:offset]}{secret} was refused, and more words follow {FILLER}"


# -- the redactor itself -----------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS, ids=KEY_IDS)
def test_whole_secrets_are_redacted(key: str) -> None:
    redact = Redactor(key)
    for name, secret in secrets_for(key).items():
        text = f"said {secret}, then {secret}."
        assert redact(text) == f"said {REDACTED}, then {REDACTED}.", name
    assert redact("oi_pk_live_0123abcd and oi_sk_other_9") == f"{REDACTED} and {REDACTED}"
    assert redact(FILLER) == FILLER  # nothing else is touched
    assert redact(FILLER, 50) == FILLER[:50]


@pytest.mark.parametrize("key", KEYS, ids=KEY_IDS)
def test_a_piece_of_the_key_cut_off_at_an_end_is_redacted(key: str) -> None:
    redact = Redactor(key)
    for size in range(4, len(key)):
        assert redact(f"bad key {key[:size]}") == f"bad key {REDACTED}", size
        assert redact(f"{key[-size:]} was bad") == f"{REDACTED} was bad", size
    # Three characters or fewer say nothing of the key (and are kept).
    assert redact(f"bad key {key[:3]}") == f"bad key {key[:3]}"


@pytest.mark.parametrize("key", KEYS, ids=KEY_IDS)
@pytest.mark.parametrize("name", ["token", "handle", "key"])
def test_a_secret_straddling_the_cut_leaves_no_piece(key: str, name: str) -> None:
    """Redacted first, then cut: for every start from 150 to 220 around a 200 cut."""
    redact = Redactor(key)
    secret = secrets_for(key)[name]
    for offset in OFFSETS:
        text = redact(straddling(secret, offset), MAX_DETAIL_CHARS)
        assert pieces(secret, text) == [], (offset, text)
        assert text.startswith(FILLER[: min(offset, MAX_DETAIL_CHARS)])
        assert len(text) <= MAX_DETAIL_CHARS + len(REDACTED)


@pytest.mark.parametrize("key", KEYS, ids=KEY_IDS)
def test_a_piece_of_the_key_that_our_cut_ends_on_is_redacted(key: str) -> None:
    """OneInbox echoed a piece of the key (then more text) and our cut lands inside it."""
    redact = Redactor(key)
    for offset in range(MAX_DETAIL_CHARS - 19, MAX_DETAIL_CHARS):
        text = redact(f"{FILLER[:offset]}{key[:20]} (cut) {FILLER}", MAX_DETAIL_CHARS)
        assert pieces(key, text, 4) == [], (offset, text)


def test_the_redactor_never_shows_its_key() -> None:
    assert OPAQUE_KEY not in repr(Redactor(OPAQUE_KEY))
    assert Redactor("")("a text") == "a text"
    assert Redactor("abc")("abc") == REDACTED


# -- the client's error messages ---------------------------------------------------------

DETAILS: list[tuple[str, Callable[[str], bytes]]] = [
    ("detail", lambda text: json.dumps({"detail": text}).encode()),
    ("message", lambda text: json.dumps({"message": text}).encode()),
    ("error", lambda text: json.dumps({"detail": None, "error": text}).encode()),
    ("detail list", lambda text: json.dumps({"detail": [{"msg": text, "loc": []}]}).encode()),
]


async def messages(key: str, answers: list[Response]) -> list[str]:
    """The UpstreamError message a create gets for each answer in turn."""
    fake = ScriptedTransport(list(answers))
    client = OneInboxClient(api_key=key, base_url="https://x.invalid", transport=fake)
    found = []
    for _ in answers:
        with pytest.raises(UpstreamError) as caught:
            await client.create_web_call(AGENT_ID, variables={}, metadata={})
        found.append(str(caught.value))
    return found


def short_details(key: str) -> list[str]:
    """Every secret whole in one detail; a piece of the key at the very end of one."""
    secrets = secrets_for(key)
    details = [f"token {secrets['token']}, handle {secrets['handle']}, key {secrets['key']}"]
    return details + [f"{FILLER[:100]} then {key[:size]}" for size in (4, 9, len(key) - 1)]


@pytest.mark.parametrize("key", KEYS, ids=KEY_IDS)
@pytest.mark.parametrize("status", [401, 403, 404, 422, 429, 500])
@pytest.mark.parametrize("shape", [d[1] for d in DETAILS], ids=[d[0] for d in DETAILS])
async def test_an_upstream_error_message_holds_no_secret(
    key: str, status: int, shape: Callable[[str], bytes]
) -> None:
    details = short_details(key)
    found = await messages(key, [Response(status, {}, shape(text)) for text in details])
    for message in found:
        assert leaks(key, message) == [], message
        assert FILLER[:4] in message or "token" in message  # the detail was kept, redacted


@pytest.mark.parametrize("key", KEYS, ids=KEY_IDS)
async def test_no_message_holds_a_secret_straddling_the_cut(key: str) -> None:
    """Every secret starting at every offset from 150 to 220 of a long detail."""
    shapes = [shape for _, shape in DETAILS]
    answers = [
        Response(401, {}, shapes[offset % len(shapes)](straddling(secret, offset)))
        for secret in secrets_for(key).values()
        for offset in OFFSETS
    ]
    for message in await messages(key, answers):
        assert leaks(key, message) == [], message
        assert FILLER[:100] in message


# -- through the middleware: the audit line and the answer -------------------------------


class Answering:
    """OneInbox as an httpx MockTransport that answers ``status`` with ``body``."""

    def __init__(self) -> None:
        self.status = 401
        self.body = b"{}"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(self.status, content=self.body)


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "oneinbox_asgi" and hasattr(r, "oneinbox")]


@pytest.mark.parametrize("key", KEYS, ids=KEY_IDS)
async def test_no_secret_in_the_audit_line_or_the_answer(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    oneinbox = Answering()
    secrets = secrets_for(key)
    cases = [(401, f"token {secrets['token']} handle {secrets['handle']} key {key}")]
    cases += [(status, f"{FILLER[:180]} {key[:12]}") for status in (401, 404, 429, 500)]
    cases += [
        (401 if offset % 2 else 500, straddling(secret, offset))
        for secret in secrets.values()
        for offset in OFFSETS
    ]
    async with httpx.AsyncClient(transport=httpx.MockTransport(oneinbox)) as upstream:
        middleware = OneInboxMiddleware(
            Starlette(),
            api_key=key,
            agent_id=AGENT_ID,
            authorize=allow_anonymous,
            base_url="https://oneinbox.invalid",
            http_client=upstream,
            **UNLIMITED,
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=middleware), base_url="http://app"
        ) as browser:
            for status, detail in cases:
                caplog.clear()
                oneinbox.status, oneinbox.body = status, json.dumps({"detail": detail}).encode()
                response = await browser.post(START, json={})
                assert response.status_code >= 500
                (line,) = audit_lines(caplog)
                reason = line.oneinbox["reason"]  # type: ignore[attr-defined]
                assert FILLER[:4] in reason or "token" in reason  # the detail is there
                for text in (reason, line.getMessage(), response.text, caplog.text):
                    assert leaks(key, text) == [], (status, detail, text)
