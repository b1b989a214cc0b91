"""Real Redis topologies on loopback, started and stopped by the tests: a three-master
Redis Cluster, and a Sentinel set (one master, one replica, three sentinels).

Both use Debian's redis-server (a sentinel is ``redis-server <conf> --sentinel``), so
they skip, or fail under ONEINBOX_REQUIRE_REDIS=1, exactly as the one-server tests do.
Every wait is bounded; a set that does not come up in time is stopped and fails the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .redis_server import RedisServer, command, free_port, started_server

READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class TLSFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> TLSFiles:
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1", "localhost")
        files = cls(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
        ca.cert_pem.write_to_path(str(files.ca))
        issued.cert_chain_pems[0].write_to_path(str(files.cert))
        issued.private_key_pem.write_to_path(str(files.key))
        return files


CLUSTER_SLOTS = 16384
SERVICE = "oneinbox"


def info(port: int, section: str) -> dict[str, str]:
    """``INFO <section>`` of the server on ``port``, as a dict."""
    raw = command(port, "INFO", section).decode(errors="replace")
    fields = {}
    for line in raw.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def wait_until(what: str, ready: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    """Poll ``ready`` until it is true, or fail saying ``what`` did not happen in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not happen within {timeout:g} s")


def ok(reply: bytes) -> None:
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"redis answered {reply[:200]!r}")


class Cluster:
    """A Redis Cluster of three masters on 127.0.0.1, slots split evenly.

    Each node has its own directory (nodes.conf; with ``durable``, an append-only file, so
    a node killed and started again keeps what it had)."""

    def __init__(
        self,
        binary: str,
        root: Path,
        masters: int = 3,
        durable: bool = False,
        tls: TLSFiles | None = None,
    ) -> None:
        self.binary = binary
        self.root = root
        self.durable = durable
        #: With TLS each node also listens for TLS (clients and the cluster bus) on its
        #: ``tls_ports`` entry; the plain port stays for the setup commands.
        self.tls = tls
        self.tls_ports: list[int] = []
        self.bus_ports: list[int] = []
        self.nodes: list[RedisServer] = []
        self.count = masters

    @property
    def url(self) -> str:
        scheme = "valkey" if "valkey" in Path(self.binary).name else "redis"
        if self.tls:
            hosts = ",".join(f"127.0.0.1:{port}" for port in self.tls_ports)
            return f"{scheme}s+cluster://{hosts}?ssl_ca_certs={self.tls.ca}"
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"{scheme}+cluster://{hosts}"

    def _client_port(self, i: int) -> int:
        return self.tls_ports[i] if self.tls else self.nodes[i].port

    def start(self) -> None:
        try:
            for i in range(self.count):
                directory = self.root / f"node-{i}"
                directory.mkdir(parents=True, exist_ok=True)
                bus_port = free_port()
                self.bus_ports.append(bus_port)
                args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    # its own bus port: the default (port + 10000) may be above 65535
                    "--cluster-port",
                    str(bus_port),
                    "--dir",
                    str(directory),
                ]
                if self.tls:
                    self.tls_ports.append(free_port())
                    args += [
                        "--tls-port",
                        str(self.tls_ports[-1]),
                        "--tls-cert-file",
                        str(self.tls.cert),
                        "--tls-key-file",
                        str(self.tls.key),
                        "--tls-ca-cert-file",
                        str(self.tls.ca),
                        "--tls-auth-clients",
                        "no",
                        "--tls-cluster",
                        "yes",
                    ]
                if self.durable:
                    # Each write reaches the file (the OS's cache) before its reply, which
                    # is all a killed process needs; no fsync, so a busy disk adds nothing.
                    args += ["--appendonly", "yes", "--appendfsync", "no"]
                self.nodes.append(started_server(self.binary, args=args, cwd=str(directory)))
            per = CLUSTER_SLOTS // self.count
            for i, node in enumerate(self.nodes):
                first = i * per
                last = CLUSTER_SLOTS - 1 if i == self.count - 1 else first + per - 1
                ok(command(node.port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last)))
            for node in self.nodes[1:]:
                meet = ("127.0.0.1", str(self._client_port(0)), str(self.bus_ports[0]))
                ok(command(node.port, "CLUSTER", "MEET", *meet))
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def wait_ok(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every node says ``cluster_state:ok`` and knows every other node."""

        def ready() -> bool:
            for node in self.nodes:
                state = command(node.port, "CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in state:
                    return False
                if f"cluster_known_nodes:{self.count}" not in state:
                    return False
            return True

        wait_until("cluster_state:ok on every node", ready, timeout)

    def owner(self, key: str) -> RedisServer:
        """The master holding ``key``'s hash slot."""
        reply = command(self.nodes[0].port, "CLUSTER", "KEYSLOT", key)
        slot = int(reply[1:].split(b"\r\n")[0])
        per = CLUSTER_SLOTS // self.count
        return self.nodes[min(slot // per, self.count - 1)]

    def flush(self) -> None:
        for node in self.nodes:
            ok(command(node.port, "FLUSHALL"))

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelSet:
    """One master, one replica and three sentinels (quorum 2) watching ``SERVICE``."""

    def __init__(self, binary: str, root: Path, server_args: list[str] | None = None) -> None:
        self.binary = binary
        self.root = root
        #: More options for the master and the replica (``--min-replicas-to-write 1``…).
        self.server_args = server_args or []
        self.servers: list[RedisServer] = []
        self.sentinels: list[RedisServer] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def master_port(self) -> int:
        """The master's port as the first sentinel that answers says."""
        for sentinel in self.sentinels:
            try:
                reply = command(
                    sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
                ).decode()
            except OSError:
                continue
            return int(reply.split("\r\n")[-2])
        raise RuntimeError("no sentinel answered")

    def master(self) -> RedisServer:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def start(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # A replica writes what it receives (dump.rdb) to its directory: a tmp one each.
            places = [self.root / "server-0", self.root / "server-1"]
            for place in places:
                place.mkdir(exist_ok=True)
            master = started_server(self.binary, args=["--dir", str(places[0]), *self.server_args])
            self.servers.append(master)
            replica = started_server(
                self.binary,
                args=[
                    "--dir",
                    str(places[1]),
                    *self.server_args,
                    "--replicaof",
                    "127.0.0.1",
                    str(master.port),
                ],
            )
            self.servers.append(replica)
            wait_until(
                "the replica in sync",
                lambda: info(replica.port, "replication").get("master_link_status") == "up",
            )
            for i in range(3):
                config = self.root / f"sentinel-{i}.conf"
                config.write_text(
                    f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} 400\n"
                    f"sentinel failover-timeout {SERVICE} 3000\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n"
                )
                self.sentinels.append(
                    started_server(
                        self.binary, config=str(config), args=["--sentinel"], cwd=str(self.root)
                    )
                )
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every sentinel knows the master, the replica and the two other sentinels
        (so that a failover can be agreed)."""

        def ready() -> bool:
            for sentinel in self.sentinels:
                fields = info(sentinel.port, "sentinel")
                line = fields.get("master0", "")
                if "status=ok" not in line or "slaves=1" not in line or "sentinels=3" not in line:
                    return False
            return True

        wait_until("the sentinels ready (master, replica, quorum)", ready, timeout)

    def flush(self) -> None:
        """Empty the master (tests read and write only through it)."""
        ok(command(self.master_port(), "FLUSHALL"))

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()


Started = TypeVar("Started", "Cluster", "SentinelSet")


def running(servers: Started) -> Iterator[Started]:
    """Start ``servers``, hand them to the fixture, and stop them however it ends."""
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()
