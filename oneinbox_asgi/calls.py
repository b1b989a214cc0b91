"""The start-call endpoint: check → authorize → variables → upstream → answer.

Every refusal is a ``CallError`` raised where it is found and answered in one place,
so each route reads top to bottom as the contract describes it.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from .asgi import is_json, read_body
from .context import CallRequest, Forbidden
from .errors import CallError, method_not_allowed, send_error, send_json
from .sessions import EMPTY, SessionReader
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
StartCallAnswer = dict[str, Any]


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


def parse_body(raw: bytes) -> dict[str, Any]:
    """The browser's JSON object; an empty body means ``{}``."""
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
    unknown = sorted(set(payload) - {"agent", "variables"})
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


class StartCall:
    """``POST {prefix}/start-call``."""

    def __init__(self, policy: CallPolicy, upstream: OneInboxClient) -> None:
        self.policy = policy
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            answer = await self.start(scope, receive)
        except CallError as error:
            await send_error(send, error)
            return
        logger.info(
            "call started call_id=%s latency_ms=%.1f",
            answer["call_id"],
            (time.perf_counter() - started) * 1000,
        )
        await send_json(send, 201, answer)

    async def start(self, scope: Scope, receive: Receive) -> StartCallAnswer:
        if scope["method"] != "POST":
            raise method_not_allowed(["POST"])
        if not is_json(scope):
            raise CallError(415, "unsupported_media_type", "Send the request as application/json.")
        body = parse_body(await read_body(scope, receive, MAX_BODY_BYTES))
        policy = self.policy
        agent_id = pick_agent(policy, body.get("agent"))
        from_browser = browser_variables(policy, body.get("variables"))

        request = CallRequest(
            scope,
            session=await self._session(scope),
            client_ip=scope["client"][0] if scope.get("client") else None,
            body=body,
            agent=body.get("agent"),
        )
        request.caller = await self._authorize(request)
        variables = from_browser | await self._hook_mapping("variables", request, {})
        metadata = await self._hook_mapping(
            "metadata", request, {"caller": str(request.caller), "path": request.path}
        )

        call = await self._create(agent_id, variables, metadata, request)
        return {
            "call_id": call.call_id,
            "server_url": call.server_url,
            "participant_token": call.participant_token,
        }

    async def _session(self, scope: Scope) -> Mapping[str, Any]:
        if "session" in scope:
            session: Mapping[str, Any] = scope["session"]
            return session
        if self.policy.session is None:
            return EMPTY
        from starlette.requests import cookie_parser

        cookie = b""
        for key, value in scope["headers"]:
            if key == b"cookie":
                cookie = value
                break
        return await self.policy.session.read(cookie_parser(cookie.decode("latin-1")))

    async def _authorize(self, request: CallRequest) -> Any:
        try:
            caller = await run_hook(self.policy.authorize, request)
        except Forbidden as exc:
            logger.info("call denied outcome=forbidden path=%s", request.path)
            raise CallError(403, "forbidden", exc.message) from None
        except Exception:
            raise _hook_failed("authorize") from None
        if not caller:
            logger.info("call denied outcome=unauthorized path=%s", request.path)
            raise CallError(401, "unauthorized", "Please sign in to start a call.")
        return caller

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
        request: CallRequest,
    ) -> WebCall:
        try:
            return await self.upstream.create_web_call(
                agent_id, variables=variables, metadata=metadata
            )
        except UpstreamError as exc:
            logger.warning(
                "call failed outcome=%s agent_id=%s reason=%s",
                type(exc).__name__,
                agent_id,
                exc,
            )
            raise upstream_failure(exc) from None
