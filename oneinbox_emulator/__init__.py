"""An offline stand-in for OneInbox: its HTTP API and a LiveKit-compatible voice server.

Part of the ``oneinbox-asgi`` distribution, beside the library (``oneinbox_asgi``), which
never imports it. Needs the ``emulator`` extra (``pip install 'oneinbox-asgi[emulator]'``).
The call API alone (``EmulatorAPI``) needs only the base install plus PyJWT; the voice
server needs aiortc. Every name here is imported on first use, so ``import
oneinbox_emulator.cli`` (``--help``) loads none of that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import AgentSettings
    from .api import DEFAULT_API_KEY, EmulatorAPI
    from .app import Emulator, build_emulator
    from .registry import Call, CallRegistry
    from .tokens import TokenError, TokenSigner

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

# name -> the submodule that defines it
_LAZY = {
    "DEFAULT_API_KEY": "api",
    "EmulatorAPI": "api",
    "Call": "registry",
    "CallRegistry": "registry",
    "TokenError": "tokens",
    "TokenSigner": "tokens",
    "Emulator": "app",
    "build_emulator": "app",
    "AgentSettings": "agent",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
