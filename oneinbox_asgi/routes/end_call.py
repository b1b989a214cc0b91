"""``POST {prefix}/end-call`` with ``{"end_token": …}``: hang up a call the caller started.

method → cross-site → JSON → bounded body → handle → session → authorize → owner →
OneInbox stop → free the slot → on_call_ended (once) → 200.

Idempotent: OneInbox's stop is a no-op on an ended call, and a freed slot stays freed.
"""

from __future__ import annotations

import time

import anyio
from starlette.types import Receive, Scope, Send

from .. import audit
from ..context import CallEvent
from ..contract import DOMAIN_ERRORS, as_call_error
from ..errors import CallError, bad_request
from ..guards.handles import EndHandle
from ..guards.limits import Slot, limit_key
from ..hooks import run_event_hook
from ..payload import END_FIELDS
from ..responses import send_error, send_json
from ..upstream import UpstreamError
from .common import Route


class EndCall(Route):
    """Stops the caller's own call at OneInbox and frees its slot."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        client_ip = self.broker.client_address.of(scope)  # trusted_proxies applied
        key: str | None = None  # the caller's, once authorize has said who it is
        handle: EndHandle | None = None
        try:
            body = await self.post_body(scope, receive, END_FIELDS)
            token = body.get("end_token")
            if not isinstance(token, str):
                raise bad_request("Send the end_token that start-call returned.")
            handle = self.broker.handles.open(token, now_ms=await self.broker.limits.now_ms())
            # authorize is not shown the handle: hooks may log their request.
            request = await self.identify(scope, client_ip, {}, None)
            key = limit_key(request.caller, client_ip)
            if not self.broker.handles.owned_by(handle, key):
                raise CallError("forbidden", "Only the person who started a call may end it.")
            outcome = await self.end(handle, request.caller, key)
        except (CallError, *DOMAIN_ERRORS) as exc:
            error = as_call_error(exc)
            event = "end failed" if isinstance(exc, UpstreamError) else "end denied"
            if key is None:  # refused before authorize: the address's key
                key = limit_key(None, client_ip)
            audit.refused(
                event,
                error,
                started=started,
                limit_key=key,
                agent_id=handle.agent_id if handle else None,
                call_id=handle.call_id if handle else None,
            )
            self.broker.telemetry.refused(
                "end-call",
                error,
                agent_id=handle.agent_id if handle else None,
                call_id=handle.call_id if handle else None,
            )
            await send_error(send, error)
            return
        audit.record(
            "ended",
            outcome,
            started=started,
            limit_key=key,
            agent_id=handle.agent_id,
            call_id=handle.call_id,
        )
        self.broker.telemetry.answered(
            "end-call", outcome, 200, agent_id=handle.agent_id, call_id=handle.call_id
        )
        await send_json(send, 200, {"ended": True})

    async def end(self, handle: EndHandle, caller: object, key: str) -> str:
        """Stop the call and free its slot; ``ended``, or ``already_ended`` when it was.

        At most one stop per call reaches OneInbox, one at a time across replicas: an
        ended call is answered from the store, and a stop in flight elsewhere answers
        ``upstream_busy`` (retry shortly). A failed stop may be retried.
        """
        broker = self.broker
        lifecycle = broker.lifecycle
        call_id = handle.call_id
        known = None if lifecycle is None else await lifecycle.ledger.call(call_id)
        if known is not None and known[1]:
            return "already_ended"
        if lifecycle is not None:
            stopping = f"stop:{call_id}"
            if not await lifecycle.ledger.claim(stopping, self.settings.timeout + 1):
                raise CallError(
                    "upstream_busy", "This call is being ended. Please try again.", retry_after=1
                )
            try:
                await broker.upstream.stop_call(call_id)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await lifecycle.ledger.unclaim(stopping)
                raise
        else:
            await broker.upstream.stop_call(call_id)
        if lifecycle is not None and known is not None:
            first = await lifecycle.end(call_id, ended_by="end_call", caller=caller)
            return "ended" if first else "already_ended"
        return await self._end_unrecorded(handle, caller, key)

    async def _end_unrecorded(self, handle: EndHandle, caller: object, key: str) -> str:
        """A call the store does not know (a custom store, or the store was down when it
        started): its handle names the slot to free."""
        broker = self.broker
        if handle.slot is not None:
            first = await broker.limits.give_back(key, Slot(handle.slot, handle.expires_ms))
            if not first:
                return "already_ended"
        clock_ms = await broker.limits.now_ms()
        started_ms = broker.limits.started_ms(handle.expires_ms)
        await run_event_hook(
            "on_call_ended",
            self.settings.on_call_ended,
            CallEvent(
                call_id=handle.call_id,
                agent_id=handle.agent_id,
                caller=caller,
                duration=max(0.0, (clock_ms - started_ms) / 1000),
                limit_key=key,
                started_at=started_ms / 1000,
                ended_at=clock_ms / 1000,
                ended_by="end_call",
            ),
        )
        return "ended"
