"""Litestar: the broker as a plugin that mounts its routes under the prefix.

    app = Litestar(
        route_handlers=[...],
        middleware=[session_config.middleware],
        plugins=[OneInboxPlugin(authorize=authorize, variables=variables)],
    )

Litestar runs app-level middleware only for requests that matched a route, so
``OneInboxMiddleware`` in ``middleware=[...]`` would never see ``/oneinbox/start-call``.
The plugin registers the broker's routes as Litestar ASGI route handlers instead, so
Litestar's own middleware (its session middleware among them) runs before the broker,
as for any route: ``scope["session"]`` is the host's session and no reader is needed.

* ``{prefix}/start-call`` and ``{prefix}/end-call`` are plain ASGI routes: they get the
  host's session (and its authentication middleware, if any).
* Everything else below the prefix (the widget's files) is one ASGI mount that opts out
  of the session middleware (``skip_session``) and of authentication: Litestar's
  session middleware re-sends the session cookie on every response, and a
  ``Set-Cookie`` must never ride on a publicly cacheable file. Inside a mount Litestar
  rewrites ``scope["path"]`` to the rest below the mount, always ending in ``/``
  (``/oneinbox/widget.js`` arrives as ``/widget.js/``), with ``root_path`` already
  taken off; the mount hands that rest to the broker.

Both opt out of Litestar's CSRF token check (``exclude_from_csrf``): the widget does not
carry Litestar's token, and the broker checks ``Sec-Fetch-Site``/``Origin`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.exceptions import NotFoundException
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.plugins import InitPluginProtocol
from starlette.types import Message, Receive, Scope, Send  # resolved at runtime by Litestar

from ..errors import ConfigurationError, not_found
from ..middleware import OneInboxMiddleware
from ..responses import send_error

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.config.app import AppConfig
    from litestar.routes import BaseRoute

__all__ = ["CALL_ROUTES", "OneInboxPlugin"]

CALL_ROUTES = OneInboxMiddleware.call_routes
"""The broker's routes that need the caller's session; the rest are the widget's files."""

_ASSET_OPT = {"skip_session": True, "exclude_from_auth": True, "exclude_from_csrf": True}
_CALL_OPT = {"exclude_from_csrf": True}


async def _not_ours(scope: Scope, receive: Receive, send: Send) -> None:
    """The broker's inner app; the plugin only ever hands the broker its own paths."""
    if scope["type"] == "http":
        await send_error(send, not_found())


def _copying(send: Send) -> Send:
    """Hand on a copy of each message: Litestar's middleware edits them in place.

    (Its compression middleware rewrites ``message["headers"]``; the widget's responses
    are precomputed and shared between requests.)
    """

    async def send_copy(message: Message) -> None:
        copy = dict(message)
        if "headers" in copy:
            copy["headers"] = list(copy["headers"])
        await send(copy)

    return send_copy


class OneInboxPlugin(InitPluginProtocol):
    """Mounts ``OneInboxMiddleware``'s routes on a Litestar app.

    Takes the same keyword options as :class:`~oneinbox_asgi.OneInboxMiddleware`
    (``authorize=`` is required). The broker's upstream client and limit store are
    closed on the app's shutdown.
    """

    __slots__ = ("_recompressed", "broker")

    def __init__(self, **options: Any) -> None:
        self.broker = OneInboxMiddleware(_not_ours, **options)
        self._recompressed = False

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        # Litestar's compression middleware compresses every response, even one that is
        # already gzipped: with it on, the widget's files are answered unencoded and
        # Litestar compresses them once.
        self._recompressed = app_config.compression_config is not None
        app_config.route_handlers.extend(self.route_handlers())
        app_config.on_startup.append(self.check_routes)
        app_config.on_shutdown.append(self.broker.aclose)
        return app_config

    def route_handlers(self) -> list[ASGIRouteHandler]:
        """One plain ASGI route per call route, and one mount for the widget's files."""
        broker = self.broker
        handlers = [self._call_route(name) for name in CALL_ROUTES]

        async def oneinbox_files(scope: Scope, receive: Receive, send: Send) -> None:
            rest: str = scope["path"]
            if not rest.startswith("/"):
                # Litestar matched a host path that only begins with the prefix's text,
                # such as /oneinboxer/{id}; ``check_routes`` refuses such apps at startup.
                raise NotFoundException()
            if self._recompressed:
                headers = [h for h in scope["headers"] if h[0] != b"accept-encoding"]
                scope = {**scope, "headers": headers}
            await broker.handle(scope, receive, _copying(send), rest[1:].removesuffix("/"))

        handlers.append(
            asgi(
                path=broker.prefix,
                is_mount=True,
                copy_scope=True,
                name="oneinbox-files",
                opt=_ASSET_OPT,
            )(oneinbox_files)
        )
        return handlers

    def _call_route(self, name: str) -> ASGIRouteHandler:
        broker = self.broker

        async def call_route(scope: Scope, receive: Receive, send: Send) -> None:
            await broker.handle(scope, receive, send, name)

        return asgi(
            path=f"{broker.prefix}/{name}",
            copy_scope=True,
            name=f"oneinbox-{name}",
            opt=_CALL_OPT,
        )(call_route)

    def check_routes(self, app: Litestar) -> None:
        """Refuse host routes that Litestar would send to the mount (run at startup).

        Litestar matches mounts by the prefix's text, so a route with path parameters
        such as ``/oneinboxer/{id}`` would reach the broker instead of the host app
        (plain paths such as ``/oneinboxer`` are matched first and are safe).
        """
        prefix = self.broker.prefix
        for route in app.routes:
            if _shadowed_by_mount(route, prefix):
                raise ConfigurationError(
                    f"Litestar would send requests for the route {route.path!r} to the "
                    f"OneInbox mount at {prefix!r}: pass another prefix= to "
                    "OneInboxPlugin, or move the route"
                )


def _shadowed_by_mount(route: BaseRoute, prefix: str) -> bool:
    path = route.path
    if not path.startswith(prefix) or path == prefix or path[len(prefix)] == "/":
        return False
    is_mount = getattr(getattr(route, "route_handler", None), "is_mount", False)
    return bool(route.path_parameters) or bool(is_mount)
