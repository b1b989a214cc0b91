"""End-call handles: what start-call gives the browser so the same caller can hang up.

A handle is signed with itsdangerous under a key derived (HMAC) from the API key, so
every replica configured with the same key verifies it with no new setting and no
shared state. It names the call, its concurrency slot and a keyed digest of the
caller (never the caller's id itself), and expires after ``max_call_seconds``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from .store import Clock

MAX_HANDLE_CHARS = 2048
#: A handle signed on a replica whose clock runs this far ahead is still accepted.
CLOCK_SKEW_SECONDS = 60
_CONTEXT = b"oneinbox-asgi end-call handle v1"


class HandleRefused(Exception):
    """The handle is forged, malformed or expired; the message says which (for logs)."""


@dataclass(frozen=True, slots=True)
class EndHandle:
    owner: str
    call_id: str
    agent_id: str
    slot: str | None
    issued: int


class HandleSigner:
    """Issues and opens end-call handles."""

    def __init__(self, api_key: str, *, max_age: float, clock: Clock) -> None:
        self._secret = hmac.new(api_key.encode(), _CONTEXT, hashlib.sha256).digest()
        self._serializer = URLSafeSerializer(
            self._secret,
            salt="oneinbox-asgi.end-call",
            signer_kwargs={"digest_method": hashlib.sha256},
        )
        self.max_age = max_age
        self.clock = clock

    def __repr__(self) -> str:
        return f"HandleSigner(max_age={self.max_age!r})"

    def owner_tag(self, caller_key: str) -> str:
        """A keyed digest of the caller key: comparable, but not readable by the browser."""
        digest = hmac.new(self._secret, caller_key.encode(), hashlib.sha256).hexdigest()
        return digest[:32]

    def issue(self, caller_key: str, *, call_id: str, agent_id: str, slot: str | None) -> str:
        payload = [1, self.owner_tag(caller_key), call_id, agent_id, slot, math.floor(self.clock())]
        return str(self._serializer.dumps(payload))

    def open(self, token: Any) -> EndHandle:
        if not isinstance(token, str) or not token or len(token) > MAX_HANDLE_CHARS:
            raise HandleRefused("not a handle")
        try:
            payload = self._serializer.loads(token)
        except BadData:
            raise HandleRefused("bad signature") from None
        if not (
            isinstance(payload, list)
            and len(payload) == 6
            and payload[0] == 1
            and all(isinstance(item, str) for item in payload[1:4])
            and (payload[4] is None or isinstance(payload[4], str))
            and isinstance(payload[5], int)
        ):
            raise HandleRefused("unknown handle version")
        _, owner, call_id, agent_id, slot, issued = payload
        age = self.clock() - issued
        if age >= self.max_age:  # the slot's lease is over too
            raise HandleRefused("expired")
        if age < -CLOCK_SKEW_SECONDS:
            raise HandleRefused("issued in the future")
        return EndHandle(owner=owner, call_id=call_id, agent_id=agent_id, slot=slot, issued=issued)

    def owned_by(self, handle: EndHandle, caller_key: str) -> bool:
        return hmac.compare_digest(handle.owner, self.owner_tag(caller_key))
