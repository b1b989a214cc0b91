"""The default transport on asyncio: one pooled aiohttp session, spoken to directly.

No httpx models on this path: building httpx's request and response objects, its
cookie jar and redirect machinery cost about as much again as aiohttp itself per
call (bench/). One deadline, asyncio's own, bounds each exchange; aiohttp keeps no
timers of its own (its connect and read timeouts could only ever fire with the
deadline). No cookie jar: an API client has no use for one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp
import httpx
import yarl

from .base import (
    KEEPALIVE_SECONDS,
    MAX_CONNECTIONS,
    MAX_RESPONSE_BYTES,
    Broken,
    NotSent,
    Response,
    TimedOut,
    too_large,
)
from .proxies import proxy_for

#: Parsed URLs kept: the API's few fixed paths (a per-call stop URL is parsed each time).
_KEPT_URLS = 16
#: What aiohttp raises when the request surely never left: no connection was made
#: (refused, DNS, TLS handshake, the proxy refused to connect or to tunnel).
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ClientHttpProxyError)


class AiohttpTransport:
    """``Transport`` over aiohttp. Made inside the running event loop (aiohttp's rule)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        connector = aiohttp.TCPConnector(
            limit=MAX_CONNECTIONS,
            keepalive_timeout=KEEPALIVE_SECONDS,
            # httpx's TLS defaults (certifi, SSL_CERT_FILE / SSL_CERT_DIR), as before.
            ssl=ssl_context if ssl_context is not None else httpx.create_ssl_context(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(),
        )
        self._urls: dict[str, tuple[yarl.URL, str | None]] = {}

    def __repr__(self) -> str:
        return "AiohttpTransport()"

    def _target(self, url: str) -> tuple[yarl.URL, str | None]:
        """The parsed URL and the environment's proxy for it."""
        known = self._urls.get(url)
        if known is not None:
            return known
        # encoded=True: the API client has percent-encoded every path segment already.
        target = (yarl.URL(url, encoded=True), proxy_for(url))
        if len(self._urls) < _KEPT_URLS:
            self._urls[url] = target
        return target

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        seconds: float,
    ) -> Response:
        parsed, proxy = self._target(url)
        try:
            async with (
                asyncio.timeout(seconds),
                self._session.request(
                    method,
                    parsed,
                    data=body,
                    headers=headers,
                    proxy=proxy,
                    allow_redirects=False,
                ) as response,
            ):
                length = response.content_length
                if length is not None and length > MAX_RESPONSE_BYTES:
                    raise too_large()
                if length is not None and "Content-Encoding" not in response.headers:
                    content = await response.read()  # bounded by its declared length
                else:  # a compressed length does not bound the inflated body: count it
                    gathered = bytearray()
                    async for chunk in response.content.iter_chunked(16 * 1024):
                        gathered += chunk
                        if len(gathered) > MAX_RESPONSE_BYTES:
                            raise too_large()
                    content = bytes(gathered)
                answer_headers = {key.lower(): value for key, value in response.headers.items()}
                return Response(response.status, answer_headers, content)
        except TimeoutError:
            raise TimedOut(f"no whole answer within {seconds:.3g} s") from None
        except _NOT_SENT as exc:
            raise NotSent(f"could not connect ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise Broken(f"the connection broke ({type(exc).__name__})") from None
        except OSError as exc:  # a socket error aiohttp did not wrap
            raise Broken(f"the connection broke ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        await self._session.close()
