"""End-call handles: what start-call gives the browser so the same caller can hang up.

``oieh1.<payload>.<signature>``: the payload is base64url JSON naming the call, its
agent, its concurrency slot, a keyed digest of the caller's limit key (never the id
itself) and the instant it expires (milliseconds of the store's clock, the same
instant the slot's lease ends); the signature is keyed BLAKE2b (a MAC by design, one
pass where HMAC takes two) over the encoded payload, under a key derived once from
the API key, so every replica with the same key verifies it with no new setting and
no shared state.

A handle is accepted only in exactly the form it was issued in: the signature is
compared as text against the one canonical encoding, so padding, spare bits or
characters outside the alphabet make it a different (refused) handle.

Handles of the 0.1 format (itsdangerous) are refused like any unknown handle: during a
rolling deploy an end-call with one answers 404, and the call's slot is freed when the
call ends (reconciled with OneInbox) or its lease runs out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from ..jsoncodec import loads

MAX_HANDLE_CHARS = 2048
PREFIX = "oieh1."
_CONTEXT = b"oneinbox-asgi end-call handle v1"
_SIGNATURE_CHARS = 43  # 32 bytes of BLAKE2b in unpadded base64url


class HandleRefused(Exception):
    """The handle is forged, malformed or expired; the message says which (for logs)."""


@dataclass(frozen=True, slots=True)
class EndHandle:
    owner: str
    call_id: str
    agent_id: str
    slot: str | None
    #: When the handle (and the slot's lease) ends: milliseconds since the epoch.
    expires_ms: int


#: JSON's own string encoder (ASCII-only, as ``json.dumps``): the payload is a list of
#: four strings and an int, written without building an encoder per handle.
_STRING = encode_basestring_ascii
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """Unpadded base64url, as ``base64.urlsafe_b64encode(data).rstrip(b"=")``."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


class HandleSigner:
    """Issues and opens end-call handles. ``clock``: seconds since the epoch, the store's."""

    __slots__ = ("_owner", "_signer", "clock")

    def __init__(self, api_key: str, *, clock: Callable[[], float]) -> None:
        # Derived once, here: each handle then costs two keyed hashes, no key derivation.
        secret = hmac.new(api_key.encode(), _CONTEXT, hashlib.sha256).digest()
        # Keyed once too: each digest starts from a copy (cheaper than keying it anew).
        self._owner = hashlib.blake2b(key=secret, digest_size=16, person=b"owner")
        self._signer = hashlib.blake2b(key=secret, digest_size=32, person=b"signature")
        self.clock = clock

    def __repr__(self) -> str:
        return "HandleSigner()"

    def owner_tag(self, limit_key: str) -> str:
        """A keyed digest of the limit key: comparable, but not readable by the browser."""
        digest = self._owner.copy()
        digest.update(limit_key.encode())
        return digest.hexdigest()

    def _signature(self, payload: str) -> str:
        digest = self._signer.copy()
        digest.update(payload.encode("ascii"))
        return _b64(digest.digest())

    def issue(
        self,
        limit_key: str,
        *,
        call_id: str,
        agent_id: str,
        slot: str | None,
        expires_ms: int,
    ) -> str:
        # Exactly json.dumps([owner, call_id, agent_id, slot, expires_ms], separators=(",", ":"))
        text = (
            f"[{_STRING(self.owner_tag(limit_key))},{_STRING(call_id)},{_STRING(agent_id)},"
            f"{'null' if slot is None else _STRING(slot)},{int(expires_ms)}]"
        )
        payload = _b64(text.encode("ascii"))
        return f"{PREFIX}{payload}.{self._signature(payload)}"

    def open(self, token: Any, *, now_ms: int | None = None) -> EndHandle:
        """The handle ``token`` names, if it is ours, unchanged and unexpired at ``now_ms``
        (the store's clock, where its leases are measured; default: ``clock``)."""
        if (
            not isinstance(token, str)
            or len(token) > MAX_HANDLE_CHARS
            or not token.startswith(PREFIX)
            or not token.isascii()
        ):
            raise HandleRefused("not a handle")
        payload, _, signature = token[len(PREFIX) :].partition(".")
        if len(signature) != _SIGNATURE_CHARS or not hmac.compare_digest(
            signature, self._signature(payload)
        ):
            raise HandleRefused("bad signature")
        try:
            fields = loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, binascii.Error):  # signed by us, so only if the format changed
            raise HandleRefused("unreadable") from None
        if not (
            isinstance(fields, list)
            and len(fields) == 5
            and all(isinstance(item, str) for item in fields[:3])
            and (fields[3] is None or isinstance(fields[3], str))
            and isinstance(fields[4], int)
        ):
            raise HandleRefused("unknown handle version")
        owner, call_id, agent_id, slot, expires_ms = fields
        now = math.floor(self.clock() * 1000) if now_ms is None else now_ms
        if now >= expires_ms:  # the slot's lease is over too
            raise HandleRefused("expired")
        return EndHandle(
            owner=owner, call_id=call_id, agent_id=agent_id, slot=slot, expires_ms=expires_ms
        )

    def owned_by(self, handle: EndHandle, limit_key: str) -> bool:
        return hmac.compare_digest(handle.owner, self.owner_tag(limit_key))
