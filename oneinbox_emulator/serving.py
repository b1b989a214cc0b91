"""Running ASGI apps on loopback with uvicorn: in the foreground (CLI) or a thread (tests).

Sockets are bound before uvicorn starts, so the address (port 0 picks a free one) is known
in time to tell the emulator its own URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp

T = TypeVar("T")


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening now means a client that comes early (the URL is printed before uvicorn has
    # finished its startup) waits in the backlog instead of being refused.
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class _SecondaryServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the primary one in the same loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(slots=True)
class Served:
    app: ASGIApp
    sock: socket.socket
    lifespan: str = "auto"

    @property
    def url(self) -> str:
        return url_of(self.sock)

    def config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan=self.lifespan,  # type: ignore[arg-type]
            ws_ping_interval=None,  # livekit-client pings over its own protocol
        )


async def serve_together(primary: Served, *others: Served) -> None:
    """Serve ``primary`` (which owns Ctrl-C) and ``others`` until the primary stops."""
    main = uvicorn.Server(primary.config())
    extra = [_SecondaryServer(o.config()) for o in others]
    tasks = [
        asyncio.ensure_future(s.serve(sockets=[o.sock])) for s, o in zip(extra, others, strict=True)
    ]
    try:
        await main.serve(sockets=[primary.sock])
    finally:
        for server in extra:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


class BackgroundServers:
    """Apps served by uvicorn in a daemon thread with its own event loop (for tests).

    with BackgroundServers([Served(app, bind())]) as servers:
        ... servers.urls[0] ...
    """

    def __init__(self, served: Sequence[Served], *, start_timeout: float = 15.0) -> None:
        self.served = list(served)
        self.start_timeout = start_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self._servers = [_SecondaryServer(s.config()) for s in self.served]
        self._thread = threading.Thread(target=self._run, name="uvicorn-background", daemon=True)
        self._error: BaseException | None = None

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.served]

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._serve_all())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve_all(self) -> None:
        pairs = zip(self._servers, self.served, strict=True)
        await asyncio.gather(*(server.serve(sockets=[s.sock]) for server, s in pairs))

    def start(self) -> BackgroundServers:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(self.start_timeout / 0.02)):
            if all(s.started for s in self._servers) or not self._thread.is_alive():
                break
            deadline.wait(0.02)
        if not all(s.started for s in self._servers):
            self.stop()
            raise RuntimeError(f"servers did not start in {self.start_timeout}s: {self._error!r}")
        return self

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the servers' loop from another thread and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        for s in self.served:
            s.sock.close()

    def __enter__(self) -> BackgroundServers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
