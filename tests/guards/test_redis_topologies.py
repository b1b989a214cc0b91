"""Sentinel and Cluster under failure: a failover or a node restart in the middle of a
burst of start-calls answers only 201, 429 and 503 ``limits_unavailable``, never lets a
caller past the cap, and the broker recovers by itself within a bounded time. And the
URLs that pick a topology."""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import time
from functools import partial

import anyio
import httpx
import pytest

from oneinbox_asgi import ConfigurationError
from oneinbox_asgi.guards import RedisStore, StoreUnavailable
from oneinbox_asgi.stores.redis_connect import parse, redacted
from oneinbox_emulator.api import EmulatorAPI

from ..support import END, START, broker, client_for
from .redis_server import command
from .redis_topologies import SERVICE, Cluster, SentinelSet
from .support import (
    LEAKS_UNDER_FAILURE,
    RECOVERY_BOUND,
    Burst,
    assert_failed_closed,
    burst_through,
    restart,
)

CAP = 2
USERS = 8
#: USERS callers, CAP calls each, all kept.
CALLERS = Burst(
    sender=lambda i: (f"u{i % USERS}", {"x-user": f"u{i % USERS}"}),
    refusal=(429, "too_many_calls"),
    probe={"x-user": "later"},
)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.anyio
@LEAKS_UNDER_FAILURE
async def test_a_sentinel_failover_mid_burst_fails_closed_and_recovers(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    own_sentinel: SentinelSet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The master is killed: until the sentinels promote the replica, start-call answers
    503; then the store finds the new master through the sentinels by itself."""
    caplog.set_level(logging.ERROR, logger="oneinbox_asgi")
    oneinbox.misbehave(delay=0.02)
    store = RedisStore(own_sentinel.url, timeout=0.5)
    app = broker(
        http_client=upstream_client, store=store, rate_limit=None, max_concurrent_calls=CAP
    )
    old = own_sentinel.master()
    try:
        async with client_for(app) as client:
            outcome = await burst_through([client], old.kill, CALLERS)
    finally:
        await store.aclose()
        gc.collect()
    print(f"sentinel failover mid-burst: {outcome}")
    assert own_sentinel.master_port() != old.port  # the replica was promoted
    assert_failed_closed(outcome, CALLERS, CAP, oneinbox)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.anyio
@LEAKS_UNDER_FAILURE
async def test_a_cluster_node_restart_mid_burst_fails_closed_and_recovers(
    oneinbox: EmulatorAPI,
    upstream_client: httpx.AsyncClient,
    own_cluster: Cluster,
) -> None:
    """The master holding the store's hash slot is killed and started again (same port,
    its data kept): 503 while it is away and until the cluster takes it back, then 201."""
    oneinbox.misbehave(delay=0.02)
    store = RedisStore(own_cluster.url, timeout=0.5)
    app = broker(
        http_client=upstream_client, store=store, rate_limit=None, max_concurrent_calls=CAP
    )
    node = own_cluster.owner("{oneinbox-asgi}")
    try:
        async with client_for(app) as client:
            outcome = await burst_through([client], partial(restart, node), CALLERS)
    finally:
        await store.aclose()
        gc.collect()
    print(f"cluster node restart mid-burst: {outcome}")
    assert_failed_closed(outcome, CALLERS, CAP, oneinbox)


# -- the URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "topology", "nodes", "service", "options"),
    [
        (
            "redis+sentinel://:pw@s1,s2:26380,[::1]:26381/mymaster/2",
            "sentinel",
            (("s1", 26379), ("s2", 26380), ("::1", 26381)),
            "mymaster",
            {"password": "pw", "db": 2},
        ),
        (
            "rediss+sentinel://s1/mymaster?sentinel_password=spw",
            "sentinel",
            (("s1", 26379),),
            "mymaster",
            {},
        ),
        (
            "redis+cluster://app:pw@n1:7000,n2:7001",
            "cluster",
            (("n1", 7000), ("n2", 7001)),
            "",
            {"username": "app", "password": "pw"},
        ),
        (
            "valkeys+cluster://n1/0?ssl_cert_reqs=none",
            "cluster",
            (("n1", 6379),),
            "",
            {"ssl_cert_reqs": "none"},
        ),
    ],
)
def test_multi_host_urls(
    url: str,
    topology: str,
    nodes: tuple[tuple[str, int], ...],
    service: str,
    options: dict[str, object],
) -> None:
    target = parse(url)
    assert (target.topology, target.nodes, target.service) == (topology, nodes, service)
    assert target.tls == url.startswith(("rediss", "valkeys"))
    assert {k: v for k, v in target.options.items() if v is not None} == options
    if "sentinel_password" in url:
        assert target.sentinel_options == {"password": "spw"}


def test_single_server_urls_and_valkey_aliases() -> None:
    assert parse("redis://h:6379/1").single_url == "redis://h:6379/1"
    assert parse("valkey://h/1").single_url == "redis://h/1"
    assert parse("valkeys://:pw@h/1").single_url == "rediss://:pw@h/1"
    assert parse("unix:///run/redis.sock?db=2").topology == "single"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("memcached://h", "scheme must be one of"),
        ("redis+sentinel://s1:26379", "names the service"),
        ("redis+sentinel://s1/a/1/extra", "names the service"),
        ("redis+cluster://n1/3", "db 0 only"),
        ("redis+cluster://n1:99999", "not a host[:port]"),
        ("redis+cluster://:s3cret@n1:x", "not a host[:port]"),
        ("redis+cluster://:s3cret@n1?bogus=1", "an option is not redis-py's"),
        ("redis+sentinel://:s3cret@s1/m?bogus=1", "an option is not redis-py's"),
        ("redis://:s3cret@h/0?bogus=1", "an option is not redis-py's"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=r".*") as caught:
        RedisStore(url)
    assert says in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_passwords_never_show() -> None:
    for url in [
        "redis+sentinel://:s3cret@s1,s2/m?sentinel_password=s3cret",
        "rediss+cluster://app:s3cret@n1:7000,n2:7001",
        "redis://:s3cret@h:6379/0",
    ]:
        shown = redacted(url)
        assert "s3cret" not in shown and "***" in shown, shown
        assert "s3cret" not in repr(RedisStore(url))


@pytest.mark.redis
@pytest.mark.anyio
@pytest.mark.parametrize("topology", ["sentinel_url", "cluster_url", "valkey_url"])
async def test_the_store_option_and_env_take_every_scheme(
    topology: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = request.getfixturevalue(topology)
    monkeypatch.setenv("ONEINBOX_REDIS_URL", url)
    for key, app in [("by-option", broker(store=url)), ("by-env", broker())]:
        try:
            assert isinstance(app.store, RedisStore)
            assert await app.store.hit(key, 1, 60) == 0
            assert await app.store.hit(key, 1, 60) > 0
        finally:
            await app.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_tls_cluster(
    oneinbox: EmulatorAPI, upstream_client: httpx.AsyncClient, tls_cluster: Cluster
) -> None:
    """rediss+cluster:// with the server's CA (as ElastiCache or Memorystore with in-transit
    encryption): calls are capped, ended and started again; without the CA it fails closed."""
    # Not a test of deadlines: a new cluster client's first call (TLS handshakes, the
    # topology, redis-py reading the whole COMMAND table) took over 1 s in a busy run.
    store = RedisStore(tls_cluster.url, timeout=5.0)
    app = broker(http_client=upstream_client, store=store, max_concurrent_calls=1)
    try:
        async with client_for(app, "u1") as client:
            started = await client.post(START, json={})
            assert started.status_code == 201, started.text
            assert (await client.post(START, json={})).status_code == 429
            token = started.json()["end_token"]
            assert (await client.post(END, json={"end_token": token})).status_code == 200
            assert (await client.post(START, json={})).status_code == 201
    finally:
        await store.aclose()
    untrusted = RedisStore(tls_cluster.url.split("?")[0], timeout=1.0)
    try:
        with pytest.raises(StoreUnavailable):
            await untrusted.hit("k", 1, 60)
    finally:
        await untrusted.aclose()


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.anyio
@LEAKS_UNDER_FAILURE
async def test_after_a_sentinel_failover_with_the_old_master_up_writes_follow_within_seconds(
    own_sentinel: SentinelSet,
) -> None:
    """SENTINEL FAILOVER leaves the old master up (as a partition would): redis-py alone
    keeps writing on its pooled connections to it until the sentinels demote it, 8 s or
    more later, and those writes are lost. The store asks the sentinels every second and
    drops connections to a master they no longer name."""
    store = RedisStore(own_sentinel.url, timeout=0.5)
    old = own_sentinel.master_port()
    try:
        assert await store.acquire("probe", "before", 10_000, 600)
        assert (
            command(own_sentinel.sentinels[0].port, "SENTINEL", "FAILOVER", SERVICE)[:3] == b"+OK"
        )
        began = time.monotonic()
        while own_sentinel.master_port() == old:  # the sentinels switch to the replica
            assert time.monotonic() - began < RECOVERY_BOUND, "no switch"
            await anyio.sleep(0.05)
        switched = time.monotonic()
        new = own_sentinel.master_port()
        i = 0
        while True:  # writes reach the new master
            i += 1
            with contextlib.suppress(StoreUnavailable):
                await store.acquire("probe", f"after-{i}", 10_000, 600)
                key = "{oneinbox-asgi}slots:probe"
                if not command(new, "ZSCORE", key, f"after-{i}").startswith((b"$-1", b"_")):
                    break
            assert time.monotonic() - switched < 3.0, "still writing to the old master"
            await anyio.sleep(0.05)
        print(f"writes on the new master {time.monotonic() - switched:.2f} s after the switch")
    finally:
        await store.aclose()
        gc.collect()


@pytest.mark.slow
@pytest.mark.anyio
async def test_an_unreachable_sentinel_does_not_slow_finding_the_master(
    redis_sentinel: SentinelSet,
) -> None:
    """A sentinel that accepts connections and never answers (a hung VM) is listed first:
    the master is still found from the others at once, not after its timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in redis_sentinel.sentinels)
        url = f"redis+sentinel://127.0.0.1:{silent.getsockname()[1]},{hosts}/{SERVICE}/0"
        store = RedisStore(url, timeout=1.0)
        try:
            started = time.monotonic()
            assert await store.acquire("probe", "s1", 10, 60)  # a first connection: discovery
            assert time.monotonic() - started < 0.5
        finally:
            await store.aclose()
            gc.collect()
