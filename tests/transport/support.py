"""What the transport tests share: the two transports by name, a scripted fake at the seam,
a forwarding HTTP proxy on loopback, and a check for pieces of a secret in a text."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import pytest

from oneinbox_asgi.transport import NotSent, Response, TimedOut, Transport, TransportError
from oneinbox_asgi.transport.aiohttp_transport import AiohttpTransport
from oneinbox_asgi.transport.httpx_transport import HttpxTransport

from ..reliability.faulty_upstream import GOOD_BODY, serving

#: Every spelling of the proxy variables urllib (and so httpx and proxies.py) reads.
PROXY_VARIABLES = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
)
TRANSPORTS = ("aiohttp", "httpx")


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable set, whatever the machine running the tests has."""
    for name in (*PROXY_VARIABLES, "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)


def make_transport(kind: str) -> Transport:
    """A new pooled transport of ``kind`` (reads the proxy environment now, as each does
    in production); made inside the running loop."""
    if kind == "aiohttp":
        return AiohttpTransport()
    if kind == "httpx":
        return HttpxTransport.pooled()
    raise AssertionError(kind)


def good_answer() -> Response:
    return Response(201, {"content-type": "application/json"}, GOOD_BODY)


# -- a fake at the seam ------------------------------------------------------------------


@dataclass(frozen=True)
class Sleep:
    """Take ``seconds`` and then do ``then``. A well-behaved transport (``honour``) gives
    up with ``TimedOut`` when its ``seconds`` run out first; one that does not honour it
    sleeps the whole time whatever it was given."""

    seconds: float
    then: Response | TransportError
    honour: bool = True


Step = Response | TransportError | Sleep


@dataclass(frozen=True)
class Sent:
    """One call the fake received."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    seconds: float
    at: float


@dataclass
class ScriptedTransport:
    """A ``Transport`` that plays ``script``, one step per call, and records each call."""

    script: list[Step]
    calls: list[Sent] = field(default_factory=list)
    closed: bool = False

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        seconds: float,
    ) -> Response:
        self.calls.append(Sent(method, url, dict(headers), body, seconds, time.monotonic()))
        if not self.script:
            raise AssertionError(f"call {len(self.calls)} was not scripted")
        step = self.script.pop(0)
        if isinstance(step, Sleep):
            if step.honour and step.seconds > seconds:
                await anyio.sleep(seconds)
                raise TimedOut(f"no whole answer within {seconds:.3g} s")
            await anyio.sleep(step.seconds)
            step = step.then
        if isinstance(step, TransportError):
            raise step
        return step

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FirstAttemptRefused:
    """Sends through a real transport, but its first attempt goes to ``refused_base``
    (a closed port) instead of the URL's own origin: a real refusal, then the real thing."""

    transport: Transport
    refused_base: str
    urls: list[str] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        seconds: float,
    ) -> Response:
        if not self.urls:
            parts = urlsplit(url)
            url = self.refused_base + parts.path
        self.urls.append(url)
        try:
            return await self.transport.send(
                method, url, headers=headers, body=body, seconds=seconds
            )
        except NotSent as exc:
            self.failures.append(exc)
            raise

    async def aclose(self) -> None:
        await self.transport.aclose()


# -- a forwarding proxy ------------------------------------------------------------------

_NOT_FORWARDED = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive"})


@dataclass
class ForwardingProxy:
    """A plain HTTP forward proxy: absolute-form requests (``POST http://host:port/path``)
    are sent on to their origin and the answer (framed by Content-Length) sent back.
    Keeps what it forwarded and the Proxy-Authorization it was given. No CONNECT."""

    forwarded: list[str] = field(default_factory=list)
    proxy_authorization: list[str | None] = field(default_factory=list)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ")
                fields = [line.split(":", 1) for line in lines if line]
                headers = [(name.strip(), value.strip()) for name, value in fields]
                length = sum(int(v) for n, v in headers if n.lower() == "content-length")
                body = await reader.readexactly(length)
                if method == "CONNECT" or not target.startswith("http://"):
                    writer.write(b"HTTP/1.1 405 X\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                self.forwarded.append(f"{method} {target}")
                auth = [v for n, v in headers if n.lower() == "proxy-authorization"]
                self.proxy_authorization.append(auth[0] if auth else None)
                answer = await asyncio.wait_for(self._forward(method, target, headers, body), 5)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> bytes:
        url = urlsplit(target)
        assert url.hostname == "127.0.0.1", "the test proxy forwards to loopback only"
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            path = url.path + (f"?{url.query}" if url.query else "")
            kept = "".join(
                f"{name}: {value}\r\n"
                for name, value in headers
                if name.lower() not in _NOT_FORWARDED
            )
            up_writer.write(f"{method} {path} HTTP/1.1\r\n{kept}connection: close\r\n\r\n".encode())
            up_writer.write(body)
            answer = await up_reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in answer.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            return answer + await up_reader.readexactly(length)
        finally:
            up_writer.close()


@contextmanager
def forwarding_proxy() -> Iterator[tuple[ForwardingProxy, str]]:
    """A ForwardingProxy on 127.0.0.1 in its own thread; yield it and its URL."""
    proxy = ForwardingProxy()
    with serving(proxy) as port:
        yield proxy, f"http://127.0.0.1:{port}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- secrets -----------------------------------------------------------------------------


def pieces(secret: str, text: str, size: int = 6) -> list[str]:
    """The pieces of ``secret`` (``size`` characters or more) that appear in ``text``."""
    return sorted(
        {secret[i : i + size] for i in range(len(secret) - size + 1)} & _windows(text, size)
    )


def _windows(text: str, size: int) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}
