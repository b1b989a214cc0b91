"""The OneInbox API client: create, stop and look up calls, with its own error types.

It speaks to OneInbox through a ``Transport`` (transport/), whose three failures it
maps here, once, to ``UpstreamError`` subclasses; the routes map those to the HTTP
contract (contract.py). The API key is sent in one header only; every text that came
from OneInbox is redacted before it becomes an exception message (OneInbox may echo
back a key or a token).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .jsoncodec import dumps, loads
from .redaction import Redactor
from .telemetry import OFF, Telemetry
from .transport import Broken, NotSent, Response, TimedOut, Transport, open_transport

DEFAULT_BASE_URL = "https://api.oneinbox.ai"
#: Characters of OneInbox's error text kept in a reason (after redaction).
MAX_DETAIL_CHARS = 200
#: Attempts for a request that surely never left (connection refused, DNS, connect).
ATTEMPTS = 2


class UpstreamError(Exception):
    """OneInbox did not give us a usable answer. The message is safe to log."""


class UpstreamAuthError(UpstreamError):
    """OneInbox rejected our API key (401/403)."""


class AgentNotFound(UpstreamError):
    """OneInbox does not know the agent id (404 on create)."""


class UpstreamBusy(UpstreamError):
    """OneInbox answered 429; ``retry_after`` is in seconds when it said."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamBadResponse(UpstreamError):
    """Any other error status, or an answer we could not use."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamUnavailable(UpstreamError):
    """OneInbox could not be reached (refused, DNS, connect failure); nothing was sent."""


class UpstreamTimeout(UpstreamError):
    """OneInbox did not answer within the configured time."""


@dataclass(frozen=True, slots=True)
class WebCall:
    """What a created web call gives the browser."""

    call_id: str
    server_url: str
    participant_token: str


def call_path(call_id: str, action: str = "") -> str:
    """``/v1/calls/{id}[/action]`` with the id as one percent-encoded path segment."""
    if not call_id or call_id in (".", ".."):
        raise ValueError(f"{call_id!r} cannot be a call id")  # it would move up the path
    path = "/v1/calls/" + quote(call_id, safe="")
    return f"{path}/{action}" if action else path


def parse_retry_after(value: str | None, *, now: float | None = None) -> int | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value), 24 * 3600)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0, min(math.ceil(when.timestamp() - current), 24 * 3600))


def _detail_of(body: bytes) -> str:
    """OneInbox's reason from an error body: ``detail`` (a string or a list), ``message``,
    ``error``; unredacted and uncut."""
    try:
        payload = loads(body)
    except ValueError:
        return ""
    if not isinstance(payload, dict):
        return ""
    for key in ("detail", "message", "error"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return str(value[0].get("msg", ""))
    return ""


class OneInboxClient:
    """Talks to ``{base_url}/v1/calls/...`` with the secret key, through one transport.

    ``transport``: one to use (and never close), such as ``HttpxTransport`` over a
    client the host injected; else our own, opened on first use in the running loop
    (aiohttp's session must be) or by ``open()``, closed by ``aclose()``.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        transport: Transport | None = None,
        telemetry: Telemetry = OFF,
    ) -> None:
        self._auth_headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "oneinbox-asgi",
        }
        self._json_headers = {**self._auth_headers, "Content-Type": "application/json"}
        self._redact = Redactor(api_key)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._telemetry = telemetry
        self._injected = None if transport is None else telemetry.traced_transport(transport)
        self._own: Transport | None = None

    def __repr__(self) -> str:  # never the key
        return f"OneInboxClient(base_url={self.base_url!r}, timeout={self.timeout!r})"

    @property
    def is_open(self) -> bool:
        """Whether our own pooled transport is open (an injected one is not ours)."""
        return self._own is not None

    def open(self) -> Transport:
        """The transport requests go through; ours is opened here, once."""
        if self._injected is not None:
            return self._injected
        if self._own is None:
            self._own = self._telemetry.traced_transport(open_transport())
        return self._own

    async def aclose(self) -> None:
        """Close our own transport (never an injected one); a later request reopens."""
        own, self._own = self._own, None
        if own is not None:
            await own.aclose()

    async def create_web_call(
        self,
        agent_id: str,
        *,
        variables: Mapping[str, Any],
        metadata: Mapping[str, Any],
    ) -> WebCall:
        payload: dict[str, Any] = {"agent_id": agent_id}
        if variables:
            payload["variables"] = dict(variables)
        if metadata:
            payload["metadata"] = dict(metadata)
        response = await self._request("POST", "/v1/calls/web", payload)
        if not 200 <= response.status < 300:
            raise self._error_for(response, not_found="agent")
        answer = self._json_object(response)
        call_id = answer.get("id") or answer.get("call_id")
        server_url = answer.get("server_url")
        token = answer.get("participant_token")
        for name, value in (("id", call_id), ("server_url", server_url), ("token", token)):
            if not isinstance(value, str) or not value:
                raise UpstreamBadResponse(f"OneInbox's answer has no usable {name}")
        assert isinstance(call_id, str) and isinstance(server_url, str) and isinstance(token, str)
        try:
            call_path(call_id)
        except ValueError:
            raise UpstreamBadResponse("OneInbox's answer has no usable id") from None
        return WebCall(call_id=call_id, server_url=server_url, participant_token=token)

    async def stop_call(self, call_id: str) -> None:
        """Hang up. A call that already ended, or that OneInbox no longer knows, is fine."""
        response = await self._request("POST", call_path(call_id, "stop"), None)
        if 200 <= response.status < 300 or response.status == 404:
            return
        raise self._error_for(response, not_found="call")

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        """OneInbox's record of the call (ONEINBOX_API.md), or None if it knows no such call."""
        response = await self._request("GET", call_path(call_id), None)
        if response.status == 404:
            return None
        if not 200 <= response.status < 300:
            raise self._error_for(response, not_found="call")
        return self._json_object(response)

    def _json_object(self, response: Response) -> dict[str, Any]:
        try:
            answer = loads(response.body)
        except ValueError:
            raise UpstreamBadResponse("OneInbox answered with something that is not JSON") from None
        if not isinstance(answer, dict):
            raise UpstreamBadResponse("OneInbox answered with JSON that is not an object")
        return answer

    def _error_for(self, response: Response, *, not_found: str) -> UpstreamError:
        status = response.status
        detail = self._redact(_detail_of(response.body), MAX_DETAIL_CHARS)
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            return UpstreamAuthError(f"OneInbox rejected the API key ({status}){suffix}")
        if status == 404 and not_found == "agent":
            return AgentNotFound(f"OneInbox does not know this agent{suffix}")
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return UpstreamBusy(f"OneInbox is rate limiting us{suffix}", retry_after)
        return UpstreamBadResponse(f"OneInbox answered {status}{suffix}", status)

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> Response:
        """One request with a deadline over the whole exchange, retried once (within what
        is left of the deadline) only if it surely never left."""
        transport = self.open()
        deadline = time.monotonic() + self.timeout
        if payload is None:
            body, headers = None, self._auth_headers
        else:
            # Only finite numbers reach here (payload.py refuses the rest): orjson would
            # write NaN as null.
            body, headers = dumps(payload), self._json_headers
        url = self.base_url + path
        for attempt in range(1, ATTEMPTS + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return await transport.send(
                    method, url, headers=headers, body=body, seconds=remaining
                )
            except TimedOut:
                break
            except NotSent as exc:
                if attempt == ATTEMPTS:
                    raise UpstreamUnavailable(f"OneInbox could not be reached: {exc}") from None
            except Broken as exc:
                # The request may have been received: never retried (a second billed call).
                raise UpstreamBadResponse(f"OneInbox's exchange broke: {exc}") from None
        raise UpstreamTimeout(f"OneInbox did not answer within {self.timeout:g} s")
