"""What the host app's hooks see (``CallRequest``, ``CallEvent``) and how they refuse."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from .client_address import network_of


class Forbidden(Exception):
    """Raise from ``authorize`` to refuse a known user; ``message`` is shown to them."""

    def __init__(self, message: str = "You are not allowed to start a call.") -> None:
        super().__init__(message)
        self.message = message


class CallRequest:
    """One start-call request, as the ``authorize``, ``variables`` and ``metadata`` hooks see it.

    Built only for the broker's own routes, never for the host app's requests.
    """

    __slots__ = ("_cookies", "_headers", "agent", "body", "caller", "client_ip", "scope", "session")

    def __init__(  # not keyword-only: a class called by keyword builds a dict per call
        self,
        scope: Scope,
        session: Mapping[str, Any],
        client_ip: str | None,
        body: Mapping[str, Any],
        agent: str | None,
        caller: Any = None,
    ) -> None:
        self.scope = scope
        self.session = session
        self.client_ip = client_ip
        self.body = body
        #: The agent's name as the browser asked for it (None: the default agent).
        self.agent = agent
        #: What ``authorize`` returned: None while ``authorize`` itself runs.
        self.caller = caller
        self._headers: Headers | None = None
        self._cookies: dict[str, str] | None = None

    def identified(self, caller: Any) -> CallRequest:
        """The same request as the later hooks see it: ``caller`` is what authorize returned."""
        return CallRequest(self.scope, self.session, self.client_ip, self.body, self.agent, caller)

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(scope=self.scope)
        return self._headers

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            self._cookies = cookie_parser("; ".join(self.headers.getlist("cookie")))
        return self._cookies

    @property
    def path(self) -> str:
        return str(self.scope.get("path", ""))

    def __repr__(self) -> str:
        return (
            f"CallRequest(path={self.path!r}, client_ip={self.client_ip!r}, agent={self.agent!r})"
        )


def allow_anonymous(request: CallRequest) -> str:
    """An ``authorize`` hook that lets everyone call; the caller is keyed by client address
    (``anonymous:203.0.113.7``), an IPv6 one by its network (``anonymous:2001:db8:1:2::/64``,
    per the ``ipv6_subnet`` option), so rotating addresses within it buys no more calls.

    For public sites that opt in explicitly. Pair it with the rate and concurrency limits.
    """
    return f"anonymous:{network_of(request.client_ip)}"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """What ``on_call_started`` and ``on_call_ended`` receive, for the host's own metrics."""

    #: OneInbox's call id.
    call_id: str
    #: The OneInbox agent id the call was made with.
    agent_id: str
    #: What ``authorize`` returned for the caller.
    caller: Any
    #: Seconds from start-call to end-call (``on_call_ended`` only).
    duration: float | None = None
    #: The limits' key for the caller: ``id:<caller>`` or ``ip:<client address or network>``.
    limit_key: str = ""
    #: The agent's name as the browser asked for it (None: the default agent).
    agent: str | None = None
    #: When start-call took the call's slot, and (ended events) when the end was seen:
    #: seconds since the epoch, on the limit store's clock.
    started_at: float | None = None
    ended_at: float | None = None
    #: Which path saw the end first: ``end_call`` (the browser hung up), ``webhook``,
    #: ``reconciliation`` (a start at the cap asked OneInbox), ``max_call_seconds``.
    ended_by: str | None = None
    #: How the call ended as OneInbox reports it (``user_hangup``, ``agent_hangup``,
    #: ``max_duration``, …) when the path that saw it had OneInbox's record; else None.
    end_reason: str | None = None
    #: OneInbox's call record (``GET /v1/calls/{id}``: status, messages, ai_summary,
    #: analysis, latency, credits_used, …) when the path had it; always in
    #: ``on_call_record`` events.
    record: Mapping[str, Any] | None = None
