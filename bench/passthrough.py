"""Section 1: what the middleware costs every other request of the host app.

The same Starlette app (``/json``, ``/text``) bare, wrapped by ``OneInboxMiddleware``,
and wrapped by a ``BaseHTTPMiddleware`` doing the same prefix check; measured in-process
(``bench.inprocess``, in its own pinned process) and over HTTP (uvicorn on core 1, wrk
on core 0). Rounds interleave the variants; each variant's best round is its result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from . import loadgen, procs
from .report import Row, Section, table
from .settings import Settings

VARIANTS = {
    "bare": "bare Starlette app",
    "forward": "wrapped by a do-nothing pure-ASGI middleware (the cost of any layer)",
    "oneinbox": "wrapped by OneInboxMiddleware",
    "basehttp": "wrapped by BaseHTTPMiddleware (same check)",
}
ROUTES = {"/json": "JSON route", "/text": "plain-text route"}
IN_PROCESS_TARGET = 0.95
HTTP_TARGET = 0.97


@dataclass
class Cell:
    rps: float
    cpu: str
    cpu_us: float
    """The server's CPU µs per request."""


def _median_paired(values: list[float], bare: list[float]) -> float:
    ratios = sorted(v / b for v, b in zip(values, bare, strict=True))
    return ratios[len(ratios) // 2]


def _rows(kind: str, rounds: dict[str, dict[str, list[float]]], target: float) -> list[Row]:
    """Value: each variant's best round. Ratio: the median of per-round ratios to bare.

    Each round measures the variants back to back, so a round's ratio compares runs
    made under the same conditions; its median over rounds is what the verdict uses.
    The ratio of best rounds, which one lucky round can move, is in the detail table.
    """
    rows: list[Row] = []
    for path, label in ROUTES.items():
        by = rounds[path]
        rows.append(Row(f"{kind}, {label}: bare app", f"{max(by['bare']):,.0f} req/s", "1.00"))
        for variant in ("forward", "oneinbox", "basehttp"):
            value = max(by[variant])
            ratio = _median_paired(by[variant], by["bare"])
            if variant == "oneinbox":
                rows.append(
                    Row(
                        f"{kind}, {label}: OneInboxMiddleware",
                        f"{value:,.0f} req/s",
                        f"{ratio:.3f}",
                        f"≥ {target:.2f}x bare",
                        ratio >= target,
                    )
                )
            else:
                name = "a do-nothing middleware" if variant == "forward" else "BaseHTTPMiddleware"
                rows.append(
                    Row(
                        f"{kind}, {label}: {name} (for contrast)",
                        f"{value:,.0f} req/s",
                        f"{ratio:.3f}",
                    )
                )
    return rows


def in_process(settings: Settings) -> Section:
    """``bench.inprocess`` in a few fresh processes, pinned: their rounds are pooled.

    One process's numbers carry its own memory layout (a few percent either way for a
    15 µs request); several processes average that out. Rounds stay paired within each.
    """
    argv = [
        sys.executable,
        "-m",
        "bench.inprocess",
        "--rounds",
        str(settings.inproc_rounds),
        "--round-seconds",
        str(settings.inproc_round_seconds),
    ]
    cpus = procs.server_side()

    def pin() -> None:
        if cpus:
            import os

            os.sched_setaffinity(0, cpus)

    rounds: dict[str, dict[str, list[float]]] = {}
    data: dict[str, Any] = {}
    for _ in range(settings.inproc_processes):
        run = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            preexec_fn=pin,
            env=procs.python_env(),
            cwd=procs.ROOT,
        )
        if run.returncode != 0:
            raise RuntimeError(f"bench.inprocess failed:\n{run.stderr[-3000:]}")
        data = json.loads(run.stdout)
        for path, by in data["rps"].items():
            for variant, values in by.items():
                rounds.setdefault(path, {}).setdefault(variant, []).extend(values)
    best = {path: {v: max(values) for v, values in by.items()} for path, by in rounds.items()}
    section = Section("Pass-through, in-process", data={"rounds": rounds})
    section.rows = _rows("in-process", rounds, IN_PROCESS_TARGET)
    detail = [
        [
            f"`{path}`",
            VARIANTS[variant],
            f"{max(values):,.0f}",
            f"{sorted(values)[len(values) // 2]:,.0f}",
            f"{max(values) / best[path]['bare']:.3f}",
            f"{_median_paired(values, by['bare']):.3f}",
        ]
        for path, by in rounds.items()
        for variant, values in by.items()
    ]
    section.details.append(
        f"{settings.inproc_processes} fresh processes x {data['rounds']} rounds of "
        f"~{data['round_seconds'] * 1000:.0f} ms per variant and route, interleaved back to "
        "back, uvloop, pinned; the ASGI app called directly. The verdict uses the last "
        "column, the median over rounds of each round's own ratio to bare: a round "
        "measures the variants back to back under the same conditions, and no single "
        "lucky round can move a median. On a shared machine whole rounds run at half "
        "speed (compare best and median req/s), which is why a ratio of best rounds "
        "(the column before) wanders by a few percent.\n\n"
        + table(
            [
                "route",
                "variant",
                "best req/s",
                "median req/s",
                "best vs bare",
                "median of round ratios",
            ],
            detail,
        )
    )
    return section


def over_http(settings: Settings) -> Section:
    section = Section("Pass-through, over HTTP")
    log_dir = settings.out / "logs"
    with procs.Group(log_dir) as group:
        servers = {
            variant: group.start(
                procs.python_server(
                    f"passthrough-{variant}", f"passthrough-{variant}", procs.server_side()
                )
            )
            for variant in VARIANTS
        }
        for server in servers.values() if settings.warm_up else ():  # warm up each server
            loadgen.wrk(
                server.url + "/text",
                connections=settings.http_connections,
                duration=1,
                watch={},
                log_dir=log_dir,
            )
        cells: dict[str, dict[str, list[Cell]]] = {p: {v: [] for v in VARIANTS} for p in ROUTES}
        order = list(VARIANTS)
        for number in range(settings.http_rounds):
            for path in ROUTES:
                for variant in order if number % 2 == 0 else order[::-1]:
                    server = servers[variant]
                    result = loadgen.wrk(
                        server.url + path,
                        connections=settings.http_connections,
                        duration=settings.http_seconds,
                        watch={"server": server.pid},
                        log_dir=log_dir,
                    )
                    if result.error_count:
                        raise RuntimeError(f"{variant} {path}: wrk errors {result.errors}")
                    cpu = (
                        f"server {result.cpu['server']:.2f}, wrk {result.cpu['wrk']:.2f}, "
                        f"others {result.others_cores_busy:.2f}, stolen {result.stolen_cores:.2f}"
                    )
                    cpu_us = result.cpu["server"] * result.duration_s / max(result.requests, 1)
                    cells[path][variant].append(Cell(result.rps, cpu, cpu_us * 1e6))
    best = {p: {v: max(c.rps for c in cs) for v, cs in by.items()} for p, by in cells.items()}
    rates = {p: {v: [c.rps for c in cs] for v, cs in by.items()} for p, by in cells.items()}
    section.data = {
        "rates": rates,
        "cpu_us": {
            p: {v: [c.cpu_us for c in cs] for v, cs in by.items()} for p, by in cells.items()
        },
    }
    section.rows = _rows("HTTP", rates, HTTP_TARGET)
    detail: list[list[str]] = []
    for path, by in cells.items():
        for variant, runs in by.items():
            top = max(runs, key=lambda c: c.rps)
            cpu_us = sorted(c.cpu_us for c in runs)[len(runs) // 2]
            detail.append(
                [
                    f"`{path}`",
                    VARIANTS[variant],
                    f"{top.rps:,.0f}",
                    ", ".join(f"{c.rps:,.0f}" for c in runs),
                    f"{top.rps / best[path]['bare']:.3f}",
                    f"{_median_paired(rates[path][variant], rates[path]['bare']):.3f}",
                    f"{cpu_us:.1f}",
                    top.cpu,
                ]
            )
    section.details.append(
        f"uvicorn (uvloop, httptools) pinned to one core, wrk -t1 -c{settings.http_connections} "
        f"on the other; {settings.http_rounds} rounds of {settings.http_seconds} s, "
        "interleaved back to back; the verdict uses the median of the rounds' own ratios "
        "to bare (see the in-process note). The server's CPU time per request, which "
        "other work on the machine moves less than req/s, is given too.\n\n"
        + table(
            [
                "route",
                "variant",
                "best req/s",
                "all rounds",
                "best vs bare",
                "median of round ratios",
                "server CPU µs/req (median)",
                "CPU (cores), best round",
            ],
            detail,
        )
    )
    return section
