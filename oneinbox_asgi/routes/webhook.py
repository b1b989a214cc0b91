"""``POST {prefix}/webhook``: OneInbox's webhook deliveries (with ``webhooks=True``).

OneInbox's signature scheme is not documented, so the body is never trusted: a
delivery only names a call, and the broker acts on what ``GET /v1/calls/{id}`` then
says (lifecycle.py). A forged event costs at most one lookup per call id per
``LOOKUP_SECONDS``, changes nothing, and is answered 2xx like any other, so that
OneInbox does not retry genuine ones forever; events for calls this broker did not
start are acknowledged and ignored, and so are events sent while a call is live
(``LIVE_EVENTS``). Deliveries are idempotent: retries and duplicates across replicas end
a call once.

The route is exempt from the cross-site check and the session (OneInbox is not a
browser), never from the body limit. ``webhook_verifier`` lets a host add the signature
check once OneInbox documents it: a delivery it refuses gets 401.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from starlette.types import Receive, Scope, Send

from .. import audit
from ..asgi import drain_body, read_body
from ..contract import DOMAIN_ERRORS, as_call_error
from ..errors import CallError, bad_request, method_not_allowed
from ..hooks import hook_failed
from ..payload import parse_body
from ..responses import send_error, send_json
from ..upstream import UpstreamError, call_path
from .common import Route

#: A delivery is a small JSON object; OneInbox's own examples are well under this.
MAX_WEBHOOK_BYTES = 64 * 1024
#: The fields of a delivery the broker reads; the rest is ignored, never trusted.
EVENTS = frozenset(
    {
        "call.started",
        "call.ended",
        "call.failed",
        "call.analyzed",
        "call.recording.available",
        "transcript.partial",
        "transcript.final",
    }
)
#: Events sent while a call is live: they cannot tell of its end, so they are acknowledged
#: without a lookup, which would hold the call's lookup claim (``LOOKUP_SECONDS``) and turn
#: away a ``call.ended`` that follows at once.
LIVE_EVENTS = frozenset({"call.started", "transcript.partial"})


class Webhook(Route):
    """Receives a delivery, looks the call up at OneInbox, and ends it if it ended."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        call_id: str | None = None
        try:
            if scope["method"] != "POST":
                await drain_body(scope, receive, MAX_WEBHOOK_BYTES)
                raise method_not_allowed(["POST"])
            raw = await read_body(scope, receive, MAX_WEBHOOK_BYTES)
            await self._verify(scope, raw)
            kind, call_id = _event(parse_body(raw, None))
            outcome = "ignored"
            lifecycle = self.broker.lifecycle
            if lifecycle is not None and kind in EVENTS and kind not in LIVE_EVENTS:
                outcome = await lifecycle.delivered(call_id)
        except (CallError, *DOMAIN_ERRORS) as exc:
            error = as_call_error(exc)
            if isinstance(exc, UpstreamError):
                # OneInbox will retry the delivery: the lookup can be tried again then.
                audit.refused(
                    "webhook failed", error, started=started, limit_key=None, call_id=call_id
                )
            else:
                audit.refused(
                    "webhook refused", error, started=started, limit_key=None, call_id=call_id
                )
            self.broker.telemetry.refused("webhook", error, call_id=call_id)
            await send_error(send, error)
            return
        audit.record("webhook", outcome, started=started, limit_key=None, call_id=call_id)
        self.broker.telemetry.answered("webhook", outcome, 200, call_id=call_id)
        await send_json(send, 200, {"received": True})

    async def _verify(self, scope: Scope, raw: bytes) -> None:
        verifier = self.settings.webhook_verifier
        if verifier is None:
            return
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope["headers"]
        }
        try:
            verdict = verifier(headers, raw)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception as exc:
            raise hook_failed("webhook_verifier") from exc
        if verdict is not True:
            raise CallError("unauthorized", "This delivery's signature is not valid.")


def _event(payload: dict[str, Any]) -> tuple[str, str]:
    event = payload.get("event") or payload.get("type")
    call_id = payload.get("call_id")
    if call_id is None and isinstance(payload.get("call"), dict):
        call_id = payload["call"].get("id")
    if not isinstance(event, str) or not isinstance(call_id, str):
        raise bad_request("A delivery names its event and call_id.")
    try:
        call_path(call_id)
    except ValueError:
        raise bad_request("That call_id cannot be a call id.") from None
    return event, call_id[:200]
