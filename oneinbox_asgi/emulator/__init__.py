"""An offline stand-in for OneInbox: its HTTP API and a LiveKit-compatible voice server.

Needs the ``emulator`` extra (``pip install 'oneinbox-asgi[emulator]'``). The call API alone
(``EmulatorAPI``) needs only the base install plus PyJWT; the voice server needs aiortc, so
``Emulator`` and ``build_emulator`` are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .api import DEFAULT_API_KEY, EmulatorAPI
from .registry import Call, CallRegistry
from .tokens import TokenError, TokenSigner

if TYPE_CHECKING:
    from .agent import AgentSettings
    from .app import Emulator, build_emulator

__all__ = [
    "DEFAULT_API_KEY",
    "AgentSettings",
    "Call",
    "CallRegistry",
    "Emulator",
    "EmulatorAPI",
    "TokenError",
    "TokenSigner",
    "build_emulator",
]

_LAZY = {"Emulator": "app", "build_emulator": "app", "AgentSettings": "agent"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
