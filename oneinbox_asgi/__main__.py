"""Command line: ``python -m oneinbox_asgi demo | emulator | pause | resume | usage``.

demo       the demo site with the widget, on the local emulator unless ONEINBOX_API_KEY
           is set (then on the real OneInbox, with ONEINBOX_AGENT_ID)
emulator   the OneInbox emulator alone (call API + voice server) for your own app
pause      the kill switch: refuse new calls globally, per tenant or per agent (ops.py)
resume     allow them again
usage      calls live, today's calls and minutes, what remains, per scope

Both live in the ``oneinbox_emulator`` package of this distribution. This module is the only
place in ``oneinbox_asgi`` that refers to it: the library itself never depends on the
emulator. ``oneinbox_emulator.cli`` loads only the standard library on import, so ``--help``
works without the ``emulator`` extra.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("pause", "resume", "usage") for arg in args):
        from .ops import main as operate

        operate(args)
        return
    from oneinbox_emulator.cli import main as run

    run(args, package="oneinbox_asgi")


if __name__ == "__main__":
    main()
