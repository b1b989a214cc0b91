"""``POST {prefix}/start-call``.

method → cross-site → JSON → bounded body → agent and browser variables → session →
authorize → rate limit → variables and metadata hooks → concurrency slot → OneInbox →
end handle → on_call_started → 201.

The rate limit is counted before a slot is taken, so a rate-limited request never
holds a slot; the slot is given back (shielded from cancellation) if anything after
it fails.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import Receive, Scope, Send

from .. import audit
from ..context import CallEvent, CallRequest
from ..contract import DOMAIN_ERRORS, as_call_error
from ..errors import CallError
from ..guards.limits import Slot, limit_key
from ..hooks import Hook, hook_failed, run_event_hook, run_hook
from ..payload import (
    START_FIELDS,
    browser_variables,
    hook_mapping,
    json_form,
    pick_agent,
    requested_agent,
)
from ..responses import send_error, send_json
from ..stores.base import CallEntry, StoreUnavailable
from ..upstream import UpstreamError, WebCall
from .common import Route

logger = logging.getLogger("oneinbox_asgi")
#: A tenant's name as the limits key it (longer names are cut).
MAX_TENANT_CHARS = 200


class StartCall(Route):
    """Creates a web call for an authorized caller and answers only what the browser needs."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        client_ip = self.broker.client_address.of(scope)  # trusted_proxies applied
        key: str | None = None  # the caller's, once authorize has said who it is
        agent_id: str | None = None
        try:
            body = await self.post_body(scope, receive, START_FIELDS)
            settings = self.settings
            agent = requested_agent(body)
            agent_id = pick_agent(settings.agent_id, settings.agents, agent)
            from_browser = browser_variables(settings.client_variables, body.get("variables"))
            request = await self.identify(scope, client_ip, body, agent)
            key = limit_key(request.caller, client_ip)
            answer = await self.start(request, key, agent_id, from_browser)
        except (CallError, *DOMAIN_ERRORS) as exc:
            error = as_call_error(exc)
            event = "failed" if isinstance(exc, UpstreamError) else "denied"
            if key is None:  # refused before authorize: the address's key
                key = limit_key(None, client_ip)
            audit.refused(event, error, started=started, limit_key=key, agent_id=agent_id)
            self.broker.telemetry.refused("start-call", error, agent_id=agent_id)
            await send_error(send, error)
            return
        audit.record(
            "started",
            "started",
            started=started,
            limit_key=key,
            agent_id=agent_id,
            call_id=answer["call_id"],
        )
        self.broker.telemetry.started(agent_id, agent, answer["call_id"], started)
        await send_json(send, 201, answer)

    async def start(
        self, request: CallRequest, key: str, agent_id: str, from_browser: dict[str, Any]
    ) -> dict[str, str]:
        """From an authorized request to the 201 answer."""
        broker = self.broker
        limits = broker.limits
        tenant_hook = self.settings.tenant
        tenant = None if tenant_hook is None else await self._tenant(tenant_hook, request)
        slot = await self._admit(key, tenant, agent_id)
        try:
            variables = from_browser | await self._hook_mapping("variables", request)
            if self.settings.metadata is None:
                metadata: dict[str, Any] = {"caller": str(request.caller), "path": request.path}
            else:
                metadata = await self._hook_mapping("metadata", request)
            call = await broker.upstream.create_web_call(
                agent_id, variables=variables, metadata=metadata
            )
        except BaseException:
            await limits.give_back(key, slot)
            raise
        await self._remember(call, request, key, agent_id, slot, tenant)
        end_token = broker.handles.issue(
            key, call_id=call.call_id, agent_id=agent_id, slot=slot.id, expires_ms=slot.expires_ms
        )
        if self.settings.on_call_started is not None:
            await run_event_hook(
                "on_call_started",
                self.settings.on_call_started,
                CallEvent(
                    call_id=call.call_id,
                    agent_id=agent_id,
                    caller=request.caller,
                    limit_key=key,
                    agent=request.agent,
                    started_at=limits.started_ms(slot.expires_ms) / 1000,
                ),
            )
        return _answer(call, end_token)

    async def _tenant(self, hook: Hook, request: CallRequest) -> str | None:
        """The ``tenant`` hook's answer: the team, customer or service the call counts for."""
        try:
            tenant = await run_hook(hook, request)
            if tenant is not None and (not isinstance(tenant, str) or not tenant):
                raise TypeError(
                    f"the tenant hook must return a non-empty str or None, not {tenant!r:.40}"
                )
        except Exception as exc:
            raise hook_failed("tenant") from exc
        return tenant[:MAX_TENANT_CHARS] if tenant is not None else None

    async def _admit(self, key: str, tenant: str | None, agent_id: str) -> Slot:
        """Pass every scope's limits (one round trip), or the first refusal; at the caller's
        cap, OneInbox is first asked whether the calls holding the caller's slots have
        ended (a closed tab never said so)."""
        limits = self.broker.limits
        lifecycle = self.broker.lifecycle
        try:
            return await limits.admit(key, tenant=tenant, agent_id=agent_id)
        except CallError as refused:
            if refused.code != "too_many_calls" or lifecycle is None:
                raise
            if not await lifecycle.reconcile(key):
                raise
        # The attempt was counted already: the retry only takes the freed slot.
        return await limits.admit(key, tenant=tenant, agent_id=agent_id, count_rate=False)

    async def _remember(
        self,
        call: WebCall,
        request: CallRequest,
        key: str,
        agent_id: str,
        slot: Slot,
        tenant: str | None,
    ) -> None:
        """Note the call in the store, so that any path that sees it end can free its slot
        and tell the host. If the store fails now, the call goes on: its slot's lease
        frees it, and the host hears of its end only from end-call."""
        lifecycle = self.broker.lifecycle
        if lifecycle is None:
            return
        entry = CallEntry(  # positional: a third cheaper than by keyword, on every start-call
            call.call_id,  # call_id
            key,  # limit_key
            slot.id,  # slot
            json_form(request.caller),  # caller
            agent_id,  # agent_id
            request.agent,  # agent
            self.broker.limits.started_ms(slot.expires_ms),  # started_ms
            slot.expires_ms,  # deadline_ms
            tenant,  # tenant
        )
        try:
            await lifecycle.ledger.record_call(entry)
        except StoreUnavailable as exc:
            logger.warning("call %s not recorded (its lease will free it): %s", call.call_id, exc)
        else:
            self.broker.telemetry.call_recorded(agent_id)

    async def _hook_mapping(self, name: str, request: CallRequest) -> dict[str, Any]:
        """Run the ``variables`` or ``metadata`` hook into a dict of JSON values."""
        hook: Hook | None = getattr(self.settings, name)
        if hook is None:
            return {}
        try:
            return hook_mapping(name, await run_hook(hook, request))
        except CallError:
            raise
        except Exception as exc:  # HookValueError too: the hook returned something unusable
            raise hook_failed(name) from exc


def _answer(call: WebCall, end_token: str) -> dict[str, str]:
    return {
        "call_id": call.call_id,
        "server_url": call.server_url,
        "participant_token": call.participant_token,
        "end_token": end_token,
    }
