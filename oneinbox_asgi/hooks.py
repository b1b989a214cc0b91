"""Running the host's hooks, which may be plain or async functions."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .context import CallEvent, CallRequest
from .errors import CallError

logger = logging.getLogger("oneinbox_asgi")

Hook = Callable[[CallRequest], Any | Awaitable[Any]]
EventHook = Callable[[CallEvent], Any | Awaitable[Any]]
#: ``(headers with lower-case names, raw body) -> bool``: whether a webhook delivery is
#: genuinely OneInbox's.
WebhookVerifier = Callable[[Mapping[str, str], bytes], bool | Awaitable[bool]]


#: What a plain function's answer usually is: known not awaitable without asking the
#: ``Awaitable`` ABC (the slowest part of ``inspect.isawaitable``), on every hook call.
_PLAIN = (str, dict, int, type(None), list, tuple, float)


async def run_hook(hook: Hook, request: CallRequest) -> Any:
    """Call a request hook (``authorize``, ``variables``, ``metadata``); it may raise."""
    result = hook(request)
    if not isinstance(result, _PLAIN) and inspect.isawaitable(result):
        result = await result
    return result


async def run_event_hook(name: str, hook: EventHook | None, event: CallEvent) -> None:
    """Run ``on_call_started`` / ``on_call_ended``; a broken hook is logged once, never fatal
    (the call itself has happened either way)."""
    if hook is None:
        return
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("the %s hook raised; the call itself is unaffected", name)


def hook_failed(name: str) -> CallError:
    """The answer when a host hook raised or returned something unusable. Raise it
    ``from`` the hook's exception: its audit line names the hook and carries that
    exception (logged there, once)."""
    return CallError(
        "internal_error", "The call could not be set up.", reason=f"the {name} hook failed"
    )
