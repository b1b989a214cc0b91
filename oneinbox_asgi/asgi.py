"""Small pure-ASGI helpers for the broker's own routes: bounded body, header look-ups."""

from __future__ import annotations

import anyio
from starlette.types import Receive, Scope

from .deadline import within
from .errors import CallError

#: Seconds a client has to send a whole request body, from when the route starts reading it
#: (408 ``request_timeout`` after). The routes' bodies are at most 16 KiB, a few seconds
#: even over 2G (the widget's is ``{}``); without a bound, a client trickling a byte at a
#: time would hold the request open for as long as it liked.
BODY_TIMEOUT_SECONDS = 10.0


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case bytes), without building a Headers."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def is_json(scope: Scope) -> bool:
    content_type = header(scope, b"content-type")
    if content_type is None:
        return False
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing (413) as soon as it grows past ``limit`` bytes, and
    (408 ``request_timeout``) when it has not all arrived within ``BODY_TIMEOUT_SECONDS``."""
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise CallError("bad_request", "Content-Length is not a number.") from None
        if too_big:
            raise _too_large(limit)
    seconds = BODY_TIMEOUT_SECONDS
    try:
        return await within(seconds, _receive_body(receive, limit))
    except TimeoutError:
        raise CallError(
            "request_timeout",
            f"The request body did not arrive within {seconds:g} s.",
            # Else an HTTP/1 server keeps the connection, reading the rest of the trickle.
            # (HTTP/2 forbids connection headers.)
            close_connection=scope.get("http_version", "1.1") in ("1.0", "1.1"),
        ) from None


async def _receive_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise CallError("bad_request", "The client went away before sending the body.")
        body += message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return bytes(body)


def _too_large(limit: int) -> CallError:
    return CallError("payload_too_large", f"The request body is over {limit} bytes.")


#: How long a refusal waits for a small body it does not need, at most.
DRAIN_SECONDS = 1.0


async def drain_body(scope: Scope, receive: Receive, limit: int) -> None:
    """Read and drop a request's small body before answering without it.

    An answer sent while the client is still sending its body is valid HTTP, but some
    servers handle it badly: hypercorn's HTTP/2 drops the whole connection (every request
    a page has in flight on it) when body frames arrive after the answer. Reading a body
    up to ``limit`` bytes for at most ``DRAIN_SECONDS`` first costs nothing in the usual
    case (the body is already here); a larger or slower one is left to the server.
    """
    declared = header(scope, b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return
    read = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if read > limit or not message.get("more_body", False):
                return
