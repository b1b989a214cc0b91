"""Domain errors found below the routes, mapped to the HTTP contract in this one place."""

from __future__ import annotations

from .errors import CallError
from .guards.handles import HandleRefused
from .stores.base import StoreUnavailable
from .upstream import (
    AgentNotFound,
    UpstreamAuthError,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

#: Seconds a browser is told to wait when OneInbox said 429 without a Retry-After.
DEFAULT_UPSTREAM_RETRY_AFTER = 5

#: The domain errors the routes let through to ``as_call_error``.
DOMAIN_ERRORS = (UpstreamError, StoreUnavailable, HandleRefused)


def as_call_error(exc: Exception) -> CallError:
    """The contract's answer for a ``CallError`` or one of ``DOMAIN_ERRORS``."""
    if isinstance(exc, CallError):
        return exc
    if isinstance(exc, UpstreamError):
        return _upstream(exc)
    if isinstance(exc, StoreUnavailable):
        return CallError(
            "limits_unavailable",
            "Calls are paused for a moment. Please try again shortly.",
            reason=str(exc),
        )
    if isinstance(exc, HandleRefused):
        return CallError(
            "not_found", "There is no such call, or it is over.", reason=f"handle {exc}"
        )
    raise TypeError(f"no HTTP answer is defined for {type(exc).__name__}") from exc


def _upstream(exc: UpstreamError) -> CallError:
    reason = str(exc)  # redacted by the client where it was made
    if isinstance(exc, UpstreamAuthError):
        return CallError(
            "upstream_auth", "The voice service refused our credentials.", reason=reason
        )
    if isinstance(exc, AgentNotFound):
        return CallError(
            "upstream_agent_not_found", "The voice agent is not available.", reason=reason
        )
    if isinstance(exc, UpstreamBusy):
        retry = exc.retry_after if exc.retry_after is not None else DEFAULT_UPSTREAM_RETRY_AFTER
        return CallError(
            "upstream_busy",
            "The voice service is busy. Please try again shortly.",
            retry_after=retry,
            reason=reason,
        )
    if isinstance(exc, UpstreamTimeout):
        return CallError(
            "upstream_timeout", "The voice service took too long to answer.", reason=reason
        )
    if isinstance(exc, UpstreamUnavailable):
        return CallError(
            "upstream_unavailable", "The voice service cannot be reached.", reason=reason
        )
    return CallError("upstream_error", "The voice service answered with an error.", reason=reason)
