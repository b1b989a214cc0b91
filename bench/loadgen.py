"""The load generator: Debian's ``wrk`` in its own process, with CPU accounting around it.

Each run is bounded in time (``-d``) and, for the memory run, in count. While it runs,
the CPU time of every watched process (server under test, fake upstream, Redis) and of
wrk itself is read from /proc, and the machine's total, so each row can say which
process was the bottleneck and how busy the rest of the machine was.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import procs

LUA = Path(__file__).resolve().parent / "lua"
WRK_TIMEOUT_S = 30  # longer than any cell: a slow variant's requests count, never time out


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_version() -> str:
    if not wrk_available():
        return "not installed"
    run = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    first = (run.stdout + run.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "unknown"


@dataclass
class LoadResult:
    """One wrk run: throughput, latency (ms), errors, and CPU (cores) per process."""

    connections: int
    requests: int
    duration_s: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    cpu: dict[str, float] = field(default_factory=dict)
    machine_cores_busy: float = 0.0
    others_cores_busy: float = 0.0
    stolen_cores: float = 0.0

    @property
    def rps(self) -> float:
        """Completed requests per second, or by Little's law when too few completed.

        A closed loop of ``c`` connections against a server that takes seconds per
        request completes its first wave only after ``c / throughput``: counting
        completions in a short window would understate it. Then ``c / mean latency``
        (Little's law, exact for a closed loop without think time) is used instead.
        """
        if self.ramp_dominated and self.mean_ms > 0:
            return self.connections / (self.mean_ms / 1000)
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def ramp_dominated(self) -> bool:
        return self.requests < 4 * self.connections

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "ramp_dominated": self.ramp_dominated,
            "mean_ms": self.mean_ms,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "errors": self.errors,
            "cpu": {k: round(v, 3) for k, v in self.cpu.items()},
            "machine_cores_busy": round(self.machine_cores_busy, 3),
            "others_cores_busy": round(self.others_cores_busy, 3),
            "stolen_cores": round(self.stolen_cores, 3),
        }


def wrk(
    url: str,
    *,
    connections: int,
    duration: float,
    watch: Mapping[str, int],
    args: Mapping[str, str | int] | None = None,
    limit: int | None = None,
    log_dir: Path,
) -> LoadResult:
    """Run wrk (one thread, pinned to the load side) against ``url`` and account for it."""
    script = LUA / "load.lua"
    options = dict(args or {})
    if limit is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        script = log_dir / "count.lua"
        script.write_text((LUA / "load.lua").read_text() + (LUA / "count.lua").read_text())
        options["limit"] = limit
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(round(duration), 1)}s",  # wrk takes whole seconds
        f"--timeout={WRK_TIMEOUT_S}s",
        "-s",
        str(script),
        url,
        "--",
        *(f"{key}={value}" for key, value in options.items()),
    ]
    cpus = procs.load_side()

    def pin() -> None:
        if cpus:
            import os

            os.sched_setaffinity(0, cpus)

    before = {name: procs.cpu_seconds(pid) for name, pid in watch.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, stolen_before = procs.machine_seconds()
    started = time.monotonic()
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=pin,
        env=procs.python_env(),
    ) as wrk_process:
        assert wrk_process.stdout is not None and wrk_process.stderr is not None
        lines: list[str] = []
        timer = threading.Timer(duration + WRK_TIMEOUT_S + 30, wrk_process.kill)
        timer.start()
        try:
            for line in wrk_process.stdout:
                lines.append(line)
                if line.startswith("WRKLIMIT"):  # the count is reached: stop wrk's sleep
                    wrk_process.send_signal(signal.SIGINT)
            stderr = wrk_process.stderr.read()
            returncode = wrk_process.wait()
        finally:
            timer.cancel()
    elapsed = time.monotonic() - started
    busy_after, stolen_after = procs.machine_seconds()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: (procs.cpu_seconds(pid) - before[name]) / elapsed for name, pid in watch.items()}
    cpu["wrk"] = (
        children_after.ru_utime
        + children_after.ru_stime
        - children_before.ru_utime
        - children_before.ru_stime
    ) / elapsed
    summary = next((ln for ln in lines if ln.startswith("WRKJSON ")), None)
    if returncode != 0 or summary is None:
        raise RuntimeError(f"wrk failed ({returncode}): {stderr.strip() or ''.join(lines)}")
    data = json.loads(summary.removeprefix("WRKJSON "))
    machine = (busy_after - busy_before) / elapsed
    return LoadResult(
        connections=connections,
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        mean_ms=data["mean_us"] / 1000,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors={k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]},
        cpu=cpu,
        machine_cores_busy=machine,
        stolen_cores=(stolen_after - stolen_before) / elapsed,
        others_cores_busy=max(0.0, machine - sum(cpu.values())),
    )
