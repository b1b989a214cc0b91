"""``OneInboxMiddleware``: one pure-ASGI dispatcher in front of the host app.

A request whose path is under ``prefix`` goes to the broker's own routes; every
other request, every websocket and the lifespan go to the host app untouched. The
pass-through path is one string comparison: nothing is built for a request that
is not ours.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .calls import CallGuards, CallPolicy, EndCall, EventHook, Hook, StartCall
from .errors import ConfigurationError, not_found, send_error
from .guards.client import ClientAddress
from .guards.cross_site import CrossSiteGuard
from .guards.handles import HandleSigner
from .guards.limits import (
    DEFAULT_MAX_CALL_SECONDS,
    DEFAULT_MAX_CONCURRENT_CALLS,
    DEFAULT_RATE_LIMIT,
    Limits,
    RateLimit,
    check_max_call_seconds,
    check_max_concurrent_calls,
)
from .guards.store import LimitStore, open_store
from .sessions import SessionReader
from .upstream import DEFAULT_BASE_URL, OneInboxClient

if TYPE_CHECKING:
    from .widget import WidgetAssets

logger = logging.getLogger("oneinbox_asgi")

_REQUIRED: Any = object()
_LIFESPAN_ENDINGS = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)

# Any ASGI callable: frameworks type their scopes differently (Quart's are TypedDicts).
AnyASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _option(value: str | None, env: str, default: str | None = None) -> str | None:
    if value is not None:
        return value
    return os.environ.get(env) or default


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix.startswith("/") or "//" in prefix:
        raise ConfigurationError(f"prefix must be a path such as '/oneinbox', not {prefix!r}")
    prefix = prefix.rstrip("/")
    if not prefix:
        raise ConfigurationError("prefix must not be '/': the broker needs a path of its own")
    return prefix


class OneInboxMiddleware:
    """Mounts ``POST {prefix}/start-call``, ``POST {prefix}/end-call`` and
    ``GET {prefix}/widget.js`` on any ASGI app.

    Options are checked once, here; see the README for each one and its default.
    """

    #: The routes below ``prefix`` that change state (POST); the rest are widget files.
    call_routes: ClassVar[tuple[str, ...]] = ("start-call", "end-call")

    def __init__(
        self,
        app: AnyASGIApp,
        *,
        authorize: Hook = _REQUIRED,
        api_key: str | None = None,
        agent_id: str | None = None,
        agents: Mapping[str, str] | None = None,
        base_url: str | None = None,
        variables: Hook | None = None,
        client_variables: Collection[str] = (),
        metadata: Hook | None = None,
        prefix: str = "/oneinbox",
        session: SessionReader | None = None,
        timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
        trusted_origins: Collection[str] = (),
        trusted_proxies: Collection[str] = (),
        rate_limit: str | None = DEFAULT_RATE_LIMIT,
        max_concurrent_calls: int | None = DEFAULT_MAX_CONCURRENT_CALLS,
        max_call_seconds: float = DEFAULT_MAX_CALL_SECONDS,
        store: LimitStore | str | None = None,
        on_call_started: EventHook | None = None,
        on_call_ended: EventHook | None = None,
    ) -> None:
        self.app: ASGIApp = app
        key = _option(api_key, "ONEINBOX_API_KEY")
        if not key:
            raise ConfigurationError(
                "OneInbox API key missing: set ONEINBOX_API_KEY or pass api_key="
            )
        if authorize is _REQUIRED or authorize is None:
            raise ConfigurationError(
                "authorize= is required: pass a hook that returns the caller's id "
                "(or oneinbox_asgi.allow_anonymous to let anyone call)"
            )
        if not callable(authorize):
            raise ConfigurationError("authorize must be a function of the CallRequest")
        for name, hook in (("variables", variables), ("metadata", metadata)):
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"{name} must be a function of the CallRequest")
        agents = dict(agents or {})
        for name, value in agents.items():
            if not isinstance(name, str) or not isinstance(value, str) or not name or not value:
                raise ConfigurationError(
                    "agents must map names to agent ids, both non-empty strings"
                )
        default_agent = _option(agent_id, "ONEINBOX_AGENT_ID")
        if not default_agent and not agents:
            raise ConfigurationError(
                "no agent configured: set ONEINBOX_AGENT_ID, or pass agent_id= or agents="
            )
        if isinstance(client_variables, str):
            raise ConfigurationError("client_variables must be a collection of names, not a str")
        if session is not None and not isinstance(session, SessionReader):
            raise ConfigurationError("session must be a session reader with an async read()")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, not {timeout!r}"
            )
        url = _option(base_url, "ONEINBOX_BASE_URL", DEFAULT_BASE_URL)
        assert url is not None
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, not {url!r}")
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError("http_client must be an httpx.AsyncClient")
        for name, event_hook in (
            ("on_call_started", on_call_started),
            ("on_call_ended", on_call_ended),
        ):
            if event_hook is not None and not callable(event_hook):
                raise ConfigurationError(f"{name} must be a function of the CallEvent")
        cross_site = CrossSiteGuard(trusted_origins)
        client_address = ClientAddress(trusted_proxies)
        rate = None if rate_limit is None else RateLimit.parse(rate_limit)
        cap = check_max_concurrent_calls(max_concurrent_calls)
        lease = check_max_call_seconds(max_call_seconds)

        self.prefix = _check_prefix(prefix)
        self._route_prefix = self.prefix + "/"
        self.upstream = OneInboxClient(
            api_key=key, base_url=url, timeout=float(timeout), http_client=http_client
        )
        policy = CallPolicy(
            authorize=authorize,
            agent_id=default_agent or None,
            agents=agents,
            variables=variables,
            client_variables=frozenset(client_variables),
            metadata=metadata,
            session=session,
        )
        self.store, self._owns_store = open_store(store)
        guards = CallGuards(
            cross_site=cross_site,
            client=client_address,
            limits=Limits(self.store, rate=rate, max_concurrent_calls=cap, max_call_seconds=lease),
            handles=HandleSigner(key, max_age=lease, clock=self.store.clock),
            on_call_started=on_call_started,
            on_call_ended=on_call_ended,
        )
        self._routes: dict[str, StartCall | EndCall] = {
            "start-call": StartCall(policy, guards, self.upstream),
            "end-call": EndCall(policy, guards, self.upstream),
        }
        self._assets: WidgetAssets | None = None

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
        endpoint = self._routes.get(route)
        if endpoint is not None:
            await endpoint(scope, receive, send)
            return
        if "/" not in route and route:  # a widget file (the responder answers 404/405 itself)
            await self.assets(scope, receive, send, route)
            return
        await send_error(send, not_found(), head_only=scope["method"] == "HEAD")

    @property
    def assets(self) -> WidgetAssets:
        if self._assets is None:
            from .widget import WidgetAssets

            self._assets = WidgetAssets()
        return self._assets

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        """Open the pooled upstream client at startup, so the first call does not pay for it
        (importing and setting up aiohttp took ~0.3 s of the first click's latency)."""
        self.upstream.client  # noqa: B018 - the property opens it

    async def aclose(self) -> None:
        """Close the pooled upstream client and the limit store (only those we created)."""
        try:
            await self.upstream.aclose()
        finally:
            if self._owns_store:
                await self.store.aclose()
