"""Processes of the benchmark: start, pin, wait for, account (CPU and RSS from /proc), stop.

Every server listens on 127.0.0.1 only. CPU pinning: the load generator, the fake
upstream and Redis share core 0 ("the load side"); the server under test gets core 1.
On a machine with one core nothing is pinned and the table says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


_STARTED = time.monotonic()


def log(message: str) -> None:
    """Progress on stderr, with the seconds since the bench started."""
    print(f"bench [{time.monotonic() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


# The cores this run may use, read once at start: the bench pins itself to the load
# side afterwards, and what it inherits must not shrink what it hands out.
AVAILABLE = sorted(os.sched_getaffinity(0))


def cores() -> int:
    return len(AVAILABLE)


def load_side() -> set[int] | None:
    """Cores for the load generator, the fake upstream and Redis (None: do not pin)."""
    return {AVAILABLE[0]} if len(AVAILABLE) >= 2 else None


def server_side() -> set[int] | None:
    """Cores for the server under test (None: do not pin)."""
    return {AVAILABLE[1]} if len(AVAILABLE) >= 2 else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    # after the ")" field 0 is the state (field 3 of proc(5)); utime, stime are 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


def machine_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine since boot, from /proc/stat.

    ``busy`` counts every process of this machine, including those of other users that
    this process cannot see; ``stolen`` is time the hypervisor gave to other machines.
    """
    with open("/proc/stat", "rb") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = values[:7]
    steal = values[7] if len(values) > 7 else 0
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return one, five, fifteen


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


@dataclass
class Proc:
    """One child process, optionally pinned to ``cpus``; killed by its own pid only."""

    name: str
    argv: Sequence[str]
    cpus: set[int] | None = None
    port: int | None = None
    cwd: Path = ROOT
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log: Path | None = None

    def start(self, log_dir: Path) -> Proc:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / f"{self.name}.log"
        cpus = self.cpus

        def pin() -> None:  # runs in the child before exec, so every thread inherits it
            if cpus:
                os.sched_setaffinity(0, cpus)

        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env=self.env or python_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=pin,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the port accepts connections (bounded); raise with the log if not."""
        assert self.port is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex((HOST, self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port} in {timeout:g} s")

    def settle(
        self, *, idle_below: float = 0.1, window: float = 0.2, timeout: float = 20.0
    ) -> float:
        """Wait (bounded) until the process is nearly idle: work left by a finished load run.

        Returns the seconds waited. A load generator that stops leaves requests in
        flight; a slow server keeps working on them and would steal from the next run.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout and self.alive():
            before = cpu_seconds(self.pid)
            time.sleep(window)
            if (cpu_seconds(self.pid) - before) / window < idle_below:
                break
        return time.monotonic() - started

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)


def python_server(name: str, variant: str, cpus: set[int] | None, **options: str) -> Proc:
    """A uvicorn server (uvloop, httptools) for one bench app variant, in its own process."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.servers", variant, "--port", str(port)]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", value]
    return Proc(name=name, argv=argv, cpus=cpus, port=port)


class Group(contextlib.ExitStack):
    """Starts processes and stops every one of them (only those) on exit."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, proc: Proc, *, ready: bool = True, timeout: float = 30.0) -> Proc:
        proc.start(self.log_dir)
        self.procs.append(proc)
        self.callback(proc.stop)
        if ready and proc.port is not None:
            proc.wait_ready(timeout)
        return proc
