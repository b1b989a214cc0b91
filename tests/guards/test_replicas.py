"""Two uvicorn replica processes (tests/guards/replica.py) sharing one store, on one Redis,
through a Sentinel set and on a three-master Redis Cluster: each scope's cap is exact under
100 concurrent start-calls across both; the kill switch (the CLI) reaches both; a Sentinel
failover or a Cluster node restart in the middle of a burst at the tenant scope fails
closed, lets no tenant past its cap, and both recover by themselves."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest

from oneinbox_emulator.api import EmulatorAPI

from ..servers import serve
from ..support import END, START, creates, fake_oneinbox
from .redis_server import RedisServer, command
from .redis_topologies import Cluster, SentinelSet
from .support import (
    Burst,
    answer,
    assert_failed_closed,
    burst_through,
    clients_of,
    replica_env,
    replicas,
    restart,
    warm,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]


@dataclass(frozen=True)
class Capped:
    """A scope's cap, what it answers when full, and the headers of start-call ``i`` of a
    burst that only that scope stops."""

    cap: int
    refusal: tuple[int, str]
    headers: Callable[[int], dict[str, str]]


#: Distinct caps, so that an answer shows which one held.
SCOPES = {
    "caller": Capped(3, (429, "too_many_calls"), lambda i: {"x-user": "same-user"}),
    "tenant": Capped(5, (429, "tenant_busy"), lambda i: {"x-user": f"u{i}", "x-tenant": "acme"}),
    "global": Capped(7, (503, "service_busy"), lambda i: {"x-user": f"u{i}", "x-tenant": f"t{i}"}),
}
STARTS = 100
#: The session's topology fixture for each topology.
TOPOLOGIES = {"redis": "redis_server", "sentinel": "redis_sentinel", "cluster": "redis_cluster"}


@dataclass
class Deployment:
    """Two replicas on one store, the fake OneInbox they call, and their logs."""

    store: str
    urls: list[str]
    oneinbox: EmulatorAPI
    logs: list[Path]

    def tail(self) -> str:
        return "\n".join(log.read_text()[-3000:] for log in self.logs)


class Deployments:
    """Each topology's two replicas, started on first use and kept for the module."""

    def __init__(self, stack: ExitStack, directory: Path) -> None:
        self.stack = stack
        self.directory = directory
        self.oneinbox = fake_oneinbox()
        self.upstream = stack.enter_context(serve(self.oneinbox))
        self.started: dict[str, Deployment] = {}

    def get(self, topology: str, store: str) -> Deployment:
        if topology not in self.started:
            env = replica_env(self.upstream, store, {n: s.cap for n, s in SCOPES.items()})
            logs = [self.directory / f"{topology}-replica-{i}.log" for i in range(2)]
            urls = self.stack.enter_context(replicas(env, logs))
            assert urls[0] != urls[1]
            warm(urls)
            self.started[topology] = Deployment(store, urls, self.oneinbox, logs)
        return self.started[topology]


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployments]:
    with ExitStack() as stack:
        yield Deployments(stack, tmp_path_factory.mktemp("replicas"))


@pytest.fixture
def deployment(request: pytest.FixtureRequest, deployments: Deployments) -> Deployment:
    """The two replicas of the topology ``request.param``, their store emptied, the fake
    OneInbox forgetting what it received and behaving."""
    servers = request.getfixturevalue(TOPOLOGIES[request.param])
    if isinstance(servers, RedisServer):
        assert command(servers.port, "FLUSHALL").startswith(b"+OK")
    else:
        servers.flush()
    ready = deployments.get(request.param, servers.url)
    ready.oneinbox.received.clear()
    ready.oneinbox.behave()
    return ready


@dataclass(frozen=True)
class Answered:
    replica: int
    answer: tuple[int, str]
    headers: dict[str, str]
    end_token: str | None


async def concurrently(
    clients: list[httpx.AsyncClient], headers: Callable[[int], dict[str, str]], indices: range
) -> list[Answered]:
    """Start-call ``i`` for each of ``indices`` at once, through replica ``i`` mod 2."""
    answers: list[Answered] = []

    async def one(i: int) -> None:
        which = i % len(clients)
        sent = headers(i)
        response = await clients[which].post(START, json={}, headers=sent)
        token = response.json()["end_token"] if response.status_code == 201 else None
        answers.append(Answered(which, answer(response), sent, token))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            for i in indices:
                tasks.start_soon(one, i)
    return answers


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("deployment", TOPOLOGIES, indirect=True)
async def test_two_replicas_hold_each_scopes_cap_exactly(
    deployment: Deployment, scope: str
) -> None:
    """100 concurrent start-calls split 50/50 over both replicas: exactly ``cap`` created,
    every other one refused by that scope; a handle from one replica ends its call on the
    other, after which exactly one more start-call is admitted."""
    capped = SCOPES[scope]
    oneinbox = deployment.oneinbox
    oneinbox.misbehave(delay=0.3)  # every create is slow, so the whole burst overlaps
    async with clients_of(deployment.urls) as clients:
        answers = await concurrently(clients, capped.headers, range(STARTS))
        tally = Counter(a.answer for a in answers)
        print(f"{scope} cap {capped.cap}, two replicas on {deployment.store}: {dict(tally)}")
        assert Counter(a.replica for a in answers) == {0: STARTS // 2, 1: STARTS // 2}
        expected = {(201, "created"): capped.cap, capped.refusal: STARTS - capped.cap}
        assert tally == expected, deployment.tail()
        assert creates(oneinbox) == capped.cap

        made = next(a for a in answers if a.end_token is not None)
        other = clients[1 - made.replica]
        ended = await other.post(END, json={"end_token": made.end_token}, headers=made.headers)
        assert ended.status_code == 200, ended.text
        again = await concurrently(clients, capped.headers, range(STARTS, STARTS + 10))
        assert Counter(a.answer for a in again) == {(201, "created"): 1, capped.refusal: 9}
        assert creates(oneinbox) == capped.cap + 1


# -- the kill switch -------------------------------------------------------------------

SWITCH_BOUND = 2.0  # seconds from the command's exit until both replicas follow it


async def cli(*args: str, store: str) -> str:
    """``python -m oneinbox_asgi <args> --store <store>``; its output."""
    done = await anyio.run_process(
        [sys.executable, "-m", "oneinbox_asgi", *args, "--store", store], check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


async def follows(
    client: httpx.AsyncClient, tenant: str, want: tuple[int, str], since: float, tag: str
) -> float:
    """Start-calls by new callers of ``tenant`` until one is answered ``want``; seconds
    from ``since``. A call created meanwhile is ended at once."""
    for n in range(200):
        headers = {"x-user": f"{tag}-{n}", "x-tenant": tenant}
        response = await client.post(START, json={}, headers=headers)
        got = answer(response)
        if got == want:
            return time.monotonic() - since
        assert got in {(201, "created"), (503, "calls_paused")}, response.text
        if response.status_code == 201:
            token = response.json()["end_token"]
            ended = await client.post(END, json={"end_token": token}, headers=headers)
            assert ended.status_code == 200, ended.text
        assert time.monotonic() - since < SWITCH_BOUND, f"still {got} after {SWITCH_BOUND} s"
        await anyio.sleep(0.05)
    raise AssertionError(f"never {want}")


@pytest.mark.parametrize("deployment", ["sentinel", "cluster"], indirect=True)
async def test_the_kill_switch_reaches_both_replicas(deployment: Deployment) -> None:
    """``pause --tenant acme``: both replicas refuse acme's calls (503 calls_paused) within
    2 s, and still serve another tenant; ``resume``: both serve acme again within 2 s."""
    store = deployment.store
    async with clients_of(deployment.urls) as clients:
        said = await cli("pause", "--tenant", "acme", store=store)
        paused = time.monotonic()
        assert "paused: tenant acme" in said
        took = [
            await follows(client, "acme", (503, "calls_paused"), paused, f"p{i}")
            for i, client in enumerate(clients)
        ]
        others = []  # another tenant goes on
        for i, client in enumerate(clients):
            headers = {"x-user": f"o{i}", "x-tenant": "globex"}
            others.append(answer(await client.post(START, json={}, headers=headers)))
        said = await cli("resume", "--tenant", "acme", store=store)
        resumed = time.monotonic()
        assert "paused now: nothing" in said
        back = [
            await follows(client, "acme", (201, "created"), resumed, f"r{i}")
            for i, client in enumerate(clients)
        ]
    print(f"kill switch on {store}: paused after {took}, resumed after {back} s")
    assert others == [(201, "created")] * 2


# -- a failover in the middle of a burst at the tenant scope ---------------------------

TENANT_CAP = 2
TENANTS = 2
#: Each start-call by a new caller of one of TENANTS tenants (callers are not capped), one
#: every 0.05 s per tenant; each call created is ended 0.2 s later, through the other
#: replica: each tenant wants twice its cap at once, and fills it again and again, before
#: the disruption and after it.
TENANT_BURST = Burst(
    sender=lambda i: (f"t{i % TENANTS}", {"x-user": f"b{i}", "x-tenant": f"t{i % TENANTS}"}),
    refusal=(429, "tenant_busy"),
    probe={"x-user": "later", "x-tenant": "later"},
    hold=0.2,
)


@pytest.mark.parametrize("topology", ["own_sentinel", "own_cluster"])
async def test_a_failover_mid_burst_at_the_tenant_scope_across_two_replicas(
    topology: str, request: pytest.FixtureRequest, oneinbox: EmulatorAPI, tmp_path: Path
) -> None:
    """Sentinel: the master killed; Cluster: the master holding the store's hash slot
    killed and started again 0.5 s later. Only 201, 429 tenant_busy and 503
    limits_unavailable; never more than the tenant's cap live at once; both replicas serve
    again by themselves."""
    servers: SentinelSet | Cluster = request.getfixturevalue(topology)
    if isinstance(servers, SentinelSet):
        old = servers.master()
        disrupt = old.kill
    else:
        disrupt = partial(restart, servers.owner("{oneinbox-asgi}"))
    with ExitStack() as stack:
        upstream = stack.enter_context(serve(oneinbox))
        env = replica_env(upstream, servers.url, {"tenant": TENANT_CAP})
        logs = [tmp_path / f"replica-{i}.log" for i in range(2)]
        urls = stack.enter_context(replicas(env, logs))
        warm(urls)
        oneinbox.received.clear()
        oneinbox.misbehave(delay=0.02)
        async with clients_of(urls) as clients:
            outcome = await burst_through(clients, disrupt, TENANT_BURST)
    print(f"{topology} mid-burst at the tenant scope, two replicas: {outcome}")
    print(f"most live at once per tenant: {outcome.most_live}; created: {outcome.created}")
    if isinstance(servers, SentinelSet):
        assert servers.master_port() != old.port  # the replica was promoted
    assert_failed_closed(outcome, TENANT_BURST, TENANT_CAP, oneinbox)
