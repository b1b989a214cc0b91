"""In-process pass-through: call each app variant's ASGI callable directly, no network.

    python -m bench.inprocess --round-seconds S --rounds R   (prints one JSON object)

A minimal ASGI driver (a fresh scope per request, a ``receive`` with an empty body, a
``send`` that keeps the status) runs the same route of each variant for about ``S``
seconds per round (a request count calibrated once per variant), on uvloop. Rounds
interleave the variants back to back, in alternating order, so a burst of load from
elsewhere hits them alike; each variant's best round is its result (load from
elsewhere only ever slows a round down).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import uvloop

from .apps import PASSTHROUGH

ROUTES = ("/json", "/text")
CLOCK = time.perf_counter


def scope_for(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench"),
            (b"accept", b"*/*"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def drive(app: Any, path: str, iterations: int) -> float:
    """Seconds for ``iterations`` requests to ``path``; checks every answer is a 200."""
    template = scope_for(path)
    request = {"type": "http.request", "body": b"", "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    gc.collect()
    started = CLOCK()
    for _ in range(iterations):
        await app(dict(template), receive, send)
    elapsed = CLOCK() - started
    if len(statuses) != iterations or set(statuses) != {200}:
        raise RuntimeError(f"{path}: unexpected answers {sorted(set(statuses))}")
    return elapsed


async def measure(round_seconds: float, rounds: int) -> dict[str, dict[str, list[float]]]:
    apps = {name: factory() for name, factory in PASSTHROUGH.items()}
    sizes: dict[tuple[str, str], int] = {}
    for path in ROUTES:  # warm up (build middleware stacks, fill caches) and calibrate
        for name, app in apps.items():
            await drive(app, path, 200)
            rate = 200 / await drive(app, path, 200)
            sizes[path, name] = max(50, round(rate * round_seconds))
    results: dict[str, dict[str, list[float]]] = {p: {n: [] for n in apps} for p in ROUTES}
    order = list(apps)
    for number in range(rounds):
        for path in ROUTES:
            # back to back, in alternating order, so each round's ratios are fair pairs
            for name in order if number % 2 == 0 else order[::-1]:
                app = apps[name]
                size = sizes[path, name]
                results[path][name].append(size / await drive(app, path, size))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("--round-seconds", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args(argv)
    results = uvloop.run(measure(args.round_seconds, args.rounds))
    print(json.dumps({"round_seconds": args.round_seconds, "rounds": args.rounds, "rps": results}))


if __name__ == "__main__":
    main()
