"""Writing the broker's JSON answers: successes and the contract's error shape.

``{"error": {"code": "<stable_snake_case>", "message": "<for a person>"}}``; every answer
is ``no-store`` (it may carry a token) and ``nosniff``.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Send

from .errors import CallError
from .jsoncodec import dumps

_CONTENT_TYPE = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_NOSNIFF = (b"x-content-type-options", b"nosniff")


async def send_json(
    send: Send,
    status: int,
    payload: object,
    headers: Iterable[tuple[str, str]] = (),
    *,
    head_only: bool = False,
) -> None:
    body = dumps(payload)
    raw_headers = [_CONTENT_TYPE, (b"content-length", b"%d" % len(body)), _NO_STORE, _NOSNIFF]
    if headers:
        raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body})


async def send_error(send: Send, error: CallError, *, head_only: bool = False) -> None:
    payload = {"error": {"code": error.code, "message": error.message}}
    await send_json(send, error.status, payload, error.headers, head_only=head_only)
