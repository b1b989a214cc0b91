"""Stable error codes and the one JSON shape every error response has.

``{"error": {"code": "<stable_snake_case>", "message": "<for a person>"}}``
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import Send


class ConfigurationError(ValueError):
    """The middleware was set up wrong; the message says what to set."""


class CallError(Exception):
    """A request the broker answers with an error; raised anywhere in the pipeline."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = tuple(headers)


def json_body(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def send_json(
    send: Send,
    status: int,
    payload: object,
    headers: Iterable[tuple[str, str]] = (),
    *,
    head_only: bool = False,
) -> None:
    body = json_body(payload)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body})


async def send_error(send: Send, error: CallError, *, head_only: bool = False) -> None:
    payload = {"error": {"code": error.code, "message": error.message}}
    await send_json(send, error.status, payload, error.headers, head_only=head_only)


def method_not_allowed(allowed: Iterable[str]) -> CallError:
    allow = ", ".join(allowed)
    return CallError(405, "method_not_allowed", f"Use {allow} for this route.", [("Allow", allow)])


def not_found() -> CallError:
    return CallError(404, "not_found", "There is nothing at this address.")
