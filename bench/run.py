"""The benchmark's one command.

    python -m bench            full run (about 8 minutes); writes bench/RESULTS.md
    python -m bench --smoke    seconds; proves every part still runs, asserts nothing
                               about speed; writes bench/out/RESULTS-smoke.md

Prints the summary table (measure, value, ratio, target, pass/fail); the file has the
detail tables too. Everything talks to 127.0.0.1 only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import broker, loadgen, notes, passthrough, procs, report, weight
from .report import Row, Section
from .settings import Settings

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
PARTS = ("passthrough", "broker", "weight")

PREFACE = """
Made by `{command}` ({mode}). Ratios measured side by side in one run are the result;
absolute numbers on a shared 2-core machine are noise. See `bench/README.md` for what
each row means. Load average (1 min) at the start {load_start:.2f}, at the end
{load_end:.2f}; CPU columns say, per run, which process saturated its core and how much
other work (other users' processes, time stolen by the hypervisor) shared the machine.
"""


def _guarded(name: str, part: Callable[[], list[Section]]) -> list[Section]:
    """Run one part; a part that breaks becomes a failed row, and the others still run."""
    procs.log(f"{name}: starting")
    try:
        return part()
    except Exception as exc:
        print(f"bench: {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        failed = Section(name)
        failed.rows.append(
            Row(f"{name}: the harness itself", f"failed: {exc}"[:300], "—", "runs", False)
        )
        return [failed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="seconds, not minutes; no speed asserts"
    )
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts")
    parser.add_argument(
        "--output", type=Path, help="where to write the markdown (default: see above)"
    )
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.smoke else Settings.full()
    parts = args.only or list(PARTS)
    output = args.output or (settings.out / "RESULTS-smoke.md" if args.smoke else RESULTS)
    settings.out.mkdir(parents=True, exist_ok=True)
    if not loadgen.wrk_available():
        print("bench: wrk is missing (apt-get install wrk)", file=sys.stderr)
        return 2
    if procs.cores() < 2:
        print("bench: fewer than 2 cores: nothing is pinned; ratios are less fair", file=sys.stderr)
    os.sched_setaffinity(0, procs.load_side() or os.sched_getaffinity(0))

    started = time.monotonic()
    load_start = procs.load_average()[0]
    sections: list[Section] = []
    raw: dict[str, object] = {}
    if "passthrough" in parts:
        sections += _guarded("pass-through in-process", lambda: [passthrough.in_process(settings)])
        sections += _guarded("pass-through over HTTP", lambda: [passthrough.over_http(settings)])
    if "broker" in parts:

        def run_broker() -> list[Section]:
            variants, costs, table, memory = broker.measure(settings)
            raw["broker"] = {
                key: {str(c): [r.to_json() for r in runs] for c, runs in v.runs.items()}
                for key, v in variants.items()
            }
            raw["costs"] = costs
            return [table, memory]

        sections += _guarded("broker", run_broker)
    if "weight" in parts:
        sections += _guarded("widget weight", lambda: [weight.measure(settings)])
    if args.smoke:  # numbers from seconds-long runs say nothing: no verdicts
        for section in sections:
            for row in section.rows:
                if not row.measure.endswith("the harness itself"):
                    row.passed = None
    load_end = procs.load_average()[0]
    elapsed = time.monotonic() - started

    about = {
        "wrk": loadgen.wrk_version(),
        "express": broker.express_version(),
        "pinning": "load generator + fake upstream + Redis on core 0, server under test on core 1"
        if procs.load_side()
        else "none (one core)",
        "run time": f"{elapsed:.0f} s",
    }
    command = "python -m bench --smoke" if args.smoke else "python -m bench"
    preface = PREFACE.format(
        command=command,
        mode="smoke: tiny counts, numbers meaningless" if args.smoke else "full run",
        load_start=load_start,
        load_end=load_end,
    )
    title = "Benchmark results" + (" (smoke)" if args.smoke else "")
    text = report.document(title, sections, about, preface)
    text += notes.render(sections, raw, settings)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    (settings.out / ("raw-smoke.json" if args.smoke else "raw.json")).write_text(
        json.dumps(raw, indent=1)
    )
    print(report.summary(sections))
    print(f"\nbench: {elapsed:.0f} s; wrote {output}")
    broken = [r for s in sections for r in s.rows if r.measure.endswith("the harness itself")]
    return 1 if broken else 0
