"""What a server process started by ``test_servers.py`` serves: ``tests.frameworks.served:app``.

It is one of examples/ (``SERVED_EXAMPLE``, e.g. ``examples.falcon_app:app``), unchanged,
with one probe: every ``OneInboxMiddleware.aclose()`` that completes appends a line to
the file ``SERVED_REPORT``, saying whether the broker's own pooled upstream client is
closed. The probe is set before the example is imported, so it holds in every worker
process the server spawns (each imports this module afresh).

``SERVED_PRELUDE``, when set, is a Python file run first (the README's logging lines).
``SERVED_BROKEN=session-inside`` serves the Starlette example with the usual mistake
(its session middleware inside ours), to show the checks fail on a broken setup.
"""

from __future__ import annotations

import importlib
import os
import runpy
from typing import Any

from oneinbox_asgi import OneInboxMiddleware

_REPORT = os.environ["SERVED_REPORT"]
_original_aclose = OneInboxMiddleware.aclose


async def _aclose_and_report(self: OneInboxMiddleware) -> None:
    await _original_aclose(self)
    closed = not self.upstream.is_open  # the pooled client it opened at startup
    with open(_REPORT, "a", encoding="utf-8") as report:
        report.write(f"pid={os.getpid()} closed={closed}\n")


OneInboxMiddleware.aclose = _aclose_and_report  # type: ignore[method-assign]

if prelude := os.environ.get("SERVED_PRELUDE"):
    runpy.run_path(prelude)


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _session_inside() -> Any:
    """The Starlette example with its two middlewares the wrong way round."""
    from starlette.applications import Starlette
    from starlette.middleware.sessions import SessionMiddleware

    from examples import _shared, starlette_app

    app = Starlette(routes=starlette_app.app.routes)
    app.add_middleware(SessionMiddleware, secret_key=_shared.session_secret())
    app.add_middleware(OneInboxMiddleware, authorize=_shared.authorize, variables=_shared.variables)
    return app


app = _session_inside() if os.environ.get("SERVED_BROKEN") else _load(os.environ["SERVED_EXAMPLE"])
