"""The transport seam: one request in, one whole answer (or one of three failures) out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

#: OneInbox's answers are small JSON objects; anything larger is refused unread.
MAX_RESPONSE_BYTES = 64 * 1024
#: Connections kept to OneInbox; the pool waits for a free one past this many at once.
MAX_CONNECTIONS = 256
KEEPALIVE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Response:
    """A whole answer. ``headers`` is keyed by lower-case name (the last value wins)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportError(Exception):
    """The exchange failed; the subclass says how far it got. Messages never hold secrets."""


class NotSent(TransportError):
    """The request surely never reached the server: retrying cannot create anything twice."""


class TimedOut(TransportError):
    """The deadline passed; the server may have received the request."""


class Broken(TransportError):
    """The exchange broke after the request may have left; never retried."""


class Transport(Protocol):
    """Sends one request and reads its whole answer.

    ``seconds`` bounds everything (connect, send, answer, body) in seconds; an answer
    over ``MAX_RESPONSE_BYTES`` raises ``Broken``. Redirects are never followed.
    """

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        seconds: float,
    ) -> Response: ...

    async def aclose(self) -> None: ...


def too_large() -> Broken:
    return Broken(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
