"""``python -m oneinbox_asgi pause | resume | usage``: the kill switch and today's usage,
on the store every service shares (``--store`` or ``ONEINBOX_REDIS_URL``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .config import REDIS_URL_ENV, open_store
from .errors import ConfigurationError
from .guards.switch import KillSwitch
from .stores.base import BudgetStore, Usage
from .upstream import DEFAULT_BASE_URL, OneInboxClient

COMMANDS = ("pause", "resume", "usage")


def _scope_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every service, every caller")
    which.add_argument("--tenant", help="one tenant (what the tenant hook names)")
    which.add_argument("--agent", help="one OneInbox agent id")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The kill switch and today's usage, for every service sharing the store.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", default=os.environ.get(REDIS_URL_ENV), help=f"the store (env {REDIS_URL_ENV})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    pause = commands.add_parser(
        "pause", parents=[common], help="refuse new calls (503 calls_paused)"
    )
    _scope_options(pause)
    pause.add_argument(
        "--stop-live",
        action="store_true",
        help="also stop the live calls there at OneInbox (needs ONEINBOX_API_KEY)",
    )
    resume = commands.add_parser("resume", parents=[common], help="allow new calls again")
    _scope_options(resume)
    usage = commands.add_parser(
        "usage", parents=[common], help="calls live, today's calls and minutes, remaining"
    )
    usage.add_argument("--tenant", action="append", default=[], help="also this tenant")
    usage.add_argument("--caller", action="append", default=[], help="also this limit key")
    usage.add_argument("--json", action="store_true", help="one JSON object")
    return parser


def main(argv: Sequence[str], *, prog: str = "python -m oneinbox_asgi") -> None:
    args = _parser(prog).parse_args(argv)
    if not args.store or args.store == "memory":
        _fail(
            prog,
            f"the kill switch acts on the store the services share: set {REDIS_URL_ENV} "
            "or pass --store redis://…",
        )
    try:
        asyncio.run(_run(args))
    except ConfigurationError as exc:
        _fail(prog, str(exc))
    except Exception as exc:  # a store or OneInbox that fails: said, not a traceback
        _fail(prog, f"{type(exc).__name__}: {exc}")


def _fail(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr)
    raise SystemExit(2)


async def _run(args: argparse.Namespace) -> None:
    store, _ = open_store(args.store)
    upstream = None
    try:
        if not isinstance(store, BudgetStore):
            raise ConfigurationError("that store keeps no kill switch")
        if getattr(args, "stop_live", False):
            key = os.environ.get("ONEINBOX_API_KEY")
            if not key:
                raise ConfigurationError("--stop-live needs ONEINBOX_API_KEY")
            upstream = OneInboxClient(
                api_key=key, base_url=os.environ.get("ONEINBOX_BASE_URL") or DEFAULT_BASE_URL
            )
        switch = KillSwitch(store, upstream=upstream)
        if args.command in ("pause", "resume"):
            scope = {"everyone": args.all, "tenant": args.tenant, "agent": args.agent}
            if args.command == "resume":
                await switch.resume(**scope)
                print(f"resumed: {_named(args)}; paused now: {await switch.paused() or 'nothing'}")
                return
            stopped = await switch.pause(**scope, stop_live=args.stop_live)
            print(f"paused: {_named(args)}")
            if args.stop_live:
                print(f"stopped {stopped.stopped} live calls at OneInbox", end="")
                print(f"; could not stop {', '.join(stopped.failed)}" if stopped.failed else "")
            return
        report: dict[str, Any] = {"paused": await switch.paused(), "scopes": {}}
        scopes = [("global", "all")] + [("tenant", t) for t in args.tenant]
        scopes += [("caller", c) for c in args.caller]
        for scope, name in scopes:
            report["scopes"][f"{scope}:{name}"] = _as_dict(await switch.usage(scope, name))
        print(json.dumps(report, indent=2) if args.json else _table(report))
    finally:
        if upstream is not None:
            await upstream.aclose()
        await store.aclose()


def _named(args: argparse.Namespace) -> str:
    if args.all:
        return "every call"
    return f"tenant {args.tenant}" if args.tenant else f"agent {args.agent}"


def _as_dict(usage: Usage) -> dict[str, Any]:
    minutes = usage.milliseconds / 60_000
    return {
        "live": usage.live,
        "calls_today": usage.calls,
        "minutes_today": round(minutes, 2),
        "calls_remaining": None
        if usage.calls_per_day is None
        else max(usage.calls_per_day - usage.calls, 0),
        "minutes_remaining": None
        if usage.minutes_per_day is None
        else round(max(usage.minutes_per_day - minutes, 0.0), 2),
    }


def _table(report: dict[str, Any]) -> str:
    lines = [f"paused: {', '.join(report['paused']) or 'nothing'}", ""]
    lines.append(
        f"{'scope':<28} {'live':>5} {'calls':>7} {'minutes':>9} {'calls left':>11} {'min left':>9}"
    )
    for name, row in report["scopes"].items():
        left = "-" if row["calls_remaining"] is None else str(row["calls_remaining"])
        minutes_left = "-" if row["minutes_remaining"] is None else str(row["minutes_remaining"])
        lines.append(
            f"{name[:28]:<28} {row['live']:>5} {row['calls_today']:>7} "
            f"{row['minutes_today']:>9} {left:>11} {minutes_left:>9}"
        )
    return "\n".join(lines)
