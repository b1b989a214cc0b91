"""What both routes share: the checks in front, the session, and the ``authorize`` hook."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from starlette.requests import cookie_parser
from starlette.types import Receive, Scope

from ..asgi import drain_body, is_json, read_body
from ..broker import Broker
from ..context import CallRequest, Forbidden
from ..errors import CallError, method_not_allowed
from ..hooks import hook_failed, run_hook
from ..payload import MAX_BODY_BYTES, parse_body

logger = logging.getLogger("oneinbox_asgi")


class MissingSession(Mapping[str, Any]):
    """The empty session of a middleware with no session set up.

    Its first read logs why: that is usually middleware order, and otherwise shows
    only as a 401. Hooks that never read the session (``allow_anonymous``) log nothing.
    """

    def __init__(self) -> None:
        self._warned = False

    def _warn(self) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "no session: scope['session'] is not set (is the framework's session "
                "middleware outside OneInboxMiddleware?) and no session= reader is "
                "configured; hooks see an empty session"
            )

    def __getitem__(self, key: str) -> Any:
        self._warn()
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        self._warn()
        return iter(())

    def __len__(self) -> int:
        self._warn()
        return 0


class Route:
    """A POST route of the broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.settings = broker.settings
        self._missing_session = MissingSession()

    async def post_body(
        self, scope: Scope, receive: Receive, fields: Collection[str]
    ) -> dict[str, Any]:
        """The JSON body of a POST, after the checks that together stop a forged form post
        (method, cross-site, JSON only), bounded in size."""
        try:
            if scope["method"] != "POST":
                raise method_not_allowed(["POST"])
            self.broker.cross_site.check(scope)
            if not is_json(scope):
                raise CallError("unsupported_media_type", "Send the request as application/json.")
        except CallError:
            await drain_body(scope, receive, MAX_BODY_BYTES)
            raise
        return parse_body(await read_body(scope, receive, MAX_BODY_BYTES), fields)

    async def read_session(self, scope: Scope) -> Mapping[str, Any]:
        """The session without the framework's session middleware (``scope["session"]``):
        through the ``session=`` reader, else the empty ``MissingSession``."""
        reader = self.settings.session
        if reader is None:
            return self._missing_session
        # HTTP/2 may split cookies over several headers; join them as one cookie string.
        cookies = "; ".join(
            value.decode("latin-1") for key, value in scope["headers"] if key == b"cookie"
        )
        return await reader.read(cookie_parser(cookies))

    async def identify(
        self, scope: Scope, client_ip: str | None, body: Mapping[str, Any], agent: str | None
    ) -> CallRequest:
        """Run ``authorize``; the request as the later hooks see it (``caller`` set)."""
        session = scope["session"] if "session" in scope else await self.read_session(scope)
        request = CallRequest(scope, session, client_ip, body, agent)
        try:
            caller = await run_hook(self.settings.authorize, request)
        except Forbidden as exc:
            raise CallError("forbidden", exc.message) from None
        except Exception as exc:
            raise hook_failed("authorize") from exc
        if not caller:
            raise CallError("unauthorized", "Please sign in to start a call.")
        return request.identified(caller)
