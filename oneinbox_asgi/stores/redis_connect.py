"""A Redis URL made into a configured redis-py asyncio client: one server, Sentinel or Cluster.

The URL's scheme picks the topology:

* ``redis://[[user]:password@]host[:6379][/db]``, ``rediss://`` (TLS), ``unix:///path?db=0``:
  one server (``valkey://`` and ``valkeys://`` are the same: Valkey speaks the protocol).
* ``redis+sentinel://[[user]:password@]host1[:26379],host2[:26379]/<service>[/db]`` and
  ``rediss+sentinel://`` (TLS to the sentinels and the servers): the master of
  ``<service>`` as the sentinels name it, found again after a failover. The password is
  the servers'; ``?sentinel_password=…`` (and ``sentinel_username=``) if the sentinels
  ask for one of their own.
* ``redis+cluster://[[user]:password@]host1[:6379],host2[:6379][/0]`` and
  ``rediss+cluster://``: a Redis Cluster, the hosts being any of its nodes (the rest are
  discovered).

``valkey`` may stand for ``redis`` in each (``valkeys+cluster://``…). Query options are
redis-py's (``?ssl_cert_reqs=none``, ``ssl_ca_certs=/path``, ``socket_timeout=0.5``…) and
win over the store's. Every client gets the same bounds: connect and socket timeouts of
the store's ``timeout``, one immediate retry (``Retry(NoBackoff(), 1)``), at most
``max_connections`` commands in flight per process (a caller waits for a free one, within
the store's deadline), and ``CLIENT SETNAME oneinbox-asgi``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

CLIENT_NAME = "oneinbox-asgi"
#: How often a Sentinel client asks the sentinels which server is the master.
MASTER_CHECK_SECONDS = 1.0
SENTINEL_PORT = 26379
#: How long the sentinels still to answer are waited for once a majority has.
SENTINEL_GRACE_SECONDS = 0.05
REDIS_PORT = 6379

#: Scheme -> (topology, TLS).
SCHEMES: dict[str, tuple[str, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "valkey": ("single", False),
    "valkeys": ("single", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "valkey+sentinel": ("sentinel", False),
    "valkeys+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "valkey+cluster": ("cluster", False),
    "valkeys+cluster": ("cluster", True),
}

#: What a ``store`` string may start with to name a Redis.
URL_PREFIXES = tuple(f"{scheme}://" for scheme in SCHEMES)


def redacted(url: str) -> str:
    """The URL without its password (nor a ``sentinel_password``), for messages and reprs."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, hosts = netloc.rsplit("@", 1)
            if ":" in userinfo:
                netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(name.endswith("password") for name, _ in pairs):
                query = urlencode(
                    [(n, "***" if n.endswith("password") else v) for n, v in pairs], safe="*"
                )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return url.split("://", 1)[0] + "://…"


@dataclass(frozen=True, slots=True)
class RedisURL:
    """What a Redis URL says: the topology, its nodes, and redis-py's connection options."""

    topology: str  # "single", "sentinel" or "cluster"
    tls: bool
    #: The URL as redis-py's ``from_url`` takes it (single server only).
    single_url: str = ""
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    #: username, password, db and the query's options, parsed as redis-py parses them.
    options: dict[str, Any] = field(default_factory=dict)
    sentinel_options: dict[str, Any] = field(default_factory=dict)


def parse(url: str) -> RedisURL:
    """Read a Redis URL; ``ConfigurationError`` naming what is wrong (never the password)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"store: {redacted(url)} is not a Redis URL: its scheme must be one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    topology, tls = SCHEMES[scheme]
    if topology == "single":
        if scheme.startswith("valkey"):
            url = ("rediss" if tls else "redis") + url[len(scheme) :]
        return RedisURL(topology, tls, single_url=url)

    from redis.asyncio.connection import parse_url

    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    default_port = SENTINEL_PORT if topology == "sentinel" else REDIS_PORT
    nodes = tuple(_node(host, default_port, url) for host in hosts.split(","))
    path = [unquote(p) for p in parts.path.split("/") if p]
    query = parse_qsl(parts.query, keep_blank_values=True)
    sentinel_options = {
        name.removeprefix("sentinel_"): value
        for name, value in query
        if name in ("sentinel_password", "sentinel_username")
    }
    query = [(n, v) for n, v in query if n not in ("sentinel_password", "sentinel_username")]
    service = ""
    if topology == "sentinel":
        if not path or len(path) > 2:
            raise ConfigurationError(
                f"store: {redacted(url)}: a Sentinel URL names the service, then optionally "
                "the db: redis+sentinel://host1:26379,host2:26379/<service>[/<db>]"
            )
        service, path = path[0], path[1:]
    elif path and path != ["0"]:
        raise ConfigurationError(
            f"store: {redacted(url)}: a Redis Cluster has db 0 only (no path, or /0)"
        )
    # redis-py parses the rest (credentials, db, query options) as for one server.
    host, port = nodes[0]
    host = f"[{host}]" if ":" in host else host
    single = urlunsplit(
        (
            "rediss" if tls else "redis",
            f"{userinfo + '@' if userinfo else ''}{host}:{port}",
            "/" + path[0] if path else "",
            urlencode(query),
            "",
        )
    )
    try:
        options: dict[str, Any] = dict(parse_url(single))
    except ValueError as exc:
        raise ConfigurationError(
            f"store: {redacted(url)} is not a usable Redis URL: {exc}"
        ) from None
    for name in ("host", "port", "connection_class", "path"):
        options.pop(name, None)
    if topology == "cluster":
        options.pop("db", None)
    return RedisURL(
        topology,
        tls,
        nodes=nodes,
        service=service,
        options=options,
        sentinel_options=sentinel_options,
    )


def _node(text: str, default_port: int, url: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise ConfigurationError(f"store: {redacted(url)}: {text!r} is not a host[:port]")
    return host, port


def connect(url: str, *, timeout: float, max_connections: int) -> Redis | RedisCluster:
    """A client for the URL's topology, with the store's bounds (see the module's doc).

    Connects lazily: nothing is sent until the first command.
    """
    from redis.asyncio import BlockingConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    target = parse(url)
    bounds: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
        "client_name": CLIENT_NAME,
    }
    if target.topology == "single":
        try:
            pool = BlockingConnectionPool.from_url(
                target.single_url, max_connections=max_connections, timeout=timeout, **bounds
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"store: {redacted(url)} is not a usable Redis URL: {exc}"
            ) from None
        _check_options(url, pool)
        single: Redis = _classes()[0](connection_pool=pool)
        return single

    if target.topology == "sentinel":
        sentinel_kwargs: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            # No retries of a sentinel's answer (redis-py's default retries up to 10
            # times): the others are asked at the same time.
            "retry": Retry(NoBackoff(), 0),
            **target.sentinel_options,
        }
        if target.tls:
            sentinel_kwargs.update(
                (name, value) for name, value in target.options.items() if name.startswith("ssl")
            )
            sentinel_kwargs["ssl"] = True
        sentinel = _classes()[2](list(target.nodes), sentinel_kwargs=sentinel_kwargs)
        options = {**bounds, **target.options, "ssl": target.tls}
        bounded_redis = _classes()[0]
        client: Redis = sentinel.master_for(
            target.service,
            redis_class=bounded_redis,
            # redis-py's pool does not wait for a free connection; GuardedRedis does.
            max_connections=max_connections + 8,
            **options,
        )
        _check_options(url, client.connection_pool)
        _bound(client, max_connections)
        client._oneinbox_sentinel = sentinel  # type: ignore[attr-defined]
        client._oneinbox_next_check = 0.0  # type: ignore[attr-defined]
        client._oneinbox_checks = set()  # type: ignore[attr-defined]
        return client

    from redis.asyncio.cluster import ClusterNode

    options = {**bounds, **target.options}
    if target.tls:
        options["ssl"] = True
    try:
        cluster = _classes()[1](
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=max_connections + 8,
            **options,
        )
    except TypeError as exc:
        raise ConfigurationError(
            f"store: {redacted(url)}: an option is not redis-py's: {exc}"
        ) from None
    _bound(cluster, max_connections)
    cluster._oneinbox_init_lock = asyncio.Lock()
    cluster_client: RedisCluster = cluster
    return cluster_client


def _check_options(url: str, pool: Any) -> None:
    """A query option redis-py's connections do not take is a configuration error now,
    not a failure at the first call (making a connection object does not connect)."""
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        raise ConfigurationError(
            f"store: {redacted(url)}: an option is not redis-py's: {exc}"
        ) from None


def _bound(client: Any, max_connections: int) -> None:
    client._oneinbox_slots = asyncio.Semaphore(max_connections)


async def guarded(client: Any, command: Any, args: Any, options: Any) -> Any:
    """Run one command with at most ``max_connections`` in flight, redis-py's internal
    slips as a ``ConnectionError``.

    Under a failover or a node restart redis-py's clients can fail with an error of their
    own state rather than a Redis one (seen on a real cluster: ``AttributeError: 'NoneType'
    object has no attribute 'writelines'``, a connection closed under another task; also
    redis-py issues 3546, 3835). The store fails closed on those too.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisClusterException, RedisError

    slots = getattr(client, "_oneinbox_slots", None)
    try:
        await _initialized(client)
        _follow_master(client)
        if slots is None:
            return await command(*args, **options)
        async with slots:
            return await command(*args, **options)
    except (RedisError, RedisClusterException, OSError):
        raise
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        if hasattr(client, "nodes_manager"):
            client._initialize = True  # a cluster client: find the topology again
        raise RedisConnectionError(f"redis-py client state: {type(exc).__name__}: {exc}") from exc


def _follow_master(client: Any) -> None:
    """A Sentinel client asks the sentinels for the master at most every
    ``MASTER_CHECK_SECONDS``, in the background, and drops every connection (idle or in
    use) to a master they no longer name.

    redis-py asks only when it opens a connection, so pooled connections stay with an old
    master that is still up (``SENTINEL FAILOVER``, a partition) until the sentinels demote
    it, 8 s or more later: on a real set, 2,800 of 3,400 writes in 5 s after a
    ``SENTINEL FAILOVER`` went to the old master and were lost with its demotion.
    """
    if getattr(client, "_oneinbox_sentinel", None) is None:
        return
    now = time.monotonic()
    if now < client._oneinbox_next_check or client._oneinbox_checks:  # one at a time
        return
    client._oneinbox_next_check = now + MASTER_CHECK_SECONDS
    task = asyncio.get_running_loop().create_task(_check_master(client))
    client._oneinbox_checks.add(task)
    task.add_done_callback(client._oneinbox_checks.discard)


async def _check_master(client: Any) -> None:
    pool = client.connection_pool
    try:
        address = await pool.sentinel_manager.discover_master(pool.service_name)
    except Exception:  # sentinels unreachable: the commands find out for themselves
        return
    # Not only "has the pool's master changed": redis-py updates ``master_address`` itself
    # when it opens a connection, dropping only the idle ones, so a connection busy at
    # that moment stays on the old master with the pool already naming the new one. Any
    # connection still on another server than the sentinels' master is dropped.
    pool.master_address = address
    connections = [
        *getattr(pool, "_available_connections", ()),
        *getattr(pool, "_in_use_connections", ()),
    ]
    for connection in connections:
        if _elsewhere(connection, address):  # those on the master go on undisturbed
            await connection.disconnect()


def _elsewhere(connection: Any, address: tuple[str, int]) -> bool:
    """Whether a connected connection talks to another server than ``address``."""
    if not getattr(connection, "is_connected", False):
        return False
    return (connection.host, int(connection.port)) != (address[0], int(address[1]))


async def _initialized(client: Any) -> None:
    """A cluster client that has to (re)read the topology does it before a command runs,
    one command at a time.

    redis-py's cluster client, when many commands start while it (re)initializes, lets
    some run on the connections of nodes that the initialization then closes: on a real
    cluster, 5 to 25 of 100 concurrent first commands of a new client failed ("Connection
    closed by server", "'NoneType' object has no attribute 'writelines'"); none once the
    client is initialized first.
    """
    lock = getattr(client, "_oneinbox_init_lock", None)
    if lock is None or not client._initialize:
        return
    async with lock:
        if client._initialize:
            await client.initialize()


@functools.cache
def _classes() -> tuple[type[Any], type[Any], type[Any]]:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.sentinel import MasterNotFoundError, Sentinel

    class GuardedRedis(Redis):
        """One server's or a Sentinel master's client, its commands ``guarded``."""

        async def execute_command(self, *args: Any, **options: Any) -> Any:
            command = super().execute_command
            return await guarded(self, command, args, options)

    class GuardedCluster(RedisCluster):
        """A cluster client, its commands ``guarded`` (redis-py's cluster pool raises at
        its bound instead of waiting: the semaphore waits)."""

        async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            command = super().execute_command
            return await guarded(self, command, args, kwargs)

    class EpochSentinel(Sentinel):
        """Sentinels asked all at once, the master taken from the one that knows the
        newest configuration (the highest ``config-epoch``).

        redis-py takes the first sentinel that names a master. Right after a failover
        the sentinels disagree for a second or two (the others learn the new epoch from
        the leader's hello messages): asked first, a lagging sentinel names the old
        master, and with the old master still up (``SENTINEL FAILOVER``, a partition)
        new connections go back to it and their writes are lost when it is demoted.
        """

        async def discover_master(self, service_name: str) -> tuple[str, int]:
            asked = [
                asyncio.ensure_future(sentinel.sentinel_masters()) for sentinel in self.sentinels
            ]
            try:
                # A majority's answers, not everyone's: one sentinel unreachable must not
                # make every new connection wait for its timeout.
                majority = len(asked) // 2 + 1
                pending: set[asyncio.Future[Any]] = set(asked)
                while pending and sum(1 for a in asked if a.done()) < majority:
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if pending:  # the rest a moment more: the newest may be among them
                    await asyncio.wait(pending, timeout=SENTINEL_GRACE_SECONDS)
            finally:
                for answer in asked:
                    answer.cancel()
            best: tuple[int, Any, dict[str, Any]] | None = None
            errors = []
            for sentinel, answer in zip(self.sentinels, asked, strict=True):
                if not answer.done() or answer.cancelled():
                    continue
                if answer.exception() is not None:
                    errors.append(f"{sentinel} - {answer.exception()!r}")
                    continue
                masters = answer.result()
                state = masters.get(service_name) if isinstance(masters, dict) else None
                if state and self.check_master_state(state, service_name):
                    epoch = int(state.get("config-epoch", 0))
                    if best is None or epoch > best[0]:
                        best = (epoch, sentinel, state)
            if best is None:
                said = f": {', '.join(errors)}" if errors else ""
                raise MasterNotFoundError(f"No master found for {service_name!r}{said}")
            _, sentinel, state = best
            if "failover_in_progress" in state.get("flags", ()):
                # Its state still names the old master until the replicas are moved over;
                # this answer names the one it has promoted.
                ip, port = await sentinel.sentinel_get_master_addr_by_name(service_name)
            else:
                ip, port = state["ip"], state["port"]
            forced = getattr(self, "_force_master_ip", None)  # redis-py >= 6 only
            return forced or ip, int(port)

    return GuardedRedis, GuardedCluster, EpochSentinel


def client_errors() -> tuple[type[BaseException], ...]:
    """What redis-py raises when a store cannot be asked (all become ``StoreUnavailable``):
    its ``RedisError`` family, its cluster's ``RedisClusterException`` family (no cluster
    node reachable, a slot not covered), and OS errors."""
    from redis.exceptions import RedisClusterException, RedisError

    return (RedisError, RedisClusterException, OSError)


async def close(client: Redis | RedisCluster) -> None:
    """Let go of every connection of a client made by ``connect``."""
    for task in list(getattr(client, "_oneinbox_checks", ())):
        task.cancel()
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        await pool.disconnect()
    sentinel = getattr(client, "_oneinbox_sentinel", None)
    if sentinel is not None:  # its own clients, one per sentinel
        for one in sentinel.sentinels:
            await one.aclose()
