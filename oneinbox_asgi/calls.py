"""The start-call and end-call endpoints.

start-call: method → cross-site → JSON → bounded body → agent/variables → session →
authorize → rate limit → hooks → concurrency slot → upstream → 201 with an end handle.
end-call: method → cross-site → JSON → handle → session → authorize → owner → stop → 200.

Every refusal is a ``CallError`` raised where it is found and answered in one place
(with its audit line), so each route reads top to bottom as the contract describes it.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from .asgi import is_json, read_body
from .context import CallEvent, CallRequest, Forbidden
from .errors import CallError, method_not_allowed, send_error, send_json
from .guards.audit import Trail
from .guards.client import ClientAddress
from .guards.cross_site import CrossSiteGuard
from .guards.handles import HandleRefused, HandleSigner
from .guards.limits import Limits, caller_key
from .sessions import SessionReader
from .upstream import (
    AgentNotFound,
    OneInboxClient,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    WebCall,
)

logger = logging.getLogger("oneinbox_asgi")

MAX_BODY_BYTES = 16 * 1024
MAX_CLIENT_VARIABLE_CHARS = 500
DEFAULT_UPSTREAM_RETRY_AFTER = 5

Hook = Callable[[CallRequest], Any | Awaitable[Any]]
EventHook = Callable[[CallEvent], Any | Awaitable[Any]]
StartCallAnswer = dict[str, Any]
START_FIELDS = frozenset({"agent", "variables"})
END_FIELDS = frozenset({"end_token"})
#: Refusals that are the service's fault rather than the caller's: logged as warnings.
_FAILURES = frozenset({"limits_unavailable", "internal_error"})


@dataclass(frozen=True, slots=True)
class CallGuards:
    """The checked options that guard the money: who may post, how often, how many at once."""

    cross_site: CrossSiteGuard
    client: ClientAddress
    limits: Limits
    handles: HandleSigner
    on_call_started: EventHook | None = None
    on_call_ended: EventHook | None = None


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """The checked options that decide who may call which agent with what."""

    authorize: Hook
    agent_id: str | None
    agents: Mapping[str, str]
    variables: Hook | None
    client_variables: frozenset[str]
    metadata: Hook | None
    session: SessionReader | None


async def run_hook(hook: Hook, request: CallRequest) -> Any:
    """Call a host hook that may be sync or async."""
    result = hook(request)
    if inspect.isawaitable(result):
        result = await result
    return result


def parse_body(raw: bytes, fields: Collection[str] = START_FIELDS) -> dict[str, Any]:
    """The browser's JSON object with only ``fields``; an empty body means ``{}``."""
    if not raw.strip():
        return {}
    try:
        payload = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constants,
        )
    except UnicodeDecodeError:
        raise CallError(400, "bad_request", "The body is not valid UTF-8.") from None
    except (ValueError, RecursionError) as exc:
        raise CallError(400, "bad_request", f"The body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CallError(400, "bad_request", "The body must be a JSON object.")
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        raise CallError(400, "bad_request", f"Unknown field: {unknown[0][:40]!r}.")
    return payload


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def pick_agent(policy: CallPolicy, name: Any) -> str:
    if name is None:
        if policy.agent_id is None:
            choices = ", ".join(sorted(policy.agents))
            raise CallError(400, "bad_request", f"Choose an agent: {choices}.")
        return policy.agent_id
    if not isinstance(name, str):
        raise CallError(400, "bad_request", "`agent` must be a string.")
    agent_id = policy.agents.get(name)
    if agent_id is None:
        raise CallError(400, "bad_request", f"Unknown agent {name[:40]!r}.")
    return agent_id


def browser_variables(policy: CallPolicy, value: Any) -> dict[str, Any]:
    """The variables the browser sent, each allowed by name, type and length."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CallError(400, "bad_request", "`variables` must be a JSON object.")
    accepted: dict[str, Any] = {}
    for name, item in value.items():
        if name not in policy.client_variables:
            raise CallError(400, "bad_request", f"Variable {name[:40]!r} may not be set here.")
        if not isinstance(item, str | int | float | bool):
            raise CallError(400, "bad_request", f"Variable {name!r} must be a string or number.")
        if isinstance(item, str) and len(item) > MAX_CLIENT_VARIABLE_CHARS:
            raise CallError(
                400,
                "bad_request",
                f"Variable {name!r} is longer than {MAX_CLIENT_VARIABLE_CHARS} characters.",
            )
        accepted[name] = item
    return accepted


def _mapping_from_hook(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"the {name} hook must return a dict, not {type(value).__name__}")
    return dict(value)


def upstream_failure(exc: UpstreamError) -> CallError:
    """The contract's mapping from a OneInbox failure to what the browser is told."""
    if isinstance(exc, UpstreamAuthError):
        return CallError(502, "upstream_auth", "The voice service refused our credentials.")
    if isinstance(exc, AgentNotFound):
        return CallError(502, "upstream_agent_not_found", "The voice agent is not available.")
    if isinstance(exc, UpstreamBusy):
        retry = exc.retry_after if exc.retry_after is not None else DEFAULT_UPSTREAM_RETRY_AFTER
        return CallError(
            503,
            "upstream_busy",
            "The voice service is busy. Please try again shortly.",
            [("Retry-After", str(retry))],
        )
    if isinstance(exc, UpstreamTimeout):
        return CallError(504, "upstream_timeout", "The voice service took too long to answer.")
    if isinstance(exc, UpstreamUnavailable):
        return CallError(503, "upstream_unavailable", "The voice service cannot be reached.")
    assert isinstance(exc, UpstreamBadResponse)
    return CallError(502, "upstream_error", "The voice service answered with an error.")


def _hook_failed(name: str) -> CallError:
    """Log the host hook's exception (with its trace) and answer a JSON 500."""
    logger.exception("the %s hook raised; answering 500", name)
    return CallError(500, "internal_error", "The call could not be set up.")


async def run_event_hook(name: str, hook: EventHook | None, event: CallEvent) -> None:
    """Run ``on_call_started`` / ``on_call_ended``; a broken hook is logged, never fatal."""
    if hook is None:
        return
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("the %s hook raised; the call itself is unaffected", name)


class _MissingSession(Mapping[str, Any]):
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


class _Route:
    """What both routes share: the guards in front, the session and the authorize hook."""

    def __init__(self, policy: CallPolicy, guards: CallGuards, upstream: OneInboxClient) -> None:
        self.policy = policy
        self.guards = guards
        self.upstream = upstream
        self._missing_session = _MissingSession()

    def _check_post(self, scope: Scope, trail: Trail) -> str | None:
        """Method, cross-site and JSON-only: together they stop a forged form post.

        Answers the client address (``trusted_proxies`` applied).
        """
        client_ip = self.guards.client.of(scope)
        trail.caller = caller_key(None, client_ip)  # until authorize says who it is
        if scope["method"] != "POST":
            raise method_not_allowed(["POST"])
        self.guards.cross_site.check(scope)
        if not is_json(scope):
            raise CallError(415, "unsupported_media_type", "Send the request as application/json.")
        return client_ip

    def _deny(self, trail: Trail, event: str, error: CallError) -> None:
        if error.code.startswith("upstream_"):
            return  # logged where it was found, with its reason
        level = logging.WARNING if error.code in _FAILURES else logging.INFO
        trail.log(event, error.code, level=level, status=error.status)

    async def _session(self, scope: Scope) -> Mapping[str, Any]:
        if "session" in scope:
            session: Mapping[str, Any] = scope["session"]
            return session
        reader = self.policy.session
        if reader is None:
            return self._missing_session
        from starlette.requests import cookie_parser

        # HTTP/2 may split cookies over several headers; join them as one cookie string.
        cookies = "; ".join(
            value.decode("latin-1") for key, value in scope["headers"] if key == b"cookie"
        )
        return await reader.read(cookie_parser(cookies))

    async def _identify(
        self,
        scope: Scope,
        client_ip: str | None,
        body: Mapping[str, Any],
        agent: str | None,
        trail: Trail,
    ) -> tuple[CallRequest, str]:
        """Run ``authorize``; the request it saw and the caller's limit key."""
        request = CallRequest(
            scope,
            session=await self._session(scope),
            client_ip=client_ip,
            body=body,
            agent=agent,
        )
        request.caller = await self._authorize(request)
        key = caller_key(request.caller, client_ip)
        trail.caller = key
        return request, key

    async def _authorize(self, request: CallRequest) -> Any:
        try:
            caller = await run_hook(self.policy.authorize, request)
        except Forbidden as exc:
            raise CallError(403, "forbidden", exc.message) from None
        except Exception:
            raise _hook_failed("authorize") from None
        if not caller:
            raise CallError(401, "unauthorized", "Please sign in to start a call.")
        return caller


class StartCall(_Route):
    """``POST {prefix}/start-call``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trail = Trail.begin()
        try:
            answer = await self.start(scope, receive, trail)
        except CallError as error:
            self._deny(trail, "denied", error)
            await send_error(send, error)
            return
        trail.log("started", "started")
        await send_json(send, 201, answer)

    async def start(self, scope: Scope, receive: Receive, trail: Trail) -> StartCallAnswer:
        client_ip = self._check_post(scope, trail)
        body = parse_body(await read_body(scope, receive, MAX_BODY_BYTES))
        policy = self.policy
        agent_id = trail.agent = pick_agent(policy, body.get("agent"))
        from_browser = browser_variables(policy, body.get("variables"))

        request, key = await self._identify(scope, client_ip, body, body.get("agent"), trail)
        limits = self.guards.limits
        await limits.check_rate(key)
        variables = from_browser | await self._hook_mapping("variables", request, {})
        metadata = await self._hook_mapping(
            "metadata", request, {"caller": str(request.caller), "path": request.path}
        )

        slot = await limits.take_slot(key)
        try:
            call = await self._create(agent_id, variables, metadata, trail)
        except BaseException:
            if slot is not None:
                await limits.give_back(key, slot)
            raise
        trail.call_id = call.call_id
        end_token = self.guards.handles.issue(
            key, call_id=call.call_id, agent_id=agent_id, slot=slot
        )
        await run_event_hook(
            "on_call_started",
            self.guards.on_call_started,
            CallEvent(call_id=call.call_id, agent_id=agent_id, caller=key),
        )
        return {
            "call_id": call.call_id,
            "server_url": call.server_url,
            "participant_token": call.participant_token,
            "end_token": end_token,
        }

    async def _hook_mapping(
        self, name: str, request: CallRequest, default: dict[str, Any]
    ) -> dict[str, Any]:
        """Run the ``variables`` or ``metadata`` hook; a broken hook is a logged 500."""
        hook: Hook | None = getattr(self.policy, name)
        if hook is None:
            return default
        try:
            return _mapping_from_hook(name, await run_hook(hook, request))
        except CallError:
            raise
        except Exception:
            raise _hook_failed(name) from None

    async def _create(
        self,
        agent_id: str,
        variables: dict[str, Any],
        metadata: dict[str, Any],
        trail: Trail,
    ) -> WebCall:
        try:
            return await self.upstream.create_web_call(
                agent_id, variables=variables, metadata=metadata
            )
        except UpstreamError as exc:
            error = upstream_failure(exc)
            trail.log("failed", error.code, level=logging.WARNING, reason=str(exc))
            raise error from None


class EndCall(_Route):
    """``POST {prefix}/end-call`` with ``{"end_token": …}``: hang up a call the caller started.

    Idempotent: OneInbox's stop is a no-op on an ended call, and a freed slot stays freed.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trail = Trail.begin()
        try:
            outcome = await self.end(scope, receive, trail)
        except CallError as error:
            self._deny(trail, "end denied", error)
            await send_error(send, error)
            return
        trail.log("ended", outcome)
        await send_json(send, 200, {"ended": True})

    async def end(self, scope: Scope, receive: Receive, trail: Trail) -> str:
        client_ip = self._check_post(scope, trail)
        body = parse_body(await read_body(scope, receive, MAX_BODY_BYTES), END_FIELDS)
        if not isinstance(body.get("end_token"), str):
            raise CallError(400, "bad_request", "Send the end_token that start-call returned.")
        handles = self.guards.handles
        try:
            handle = handles.open(body["end_token"])
        except HandleRefused as exc:
            logger.debug("end-call handle refused: %s", exc)
            raise CallError(404, "not_found", "There is no such call, or it is over.") from None
        trail.call_id = handle.call_id
        trail.agent = handle.agent_id

        # authorize is not shown the handle: hooks may log their request.
        _, key = await self._identify(scope, client_ip, {}, None, trail)
        if not handles.owned_by(handle, key):
            raise CallError(403, "forbidden", "Only the person who started a call may end it.")

        try:
            await self.upstream.stop_call(handle.call_id)
        except UpstreamError as exc:
            error = upstream_failure(exc)
            trail.log("end failed", error.code, level=logging.WARNING, reason=str(exc))
            raise error from None

        first = True
        if handle.slot is not None:
            first = await self.guards.limits.give_back(key, handle.slot)
        if first:
            duration = max(0.0, float(handles.clock() - handle.issued))
            await run_event_hook(
                "on_call_ended",
                self.guards.on_call_ended,
                CallEvent(
                    call_id=handle.call_id, agent_id=handle.agent_id, caller=key, duration=duration
                ),
            )
        return "ended" if first else "already_ended"
