"""The transport over an ``httpx.AsyncClient``: ours under trio, or one the host injected."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import httpx

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

#: What httpx raises when the request surely never left.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError, httpx.UnsupportedProtocol)


class HttpxTransport:
    """``Transport`` over an httpx client; closes it only if it made it."""

    def __init__(self, client: httpx.AsyncClient, *, owned: bool = False) -> None:
        self.client = client
        self._owned = owned

    @classmethod
    def pooled(cls) -> HttpxTransport:
        """Our own pooled client. httpx honours the environment's proxies itself."""
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=64,
            keepalive_expiry=KEEPALIVE_SECONDS,
        )
        return cls(httpx.AsyncClient(limits=limits, follow_redirects=False), owned=True)

    def __repr__(self) -> str:
        return f"HttpxTransport(owned={self._owned})"

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        seconds: float,
    ) -> Response:
        try:
            with anyio.fail_after(seconds):
                async with self.client.stream(
                    method,
                    url,
                    content=body,
                    headers=headers,
                    timeout=httpx.Timeout(seconds),
                    follow_redirects=False,
                ) as response:
                    content = bytearray()
                    async for chunk in response.aiter_bytes():
                        content += chunk
                        if len(content) > MAX_RESPONSE_BYTES:
                            raise too_large()
                    # multi_items: the last value wins, as with aiohttp (items() joins them).
                    received = response.headers.multi_items()
                    answer_headers = {key.lower(): value for key, value in received}
                    return Response(response.status_code, answer_headers, bytes(content))
        except TimeoutError:
            raise TimedOut(f"no whole answer within {seconds:.3g} s") from None
        except _NOT_SENT as exc:
            raise NotSent(f"could not connect ({type(exc).__name__})") from None
        except httpx.TimeoutException:
            raise TimedOut(f"no whole answer within {seconds:.3g} s") from None
        except httpx.RequestError as exc:  # TransportError, and DecodingError (a bad gzip body)
            raise Broken(f"the connection broke ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()
