"""Profile one broker variant under load with py-spy: where its CPU goes per request.

    python -m bench.profile oneinbox [--connections 16] [--seconds 8] [--top 25]

Starts the fake upstream and the variant (pinned like the benchmark), loads it with
wrk, samples the server with ``py-spy record --format raw`` (py-spy must be on PATH:
``pip install py-spy``), and prints the functions with the most samples, inclusive
and self, plus the server's CPU time per request. The collapsed stacks are kept in
bench/out/profile-<variant>.txt (open them with speedscope or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import threading

from . import broker, loadgen, procs
from .settings import OUT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("variant", choices=sorted(set(broker.LABELS) - {"direct", "express"}))
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--redis", help="redis:// URL for oneinbox-redis")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy is not on PATH: pip install py-spy")
        return 2
    log_dir = OUT / "logs"
    stacks = OUT / f"profile-{args.variant}.txt"
    with procs.Group(log_dir) as group:
        upstream = group.start(procs.python_server("upstream", "upstream", procs.load_side()))
        options = {"upstream": upstream.url}
        if args.redis:
            options["redis"] = args.redis
        server = group.start(
            procs.python_server(args.variant, args.variant, procs.server_side(), **options)
        )
        variant = broker.Variant(args.variant, args.variant, proc=server)
        url, wrk_args = broker._target_args(variant)
        loadgen.wrk(
            url, connections=args.connections, duration=2, watch={}, args=wrk_args, log_dir=log_dir
        )
        spy = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(args.seconds),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(stacks),
                "--nonblocking",
                "--nolineno",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        result: list[loadgen.LoadResult] = []
        load = threading.Thread(
            target=lambda: result.append(
                loadgen.wrk(
                    url,
                    connections=args.connections,
                    duration=args.seconds + 1,
                    watch={"server": server.pid},
                    args=wrk_args,
                    log_dir=log_dir,
                )
            )
        )
        load.start()
        spy.wait(args.seconds + 60)
        load.join()
    run = result[0]
    cpu_per_request = run.cpu["server"] * run.duration_s / max(run.requests, 1) * 1e6
    print(
        f"{args.variant} c={args.connections}: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms, "
        f"server {run.cpu['server']:.2f} cores = {cpu_per_request:.0f} µs CPU per request"
    )
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames_text, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [f for f in frames_text.split(";") if f]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    print(f"\n{total} samples; inclusive share (frame: function (file:line)):")
    for frame, count in inclusive.most_common(args.top):
        print(f"{count / total:6.1%}  {frame}")
    print("\nself share:")
    for frame, count in own.most_common(args.top):
        print(f"{count / total:6.1%}  {frame}")
    print(f"\nstacks: {stacks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
