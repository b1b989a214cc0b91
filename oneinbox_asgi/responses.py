"""Writing the broker's JSON answers: successes and the contract's error shape.

``{"error": {"code": "<stable_snake_case>", "message": "<for a person>"}}``; every answer
is ``no-store`` (it may carry a token) and ``nosniff``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from json import encoder as json_encoder
from typing import Any

from starlette.types import Send

from .errors import CallError


def _compact_encoder() -> Callable[[object], str]:
    """``json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode``, with its C
    encoder made once: ``encode`` makes a new one on every call, half the cost of a
    start-call's answer. (Without the C accelerator, the encoder itself.)"""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    make: Any = getattr(json_encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    # No circular-reference markers: these payloads are the broker's own small trees.
    chunks = make(
        None, encoder.default, json_encoder.encode_basestring, None, ":", ",", False, False, True
    )
    return lambda payload: "".join(chunks(payload, 0))


_ENCODE = _compact_encoder()
_CONTENT_TYPE = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_NOSNIFF = (b"x-content-type-options", b"nosniff")


def json_body(payload: object) -> bytes:
    return _ENCODE(payload).encode()


async def send_json(
    send: Send,
    status: int,
    payload: object,
    headers: Iterable[tuple[str, str]] = (),
    *,
    head_only: bool = False,
) -> None:
    body = json_body(payload)
    raw_headers = [_CONTENT_TYPE, (b"content-length", b"%d" % len(body)), _NO_STORE, _NOSNIFF]
    if headers:
        raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body})


async def send_error(send: Send, error: CallError, *, head_only: bool = False) -> None:
    payload = {"error": {"code": error.code, "message": error.message}}
    await send_json(send, error.status, payload, error.headers, head_only=head_only)
