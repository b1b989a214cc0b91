"""Serve one bench app with uvicorn (uvloop + httptools) on 127.0.0.1, in this process.

    python -m bench.servers VARIANT --port N [--upstream URL] [--redis URL]

One process per server, so the load generator, the fake upstream and the server under
test can be pinned to different cores and their CPU use read from /proc separately.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import uvicorn

from . import apps
from .fake_oneinbox import FakeOneInbox

BROKERS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "upstream": lambda args: FakeOneInbox(),
    "oneinbox": lambda args: apps.broker_oneinbox(args.upstream),
    "oneinbox-redis": lambda args: apps.broker_oneinbox(args.upstream, store=args.redis),
    "oneinbox-sentinel": lambda args: apps.broker_oneinbox(args.upstream, store=args.redis),
    "oneinbox-cluster": lambda args: apps.broker_oneinbox(args.upstream, store=args.redis),
    "oneinbox-httpx": lambda args: apps.broker_oneinbox_httpx(args.upstream),
    "fastapi-naive": lambda args: apps.fastapi_naive(args.upstream),
    "fastapi-shared-httpx": lambda args: apps.fastapi_shared_httpx(args.upstream),
    "raw-ceiling": lambda args: apps.raw_ceiling(args.upstream),
    "widget-page": lambda args: apps.widget_page(args.upstream),
}


def _passthrough(factory: Callable[[], Any]) -> Callable[[argparse.Namespace], Any]:
    return lambda args: factory()


VARIANTS: dict[str, Callable[[argparse.Namespace], Any]] = {
    **{f"passthrough-{name}": _passthrough(f) for name, f in apps.PASSTHROUGH.items()},
    **BROKERS,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="http://127.0.0.1:9")
    parser.add_argument("--redis", default=None)
    args = parser.parse_args(argv)
    app = VARIANTS[args.variant](args)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=4096,
        # An API behind a load balancer keeps idle connections about a minute (uvicorn's
        # default is 5 s): pooled clients should not have to reconnect between runs.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
