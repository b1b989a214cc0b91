"""Command line: ``python -m oneinbox_asgi demo`` and ``python -m oneinbox_asgi emulator``.

demo       the demo site with the widget, on the local emulator unless ONEINBOX_API_KEY
           is set (then on the real OneInbox, with ONEINBOX_AGENT_ID)
emulator   the OneInbox emulator alone (call API + voice server) for your own app

Both live in the ``oneinbox_emulator`` package of this distribution. This module is the only
place in ``oneinbox_asgi`` that refers to it: the library itself never depends on the
emulator. ``oneinbox_emulator.cli`` loads only the standard library on import, so ``--help``
works without the ``emulator`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    from oneinbox_emulator.cli import main as run

    run(argv, package="oneinbox_asgi")


if __name__ == "__main__":
    main()
