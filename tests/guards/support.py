"""What the guard tests share: replica processes (tests/guards/replica.py) on one store,
and a burst of start-calls through a disruption of the store (a failover, a restart)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest

from oneinbox_emulator.api import EmulatorAPI

from ..support import AGENT_ID, API_KEY, END, START, creates, error_code, stop_process
from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")

#: The replica's environment variable for each scope's cap.
CAP_VARIABLES = {
    "caller": "REPLICA_MAX_CONCURRENT_CALLS",
    "tenant": "REPLICA_TENANT_MAX_CONCURRENT_CALLS",
    "global": "REPLICA_GLOBAL_MAX_CONCURRENT_CALLS",
}


def replica_env(upstream: str, store: str, caps: Mapping[str, int]) -> dict[str, str]:
    """A replica's environment: this one's, less proxies, with the test key and agent, the
    fake OneInbox at ``upstream``, the shared ``store``, and ``caps`` by scope (``caller``,
    ``tenant``, ``global``; a scope left out has no cap)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    for variable in CAP_VARIABLES.values():
        env.pop(variable, None)
    env.update(
        ONEINBOX_API_KEY=API_KEY,
        ONEINBOX_AGENT_ID=AGENT_ID,
        ONEINBOX_BASE_URL=upstream,
        ONEINBOX_REDIS_URL=store,
        PYTHONPATH=str(ROOT),
    )
    env.update({CAP_VARIABLES[scope]: str(most) for scope, most in caps.items()})
    return env


@contextmanager
def replicas(
    env: dict[str, str], logs: Sequence[Path], timeout: float = 15.0
) -> Iterator[list[str]]:
    """One uvicorn process running tests/guards/replica.py per log file, started together;
    yields their base URLs. Each one's stderr (warnings such as "limits unavailable") goes
    to its log."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for log in logs:
            with log.open("wb") as sink:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tests.guards.replica"],
                        cwd=ROOT,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=sink,
                    )
                )
        deadline = time.monotonic() + timeout
        urls = [
            _port_line(process, log, deadline) for process, log in zip(processes, logs, strict=True)
        ]
        yield urls
    finally:
        for process in processes:  # all told at once, then each waited for
            process.terminate()
        for process in processes:
            stop_process(process)


def _port_line(process: subprocess.Popen[bytes], log: Path, deadline: float) -> str:
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            raise RuntimeError(f"replica did not start: {log.read_text()[-2000:]}")
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if ready:
            line += process.stdout.read1(256)  # type: ignore[attr-defined]
    assert line.startswith(b"PORT "), line
    return f"http://127.0.0.1:{int(line.split()[1])}"


def warm(urls: Sequence[str]) -> None:
    """A call started and ended on each replica: first requests pay for lazy imports and
    connections, which would otherwise spread a burst out."""
    with httpx.Client(trust_env=False, timeout=10) as client:
        for url in urls:
            headers = {"x-user": "warm-up"}
            started = client.post(url + START, json={}, headers=headers)
            assert started.status_code == 201, started.text
            token = started.json()["end_token"]
            ended = client.post(url + END, json={"end_token": token}, headers=headers)
            assert ended.status_code == 200, ended.text


@asynccontextmanager
async def clients_of(urls: Sequence[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """A client of each replica (room for 100 requests at once, no proxies)."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url,
                    limits=httpx.Limits(max_connections=100),
                    trust_env=False,
                    timeout=10,
                )
            )
            for url in urls
        ]


def answer(response: httpx.Response) -> tuple[int, str]:
    """(status, ``created`` for start-call's 201, ``ended`` for end-call's 200, or the
    contract error's code)."""
    if response.is_success:
        return response.status_code, "created" if response.status_code == 201 else "ended"
    return response.status_code, error_code(response)


def restart(node: RedisServer, down: float = 0.5) -> None:
    """Kill ``node``, and start it again ``down`` seconds later (same port)."""
    node.kill()
    time.sleep(down)
    node.start()


# -- a burst through a disruption ------------------------------------------------------

BURST = 160
SPACING = 0.025  # seconds between starts: the burst spans 4 s, past the failover
RECOVERY_BOUND = 10.0
#: How long an end-call refused during a disruption is sent again: past the recovery, and
#: past the 11 s that a stop claimed just before the store failed stays claimed
#: (end-call answers 503 upstream_busy meanwhile).
END_BOUND = 15.0
FAILED_CLOSED = (503, "limits_unavailable")

# redis-py drops some connections without closing them when a failure lands mid-command
# (the cluster client re-reading the topology, a Sentinel query cut by the deadline): the
# tests collect them (gc.collect()) before they end, so they warn here, not in a later test.
LEAKS_UNDER_FAILURE = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


@dataclass(frozen=True)
class Burst:
    """Who sends each start-call of a burst, and what the capped scope answers when full.

    ``sender(i)`` names the key start-call ``i`` counts against at the capped scope (a
    caller, a tenant) and gives its headers; ``refusal`` is that scope's (status, code) at
    its cap; ``probe``, the headers of a newcomer with room, sent after the disruption until
    served. ``hold``: None keeps every call created (each key must then still be full after
    the burst: nothing was forgotten); seconds: each call is ended that long after it was
    created, through the next client (sent again while refused, up to END_BOUND), so the
    cap fills again and again, before the disruption and after it."""

    sender: Callable[[int], tuple[str, dict[str, str]]]
    refusal: tuple[int, str]
    probe: dict[str, str]
    hold: float | None = None
    starts: int = BURST
    spacing: float = SPACING


@dataclass
class Outcome:
    """What a burst was answered."""

    #: (status, code) of every start-call of the burst.
    tally: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: (status, code) of every end-call (with ``hold``; one refused is sent again).
    ends: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: Calls whose end-call was refused until END_BOUND.
    unended: int = 0
    #: 201s per key.
    created: dict[str, int] = field(default_factory=dict)
    #: The most calls of each key live at once as the answers show: created (201 read) and
    #: not yet being ended (end-call not yet sent). Never more than were live in truth.
    most_live: dict[str, int] = field(default_factory=dict)
    #: Seconds from the disruption's start until every client served start-call for good
    #: (the first answer not 503 after the last 503).
    recovered: float = 0.0
    #: Calls created for the newcomer (one per client).
    probes: int = 0

    def __str__(self) -> str:
        ends = f", ends {dict(self.ends)}" if self.ends else ""
        return f"{dict(self.tally)}{ends}, recovered in {self.recovered:.2f} s"


def most_at_once(changes: list[tuple[float, int, str]]) -> dict[str, int]:
    """The most calls live at once per key from (when, +1 created or -1 ending, key); an
    end counts before a start at the same instant."""
    live: Counter[str] = Counter()
    most: dict[str, int] = {}
    for _, step, key in sorted(changes):
        live[key] += step
        most[key] = max(most.get(key, 0), live[key])
    return most


async def burst_through(
    clients: Sequence[httpx.AsyncClient],
    disrupt: Callable[[], None],
    burst: Burst,
    at: float = 0.3,
) -> Outcome:
    """``burst.starts`` start-calls spread over the burst (start-call ``i`` through client
    ``i`` mod n), ``disrupt`` run (in a thread) ``at`` seconds in; then, through each client
    in turn, start-calls by the newcomer until one is created (and ended)."""
    outcome = Outcome()
    answered: list[tuple[float, int]] = []  # (when, status)
    created: Counter[str] = Counter()
    changes: list[tuple[float, int, str]] = []
    full: dict[str, dict[str, str]] = {}  # each key's headers, to see it is still full
    disrupted = float("inf")

    async def one(i: int) -> None:
        await anyio.sleep(i * burst.spacing)
        key, headers = burst.sender(i)
        try:
            response = await clients[i % len(clients)].post(START, json={}, headers=headers)
        except BaseException as exc:  # a task group would hide a cancelled request
            outcome.tally[(0, type(exc).__name__)] += 1
            raise
        now = time.monotonic()
        outcome.tally[answer(response)] += 1
        answered.append((now, response.status_code))
        if response.status_code != 201:
            return
        created[key] += 1
        full[key] = headers
        changes.append((now, 1, key))
        if burst.hold is None:
            return
        await anyio.sleep(burst.hold)
        changes.append((time.monotonic(), -1, key))  # live no longer, as far as we know
        token = response.json()["end_token"]
        ender = clients[(i + 1) % len(clients)]
        first = time.monotonic()
        for _ in range(int(END_BOUND / 0.1) + 1):  # sent again until the store is back
            ended = await ender.post(END, json={"end_token": token}, headers=headers)
            outcome.ends[answer(ended)] += 1
            if ended.is_success:
                return
            if time.monotonic() - first > END_BOUND:
                break
            await anyio.sleep(0.1)
        outcome.unended += 1

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            for i in range(burst.starts):
                tasks.start_soon(one, i)
            await anyio.sleep(at)
            disrupted = time.monotonic()
            await anyio.to_thread.run_sync(disrupt)
    # recovers by itself: every client serves a newcomer again within a bounded time
    for client in clients:
        for _ in range(int(RECOVERY_BOUND / 0.1) + 1):
            response = await client.post(START, json={}, headers=burst.probe)
            answered.append((time.monotonic(), response.status_code))
            if response.status_code == 201:
                break
            assert answer(response) == FAILED_CLOSED, response.text
            assert time.monotonic() - disrupted < RECOVERY_BOUND, "did not recover"
            await anyio.sleep(0.1)
        else:
            raise AssertionError("did not recover")
        outcome.probes += 1
        token = response.json()["end_token"]
        ended = await client.post(END, json={"end_token": token}, headers=burst.probe)
        assert ended.status_code == 200, ended.text
    if burst.hold is None:  # every key still full: nothing was forgotten by the disruption
        for key, headers in sorted(full.items()):
            for client in clients:
                again = await client.post(START, json={}, headers=headers)
                assert answer(again) == burst.refusal, (key, again.text)
    outcome.created = dict(created)
    outcome.most_live = most_at_once(changes)
    last_503 = max((when for when, status in answered if status == 503), default=disrupted)
    served = min(when for when, status in answered if status != 503 and when > last_503)
    outcome.recovered = served - disrupted
    return outcome


def assert_failed_closed(outcome: Outcome, burst: Burst, cap: int, oneinbox: EmulatorAPI) -> None:
    """Only 201, the scope's refusal and 503 ``limits_unavailable`` (some of those); no key
    ever over ``cap``; nothing upstream but the calls created; recovered in time."""
    assert set(outcome.tally) <= {(201, "created"), burst.refusal, FAILED_CLOSED}, outcome.tally
    assert outcome.tally.total() == burst.starts
    assert outcome.tally[FAILED_CLOSED] > 0  # the failure did land inside the burst
    assert set(outcome.ends) <= {(200, "ended"), FAILED_CLOSED, (503, "upstream_busy")}, (
        outcome.ends
    )
    assert outcome.unended == 0
    assert all(most <= cap for most in outcome.most_live.values()), outcome.most_live
    assert creates(oneinbox) == outcome.tally[(201, "created")] + outcome.probes
    assert outcome.recovered < RECOVERY_BOUND
