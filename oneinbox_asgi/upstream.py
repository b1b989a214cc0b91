"""The OneInbox API client: create and stop web calls, with its own error types.

The HTTP layer (``calls.py``) maps these errors to the contract's statuses; nothing
here knows about the browser. The API key is sent in one header and never logged,
never put into an exception message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import anyio
import httpx
import sniffio

if TYPE_CHECKING:
    import aiohttp

MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_BASE_URL = "https://api.oneinbox.ai"
POOL_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64)


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
    ``OneInboxClient`` uses this only where it cannot talk to aiohttp directly (see
    ``_ThroughAiohttp``).
    """
    limits = POOL_LIMITS
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


Exchanged = tuple[int, Mapping[str, str], bytes]


class PooledClient(Protocol):
    """Sends one request and reads its whole answer (at most ``MAX_RESPONSE_BYTES``).

    ``exchange`` raises ``TimeoutError`` when it is not done within ``seconds``; other
    failures are httpx's exception types, whatever the library underneath, so that
    ``OneInboxClient._request`` maps them to ours in one place. ``now`` is the clock
    the deadline is measured on.
    """

    def now(self) -> float: ...

    async def exchange(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str],
        seconds: float,
    ) -> Exchanged: ...

    async def aclose(self) -> None: ...


class _ThroughHttpx:
    """Through an ``httpx.AsyncClient``: an injected one, or ours off asyncio."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    def now(self) -> float:
        return anyio.current_time()

    async def exchange(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str],
        seconds: float,
    ) -> Exchanged:
        with anyio.fail_after(seconds):
            async with self.client.stream(
                method, url, content=content, headers=headers, timeout=httpx.Timeout(seconds)
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise _too_large(response.status_code)
                return response.status_code, response.headers, bytes(body)

    async def aclose(self) -> None:
        await self.client.aclose()


class _ThroughAiohttp:
    """Our own pooled client on asyncio: an aiohttp session, spoken to directly.

    The same connector, TLS context and limits as httpx over httpx-aiohttp's transport,
    and its exceptions mapped by httpx-aiohttp's own table, so failures classify exactly
    as they do through that transport; minus httpx's request/response models, cookie
    jar and redirect machinery, which cost about as much again as aiohttp itself per
    call (measured in bench/). On asyncio for sure, so the one deadline is asyncio's
    own (anyio's costs more), and aiohttp keeps no timers of its own: its connect and
    read timeouts, set to the time left, could only ever fire with the deadline. No
    cookie jar: an API client has no use for one. The few fixed API URLs are parsed
    once.
    """

    def __init__(self) -> None:
        import aiohttp
        import yarl
        from httpx_aiohttp.transport import map_aiohttp_exceptions

        self._mapped = map_aiohttp_exceptions
        self._parse = yarl.URL
        self._urls: dict[str, yarl.URL] = {}
        self._loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(
            limit=POOL_LIMITS.max_connections or 0,
            keepalive_timeout=POOL_LIMITS.keepalive_expiry,
            ssl=httpx.create_ssl_context(),
        )
        self.session: aiohttp.ClientSession = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(),
        )

    def now(self) -> float:
        return self._loop.time()

    async def exchange(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str],
        seconds: float,
    ) -> Exchanged:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._parse(url)
            if len(self._urls) < 16:  # the fixed paths; a stop URL per call id is not kept
                self._urls[url] = parsed
        async with asyncio.timeout(seconds):
            try:
                async with self.session.request(
                    method, parsed, data=content, headers=headers, allow_redirects=False
                ) as response:
                    length = response.content_length
                    if length is not None and length <= MAX_RESPONSE_BYTES:
                        body = await response.read()  # bounded by its declared length
                    else:
                        gathered = bytearray()
                        async for chunk in response.content.iter_chunked(16 * 1024):
                            gathered += chunk
                            if len(gathered) > MAX_RESPONSE_BYTES:
                                raise _too_large(response.status)
                        body = bytes(gathered)
                    return response.status, response.headers, body
            except Exception:
                with self._mapped():  # an aiohttp error becomes httpx's type; others pass
                    raise

    async def aclose(self) -> None:
        await self.session.close()


def _too_large(status: int) -> UpstreamBadResponse:
    return UpstreamBadResponse(
        f"OneInbox's answer is larger than {MAX_RESPONSE_BYTES} bytes", status
    )


def _aiohttp_usable(base_url: str) -> bool:
    """True on asyncio with the ``fast`` extra, unless a proxy is set in the environment.

    httpx honours ``HTTP(S)_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``; where one may apply
    to OneInbox, the httpx client (which routes through it) is used instead.
    """
    try:
        if sniffio.current_async_library() != "asyncio":
            return False
        import aiohttp  # noqa: F401
        import httpx_aiohttp  # noqa: F401
    except (sniffio.AsyncLibraryNotFoundError, ImportError):
        return False
    proxies = urllib.request.getproxies_environment()
    return not (proxies.get(urlsplit(base_url).scheme) or proxies.get("all"))


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
        self._json_headers = {**self._auth_headers, "Content-Type": "application/json"}
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._owns_client = http_client is None
        #: The pooled client requests go through: the injected one, or ours, made lazily
        #: (aiohttp's session must be made inside the running event loop).
        self._client: PooledClient | None = (
            None if http_client is None else _ThroughHttpx(http_client)
        )

    def __repr__(self) -> str:  # never the key
        return f"OneInboxClient(base_url={self.base_url!r}, timeout={self.timeout!r})"

    @property
    def client(self) -> PooledClient:
        """The pooled client requests go through; ours is opened here, on first use."""
        if self._client is None:
            if _aiohttp_usable(self.base_url):
                self._client = _ThroughAiohttp()
            else:
                self._client = _ThroughHttpx(default_http_client())
        return self._client

    async def aclose(self) -> None:
        """Close our own pooled client (never an injected one); a later request reopens."""
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

    def _error_for(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        # Error texts are logged: one that echoes our key back must not carry it there.
        detail = _detail_of(body).replace(self._api_key, "[api key]")
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            return UpstreamAuthError(f"OneInbox rejected the API key ({status}){suffix}")
        if status == 404:
            return AgentNotFound(f"OneInbox does not know this agent{suffix}")
        if status == 429:
            retry_after = parse_retry_after(headers.get("retry-after"))
            return UpstreamBusy(f"OneInbox is rate limiting us{suffix}", retry_after)
        return UpstreamBadResponse(f"OneInbox answered {status}{suffix}", status)

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> Exchanged:
        """One request with a deadline over everything, retried once if it surely never left."""
        exchange = self.client
        deadline = exchange.now() + self.timeout
        if payload is None:
            content, headers = None, self._auth_headers
        else:
            content, headers = json.dumps(payload).encode(), self._json_headers
        attempts = 2
        for attempt in range(attempts):
            remaining = deadline - exchange.now()
            if remaining <= 0:
                break
            try:
                return await exchange.exchange(
                    method, self.base_url + path, content, headers, remaining
                )
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
