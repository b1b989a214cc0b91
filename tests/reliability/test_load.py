"""Load: N start-calls at concurrency 200 through a broker process over loopback.

0 unexpected errors, and the broker's memory stays flat. CI runs a quick size;
``ONEINBOX_LOAD_CALLS=20000 scripts/test tests/reliability/test_load.py`` runs the full one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from ..support import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
CALLS = int(os.environ.get("ONEINBOX_LOAD_CALLS", "2000"))
CONCURRENCY = 200
WARMUP = 1000


@contextmanager
def uvicorn_process(target: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    port = free_port()
    factory = ["--factory"] if target.endswith(":broker") else []
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            *factory,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{target} did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        stop_process(process)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hammer(url: str, calls: int, deadline: float) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    queue = iter(range(calls))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for _ in queue:
                if time.monotonic() > deadline:
                    outcomes["out of time"] += 1
                    continue
                try:
                    async with session.post(url + "/oneinbox/start-call", json={}) as response:
                        body = await response.json(content_type=None)
                        if response.status == 201 and body.get("participant_token"):
                            outcomes["201"] += 1
                        else:
                            outcomes[f"{response.status} {body}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcomes[type(exc).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return outcomes


@pytest.mark.slow
def test_load_has_no_unexpected_errors_and_flat_memory() -> None:
    with uvicorn_process("tests.reliability.load_apps:upstream") as (upstream_url, _):
        env = {"ONEINBOX_BASE_URL": upstream_url}
        with uvicorn_process("tests.reliability.load_apps:broker", env) as (url, pid):
            deadline = time.monotonic() + 240
            warm = asyncio.run(hammer(url, WARMUP, deadline))
            assert warm == Counter({"201": WARMUP}), warm
            before = rss_kib(pid)
            began = time.monotonic()
            outcomes = asyncio.run(hammer(url, CALLS, deadline))
            elapsed = time.monotonic() - began
            after = rss_kib(pid)
    growth_mib = (after - before) / 1024
    print(
        f"\nload: {CALLS} start-calls at c={CONCURRENCY} in {elapsed:.1f} s "
        f"({CALLS / elapsed:.0f}/s); broker RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB "
        f"(+{growth_mib:.1f} MiB)"
    )
    assert outcomes == Counter({"201": CALLS}), outcomes
    assert growth_mib < 20
