"""``OneInboxMiddleware``: one pure-ASGI dispatcher in front of the host app.

A request whose path is under ``prefix`` goes to the broker's own routes; every
other request, every websocket and the lifespan go to the host app untouched. The
pass-through path is one string comparison: nothing is built for a request that
is not ours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Unpack

import anyio
import sniffio
from anyio.abc import TaskGroup
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .asgi import drain_body
from .broker import Broker
from .config import Options, Settings
from .errors import ConfigurationError, not_found
from .guards.cross_site import cors_headers, preflight_headers
from .payload import MAX_BODY_BYTES
from .responses import send_error
from .routes.end_call import EndCall
from .routes.metrics import BrowserMetrics
from .routes.start_call import StartCall
from .routes.webhook import Webhook

if TYPE_CHECKING:
    from .stores.base import LimitStore
    from .upstream import OneInboxClient
    from .widget import WidgetAssets

logger = logging.getLogger("oneinbox_asgi")

_LIFESPAN_ENDINGS = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)

# Any ASGI callable: frameworks type their scopes differently (Quart's are TypedDicts).
AnyASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class OneInboxMiddleware:
    """Mounts ``POST {prefix}/start-call``, ``POST {prefix}/end-call`` and
    ``GET {prefix}/widget.js`` on any ASGI app.

    Options are keyword-only and checked once, here (``config.Settings``); see the
    README for each one and its default. A bad one raises ``ConfigurationError``,
    which is also logged: some servers build the middleware inside the lifespan and
    would otherwise show only "lifespan unsupported".
    """

    #: The routes below ``prefix`` that change state (POST); the rest are widget files.
    call_routes: ClassVar[tuple[str, ...]] = ("start-call", "end-call")

    def __init__(self, app: AnyASGIApp, **options: Unpack[Options]) -> None:
        self.app: ASGIApp = app
        try:
            settings = Settings.from_options(**options)
        except ConfigurationError as exc:
            logger.error("OneInboxMiddleware is not set up, so no page can be served: %s", exc)
            raise
        except TypeError as exc:  # an option that does not exist
            logger.error("OneInboxMiddleware is not set up: %s", exc)
            raise
        self.settings = settings
        self.prefix = settings.prefix
        self._route_prefix = self.prefix + "/"
        self.broker = Broker.build(settings)
        self._routes: dict[str, StartCall | EndCall | Webhook | BrowserMetrics] = {
            "start-call": StartCall(self.broker),
            "end-call": EndCall(self.broker),
        }
        if settings.webhooks:
            self._routes["webhook"] = Webhook(self.broker)
        if settings.browser_metrics:
            self._routes["metrics"] = BrowserMetrics(self.broker)
        #: The background work's task group while the lifespan runs, and its cancel scope.
        self._tasks: TaskGroup | None = None
        self._background: anyio.CancelScope | None = None
        #: The background work started at a first request, for hosts without a lifespan.
        self._detached: asyncio.Task[None] | None = None
        self._assets: WidgetAssets | None = None

    @property
    def upstream(self) -> OneInboxClient:
        """The OneInbox API client."""
        return self.broker.upstream

    @property
    def store(self) -> LimitStore:
        """Where the limits live."""
        return self.settings.store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type == "http":
            path: str = scope["path"]
            root_path: str = scope.get("root_path", "")
            if root_path and path.startswith(root_path):
                path = path[len(root_path) :]
            if path.startswith(self._route_prefix):
                await self.handle(scope, receive, send, path[len(self._route_prefix) :])
                return
        elif scope_type == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        """Answer one of the broker's own routes (``route`` is the path below the prefix)."""
        if self._background is None and self._tasks is None:
            self._start_without_lifespan()
        endpoint = self._routes.get(route)
        if endpoint is not None:
            if route in self.call_routes or route == "metrics":  # a browser's POSTs
                origin = self.broker.cross_site.trusted_origin(scope)
                if origin is not None:  # a sibling site that embeds the button
                    if scope["method"] == "OPTIONS":
                        await _preflight(send, origin)
                        return
                    send = _with_cors(send, origin)
            span = self.broker.telemetry.serving(route, scope)
            if span is None:
                await endpoint(scope, receive, send)
            else:
                with span:
                    await endpoint(scope, receive, send)
            return
        if "/" not in route and route:  # a widget file (the responder answers 404/405 itself)
            await self.assets(scope, receive, send, route)
            return
        await drain_body(scope, receive, MAX_BODY_BYTES)
        await send_error(send, not_found(), head_only=scope["method"] == "HEAD")

    @property
    def assets(self) -> WidgetAssets:
        if self._assets is None:
            from .widget import WidgetAssets

            self._assets = WidgetAssets()
        return self._assets

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the lifespan with a task group for the background work (the reaper of calls
        past ``max_call_seconds``, post-call records), started at startup and cancelled at
        shutdown."""
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                try:
                    await self._pass_lifespan(scope, receive, send)
                finally:
                    self._tasks = None
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the host's own failure, as it raised it
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _pass_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the lifespan to the host app, closing our own resources at shutdown.

        A host app that raises without ever reading a lifespan message does not speak
        the protocol (Django's handler does that); then we answer it ourselves, so the
        server still tells us when to close. A host app that read the startup message
        and then raised has really failed: that is re-raised, not hidden.
        """
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            received += 1
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._open()
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] in _LIFESPAN_ENDINGS:  # a failed startup ends it too
                await self.aclose()
            await send(message)

        try:
            await self.app(scope, counting_receive, closing_send)
        except Exception:
            if received:
                await self.aclose()
                raise
            logger.debug("the host app does not speak the lifespan protocol; answering it")
        else:
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _open(self) -> None:
        """At startup: open the pooled upstream transport, so the first call does not pay for
        it (importing and setting up aiohttp took ~0.3 s of the first click's latency), and
        start the background work."""
        self.broker.upstream.open()
        if self._tasks is not None and self._background is None:
            self._tasks.start_soon(self._run_background)

    async def _run_background(self) -> None:
        lifecycle = self.broker.lifecycle
        if lifecycle is None:
            return
        with anyio.CancelScope() as scope:
            self._background = scope
            try:
                await lifecycle.run()
            finally:
                self._background = None

    def _start_without_lifespan(self) -> None:
        """A host that never runs the lifespan (daphne; Litestar's plugin) still gets the
        reaper: started here, at the first request to the broker, on asyncio's loop."""
        if self.broker.lifecycle is None or self._detached is not None:
            return
        try:
            if sniffio.current_async_library() != "asyncio":
                return  # under trio without a lifespan: documented, nothing to hold it
        except sniffio.AsyncLibraryNotFoundError:
            return
        self._detached = asyncio.get_running_loop().create_task(self._run_background())

    async def aclose(self) -> None:
        """Stop the background work; close the pooled upstream transport and the limit store
        (only those we created)."""
        if self._background is not None:
            self._background.cancel()
        if self._detached is not None:
            detached, self._detached = self._detached, None
            detached.cancel()
        await self.broker.aclose()


async def _preflight(send: Send, origin: bytes) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": preflight_headers(origin)})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: bytes) -> Send:
    """Add the CORS headers for a trusted origin to the answer's start."""

    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *cors_headers(origin)]}
        await send(message)

    return send_with_cors
