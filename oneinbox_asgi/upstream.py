"""The OneInbox API client: create and stop web calls, with its own error types.

The HTTP layer (``calls.py``) maps these errors to the contract's statuses; nothing
here knows about the browser. The API key is sent in one header and never logged,
never put into an exception message.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import sniffio

MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_BASE_URL = "https://api.oneinbox.ai"


class UpstreamError(Exception):
    """OneInbox did not give us a usable answer."""


class UpstreamAuthError(UpstreamError):
    """OneInbox rejected our API key (401/403)."""


class AgentNotFound(UpstreamError):
    """OneInbox does not know the agent id (404)."""


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
    """OneInbox could not be reached (refused, DNS, reset before an answer)."""


class UpstreamTimeout(UpstreamError):
    """OneInbox did not answer within the configured time."""


@dataclass(frozen=True, slots=True)
class WebCall:
    """What a created web call gives the browser."""

    call_id: str
    server_url: str
    participant_token: str


NOT_SENT, TIMED_OUT, BROKEN = "not_sent", "timed_out", "broken"


def classify(exc: httpx.TransportError) -> str:
    """How a transport failure happened: before the request left, by a timeout, or mid-way.

    Only NOT_SENT may be retried: anything else may have created a billed call.
    httpx-aiohttp maps every aiohttp connection error (a reset mid-answer too) to
    ``httpx.ConnectTimeout``, so for that transport the aiohttp cause decides.
    """
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        import aiohttp

        if isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return NOT_SENT
        if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
            return TIMED_OUT
        return BROKEN
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return NOT_SENT
    if isinstance(exc, httpx.TimeoutException):
        return TIMED_OUT
    return BROKEN


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
    """A short, printable reason from an error body: ``detail``, ``message`` or ``error``."""
    try:
        payload = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(payload, dict):
        return ""
    for key in ("detail", "message", "error"):
        value = payload.get(key)
        if isinstance(value, str):
            return value[:200]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return str(value[0].get("msg", ""))[:200]
    return ""


def default_http_client() -> httpx.AsyncClient:
    """A pooled client; on asyncio with the ``fast`` extra, httpx over aiohttp's transport.

    httpx's own transport (httpcore) degrades badly under concurrency; aiohttp keeps
    the httpx API. Under trio, or without the extra, httpx's own transport is used.
    """
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    transport: httpx.AsyncBaseTransport | None = None
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = ""
    if library == "asyncio":
        try:
            from httpx_aiohttp import AiohttpTransport
        except ImportError:
            pass
        else:
            transport = AiohttpTransport(limits=limits)
    return httpx.AsyncClient(transport=transport, limits=limits, follow_redirects=False)


class OneInboxClient:
    """Talks to ``{base_url}/v1/calls/...`` with the secret key."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._auth_headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "oneinbox-asgi",
        }
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client = http_client
        self._owns_client = http_client is None

    def __repr__(self) -> str:  # never the key
        return f"OneInboxClient(base_url={self.base_url!r}, timeout={self.timeout!r})"

    @property
    def client(self) -> httpx.AsyncClient:
        # Created lazily: aiohttp's session must be made inside the running event loop.
        if self._client is None:
            self._client = default_http_client()
        return self._client

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

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
        status, headers, body = await self._request("POST", "/v1/calls/web", payload)
        if not 200 <= status < 300:
            raise self._error_for(status, headers, body)
        try:
            answer = json.loads(body)
        except ValueError:
            raise UpstreamBadResponse("OneInbox answered with something that is not JSON") from None
        if not isinstance(answer, dict):
            raise UpstreamBadResponse("OneInbox answered with JSON that is not an object")
        call_id = answer.get("id") or answer.get("call_id")
        server_url = answer.get("server_url")
        token = answer.get("participant_token")
        for name, value in (("id", call_id), ("server_url", server_url), ("token", token)):
            if not isinstance(value, str) or not value:
                raise UpstreamBadResponse(f"OneInbox's answer has no usable {name}")
        assert isinstance(call_id, str) and isinstance(server_url, str) and isinstance(token, str)
        return WebCall(call_id=call_id, server_url=server_url, participant_token=token)

    async def stop_call(self, call_id: str) -> None:
        """Hang up. A call that already ended, or that OneInbox no longer knows, is fine."""
        path = f"/v1/calls/{quote(call_id, safe='')}/stop"
        status, headers, body = await self._request("POST", path, None)
        if 200 <= status < 300 or status == 404:
            return
        raise self._error_for(status, headers, body)

    def _error_for(self, status: int, headers: httpx.Headers, body: bytes) -> UpstreamError:
        detail = _detail_of(body)
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            return UpstreamAuthError(f"OneInbox rejected the API key ({status}){suffix}")
        if status == 404:
            return AgentNotFound(f"OneInbox does not know this agent{suffix}")
        if status == 429:
            retry_after = parse_retry_after(headers.get("retry-after"))
            return UpstreamBusy(f"OneInbox is rate limiting us{suffix}", retry_after)
        return UpstreamBadResponse(f"OneInbox answered {status}{suffix}", status)

    async def _request(
        self, method: str, path: str, payload: dict[str, Any] | None
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request with a deadline over everything, retried once if it surely never left."""
        deadline = anyio.current_time() + self.timeout
        attempts = 2
        for attempt in range(attempts):
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            try:
                with anyio.fail_after(remaining):
                    return await self._send_once(method, path, payload, remaining)
            except TimeoutError:
                break
            except httpx.TransportError as exc:
                kind = classify(exc)
                if kind == TIMED_OUT:
                    break
                if kind == BROKEN:
                    # The request may have been received: never retried (a second billed call).
                    raise UpstreamBadResponse(
                        f"OneInbox's connection broke before a full answer ({type(exc).__name__})"
                    ) from None
                if attempt + 1 < attempts:
                    continue
                raise UpstreamUnavailable(
                    f"OneInbox could not be reached ({type(exc).__name__})"
                ) from None
        raise UpstreamTimeout(f"OneInbox did not answer within {self.timeout:g} s")

    async def _send_once(
        self, method: str, path: str, payload: dict[str, Any] | None, seconds: float
    ) -> tuple[int, httpx.Headers, bytes]:
        content = None if payload is None else json.dumps(payload).encode()
        headers = dict(self._auth_headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        async with self.client.stream(
            method,
            self.base_url + path,
            content=content,
            headers=headers,
            timeout=httpx.Timeout(seconds),
        ) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise UpstreamBadResponse(
                        f"OneInbox's answer is larger than {MAX_RESPONSE_BYTES} bytes",
                        response.status_code,
                    )
            return response.status_code, response.headers, bytes(body)
