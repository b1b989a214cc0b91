"""``POST {prefix}/metrics`` (``browser_metrics=True``): what the browser measured of its call.

method → cross-site → JSON → bounded body → strict schema → the call's end handle →
once per call → histograms (``oneinbox.browser.*``, telemetry.py) → 200.

The browser proves it is the call's caller with the call's ``end_token`` (signed: no
session, no hook, no store read to check it), which also names the agent the figures are
attributed to. Each call's figures count once (a claim in the store, when it keeps calls);
a repeat is answered ``{"recorded": false}``. Every figure is optional, a finite number
within its bounds (``FIGURES``); anything else is 400 and records nothing. Refusals get
the audit line every route's refusal gets; an accepted report logs nothing.
"""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.types import Receive, Scope, Send

from .. import audit
from ..contract import DOMAIN_ERRORS, as_call_error
from ..errors import CallError, bad_request
from ..responses import send_error, send_json
from .common import Route

#: Each figure the widget may send: (upper bound, divisor to the histogram's unit).
#: Milliseconds become seconds; ``packet_loss`` is a fraction of packets, 0 to 1.
FIGURES: dict[str, tuple[float, float]] = {
    "click_to_active_ms": (120_000.0, 1000.0),
    "click_to_first_audio_ms": (120_000.0, 1000.0),
    "round_trip_time_ms": (10_000.0, 1000.0),
    "jitter_ms": (10_000.0, 1000.0),
    "packet_loss": (1.0, 1.0),
}
FIELDS = frozenset({"end_token", *FIGURES})


class BrowserMetrics(Route):
    """Records one call's browser-side figures as histograms, once per call."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        call_id: str | None = None
        agent_id: str | None = None
        try:
            body = await self.post_body(scope, receive, FIELDS)
            figures = _figures(body)
            handle = self.broker.handles.open(body.get("end_token"))
            call_id, agent_id = handle.call_id, handle.agent_id
            recorded = await self._first(call_id)
        except (CallError, *DOMAIN_ERRORS) as exc:
            error = as_call_error(exc)
            audit.refused(
                "metrics refused",
                error,
                started=started,
                limit_key=None,
                agent_id=agent_id,
                call_id=call_id,
            )
            self.broker.telemetry.refused("metrics", error, agent_id=agent_id, call_id=call_id)
            await send_error(send, error)
            return
        if recorded:
            self.broker.telemetry.browser(figures, agent_id)
        outcome = "recorded" if recorded else "repeated"
        self.broker.telemetry.answered("metrics", outcome, 200, agent_id=agent_id, call_id=call_id)
        await send_json(send, 200, {"recorded": recorded})

    async def _first(self, call_id: str) -> bool:
        lifecycle = self.broker.lifecycle
        if lifecycle is None:
            return True
        return await lifecycle.ledger.claim(
            f"browser-metrics:{call_id}", self.settings.max_call_seconds
        )


def _figures(body: dict[str, Any]) -> dict[str, float]:
    """The figures in the histograms' units (``oneinbox.browser.<name without _ms>``)."""
    figures: dict[str, float] = {}
    for name, (bound, divisor) in FIGURES.items():
        if name not in body:
            continue
        value = body[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= bound
        ):
            raise bad_request(f"{name} must be a number from 0 to {bound:g}.")
        figures[name.removesuffix("_ms")] = value / divisor
    if not isinstance(body.get("end_token"), str):
        raise bad_request("Send the end_token that start-call returned.")
    return figures
