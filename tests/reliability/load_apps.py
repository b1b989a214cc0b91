"""ASGI apps for the load test, each run by uvicorn in its own process.

``upstream``: the emulator's API (knows agt_demo). ``broker``: a bare host app behind
OneInboxMiddleware pointed at ``ONEINBOX_BASE_URL``, with the per-caller limits off.
"""

from __future__ import annotations

from starlette.applications import Starlette

from oneinbox_asgi import OneInboxMiddleware, allow_anonymous
from oneinbox_emulator.api import EmulatorAPI

from ..support import API_KEY, UNLIMITED

upstream = EmulatorAPI(api_keys=[API_KEY])


def broker() -> OneInboxMiddleware:
    return OneInboxMiddleware(
        Starlette(), api_key=API_KEY, agent_id="agt_demo", authorize=allow_anonymous, **UNLIMITED
    )
