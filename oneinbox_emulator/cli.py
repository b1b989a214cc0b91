"""Command line: ``python -m oneinbox_asgi demo|emulator`` (also ``python -m oneinbox_emulator``).

demo       the demo site with the widget, on the local emulator unless ONEINBOX_API_KEY
           is set (then on the real OneInbox, with ONEINBOX_AGENT_ID)
emulator   the OneInbox emulator alone (call API + voice server) for your own app

Importing this module loads only the standard library: ``--help`` and argument errors must
work without the ``emulator`` extra, so everything else is imported when a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from .app import Emulator
    from .serving import Served


class CommandError(Exception):
    """Why a command cannot run, for a person; ``main`` prints it and exits with status 2."""


def _fail(message: str) -> NoReturn:
    raise CommandError(message)


def _need_emulator_extra() -> None:
    try:
        import aiortc  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        _fail(
            f"the emulator needs the 'emulator' extra ({exc.name} is missing): "
            "pip install 'oneinbox-asgi[emulator]'"
        )


def _listen(host: str, port: int, what: str) -> socket.socket:
    from .serving import bind

    try:
        return bind(host, port)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port} for the {what} ({exc.strerror}); try another port")


def _build_emulator(args: argparse.Namespace) -> Emulator:
    from .agent import AgentSettings
    from .api import DEFAULT_API_KEY
    from .app import Emulator
    from .voice.server import VoiceOptions
    from .webhooks import WebhookOptions

    settings = AgentSettings(
        reply=args.reply,
        max_turns=args.max_turns,
        max_duration=args.max_duration or None,
    )
    try:
        webhooks = WebhookOptions(url=args.webhook_url) if args.webhook_url else None
    except ValueError as exc:
        _fail(str(exc))
    return Emulator(
        api_key=args.api_key or DEFAULT_API_KEY,
        agents={args.agent_id: settings},
        voice=VoiceOptions(
            media_hosts=(args.media_host,), single_peer_connection=not args.dual_pc_only
        ),
        join_timeout=args.join_timeout or None,
        record_delay=args.record_delay,
        webhooks=webhooks,
        max_calls_per_day=args.max_calls_per_day or None,
    )


def _shown(webhook_url: str) -> str:
    from .webhooks import safe_url

    return safe_url(webhook_url)


def _add_emulator_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("emulator")
    group.add_argument(
        "--api-key", default=None, help="the key it accepts (default: oi_sk_emulator_…)"
    )
    group.add_argument("--agent-id", default="agt_demo", help="the agent it knows")
    group.add_argument(
        "--reply",
        choices=["spoken", "echo"],
        default="spoken",
        help="answer with a recorded sentence, or play the caller's words back",
    )
    group.add_argument(
        "--max-turns", type=int, default=None, help="hang up after this many caller turns"
    )
    group.add_argument(
        "--max-duration", type=float, default=600.0, help="seconds per call (0: no limit)"
    )
    group.add_argument(
        "--media-host",
        default="127.0.0.1",
        help="the address WebRTC media uses (loopback unless you call from another machine)",
    )
    group.add_argument(
        "--dual-pc-only",
        action="store_true",
        help="refuse /rtc/v1 so clients fall back to two peer connections",
    )
    group.add_argument(
        "--join-timeout",
        type=float,
        default=60.0,
        help="a call whose caller has not connected after this many seconds fails (0: never)",
    )
    group.add_argument(
        "--record-delay",
        type=float,
        default=2.0,
        help="seconds from a call's end until its transcript, summary and costs are written",
    )
    group.add_argument(
        "--max-calls-per-day",
        type=int,
        default=1000,
        help="the account's daily call cap, as GET /v1/usage shows it (0: no cap)",
    )
    group.add_argument(
        "--webhook-url",
        default=None,
        help="POST call events (call.started, call.ended, ...) to this URL",
    )


def _run_emulator(args: argparse.Namespace) -> None:
    _need_emulator_extra()
    from .serving import Served, serve_together

    emulator = _build_emulator(args)
    served = Served(emulator, _listen(args.host, args.port, "emulator"))
    emulator.bind(served.url)
    print(f"OneInbox emulator on {emulator.base_url} (voice server {emulator.server_url})")
    print("Point your app at it with:")
    print(f"  ONEINBOX_BASE_URL={emulator.base_url}")
    print(f"  ONEINBOX_API_KEY={emulator.api_key}")
    print(f"  ONEINBOX_AGENT_ID={args.agent_id}")
    if args.webhook_url:
        print(f"Call events are POSTed to {_shown(args.webhook_url)}")
    print("Press Ctrl-C to stop.", flush=True)
    asyncio.run(serve_together(served))


def _run_demo(args: argparse.Namespace) -> None:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        _fail("the demo needs uvicorn: pip install 'oneinbox-asgi[emulator]'")
    from .demo import DemoConfig, build_demo_app
    from .serving import Served, serve_together

    api_key = os.environ.get("ONEINBOX_API_KEY", "")
    others: list[Served] = []
    site_socket = _listen(args.host, args.port, "demo site")
    if api_key:
        agent_id = os.environ.get("ONEINBOX_AGENT_ID", "")
        if not agent_id:
            _fail("ONEINBOX_API_KEY is set, so the demo uses OneInbox: set ONEINBOX_AGENT_ID too")
        if args.webhook_url:
            _fail(
                "--webhook-url is for the local emulator; with ONEINBOX_API_KEY set, "
                "configure webhooks at OneInbox"
            )
        config = DemoConfig(api_key=api_key, agent_id=agent_id, backend="OneInbox")
        backend_line = f"OneInbox ({os.environ.get('ONEINBOX_BASE_URL') or 'api.oneinbox.ai'})"
    else:
        _need_emulator_extra()
        if not args.webhook_url:  # the emulator tells the demo's broker of every call's end
            from .serving import url_of

            args.webhook_url = f"{url_of(site_socket)}/oneinbox/webhook"
        emulator = _build_emulator(args)
        others.append(Served(emulator, _listen(args.host, args.emulator_port, "emulator")))
        emulator.bind(others[0].url)
        config = DemoConfig(
            api_key=emulator.api_key,
            agent_id=args.agent_id,
            base_url=emulator.base_url,
            backend="the local OneInbox emulator",
        )
        backend_line = f"the local OneInbox emulator at {emulator.base_url}"
    site = Served(build_demo_app(config), site_socket)
    print(f"oneinbox-asgi demo: open {site.url}/")
    print(f"  calls go to {backend_line}")
    if args.webhook_url:
        print(f"  call events are POSTed to {_shown(args.webhook_url)}")
    print("Press Ctrl-C to stop.", flush=True)
    asyncio.run(serve_together(site, *others))


def main(argv: Sequence[str] | None = None, *, package: str = "oneinbox_asgi") -> None:
    """Parse ``argv`` and run the command; ``package`` is what ``python -m`` was given."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {package}", description="oneinbox-asgi: the demo and the emulator"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the demo site with the widget")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--emulator-port", type=int, default=0, help="the emulator's port (0: any free one)"
    )
    _add_emulator_options(demo)

    emulator = commands.add_parser("emulator", help="the OneInbox emulator alone")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=7880)
    _add_emulator_options(emulator)

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            _run_demo(args)
        else:
            _run_emulator(args)
    except CommandError as exc:
        print(f"{package}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass
