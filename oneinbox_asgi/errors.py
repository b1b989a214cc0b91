"""The broker's error vocabulary: one stable code per refusal or failure, one HTTP status each.

A refusal is raised where it is found: as a ``CallError`` naming its code (a guard,
the body parser, a hook runner), or as the domain error of the layer that found it
(the OneInbox client's ``UpstreamError``, the store's ``StoreUnavailable``, the handle
signer's ``HandleRefused``), which ``contract.as_call_error`` maps. ``STATUS`` is the
one table from code to HTTP status. The answer is written by ``responses``; each
refusal is logged once, by ``audit``.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConfigurationError(ValueError):
    """The middleware was set up wrong; the message says what to set."""


#: Every code the routes answer with, and its HTTP status (README: "HTTP contract").
STATUS: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "cross_site": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "too_many_calls": 429,
    "daily_limit_reached": 429,
    "tenant_rate_limited": 429,
    "tenant_busy": 429,
    "tenant_budget_exhausted": 429,
    "service_busy": 503,
    "service_budget_exhausted": 503,
    "calls_paused": 503,
    "internal_error": 500,
    "upstream_auth": 502,
    "upstream_agent_not_found": 502,
    "upstream_error": 502,
    "upstream_busy": 503,
    "upstream_unavailable": 503,
    "limits_unavailable": 503,
    "upstream_timeout": 504,
}

#: Codes that are the service's fault, not the caller's: logged as warnings.
FAILURES = frozenset(code for code, status in STATUS.items() if status >= 500)


class CallError(Exception):
    """A refusal or failure the broker answers with ``{"error": {"code", "message"}}``.

    ``message`` is for the person in front of the browser; ``reason`` (optional) is for
    the operator's log only, and must already be free of secrets. ``close_connection``
    asks an HTTP/1 server to close the connection after the answer (the request was not
    read to its end).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        allow: Iterable[str] = (),
        reason: str | None = None,
        close_connection: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = STATUS[code]
        self.message = message
        self.retry_after = retry_after
        self.allow = tuple(allow)
        self.reason = reason
        #: The budget scope that refused (``caller``, ``tenant``, ``global``), for limits.
        self.scope: str | None = None
        self.close_connection = close_connection

    def __repr__(self) -> str:
        return f"CallError({self.code!r}, {self.message!r})"

    @property
    def headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
        if self.allow:
            headers.append(("Allow", ", ".join(self.allow)))
        if self.close_connection:
            headers.append(("Connection", "close"))
        return headers


def method_not_allowed(allowed: Iterable[str]) -> CallError:
    allowed = tuple(allowed)
    return CallError(
        "method_not_allowed", f"Use {', '.join(allowed)} for this route.", allow=allowed
    )


def not_found() -> CallError:
    return CallError("not_found", "There is nothing at this address.")


def bad_request(message: str) -> CallError:
    return CallError("bad_request", message)
