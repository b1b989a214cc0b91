"""A real redis-server on a loopback port, started and stopped by the tests.

Without a redis-server binary (or without redis-py) the Redis tests skip and say
why; with ``ONEINBOX_REQUIRE_REDIS=1`` (CI) that skip is a failure instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from ..support import free_port

REQUIRE_ENV = "ONEINBOX_REQUIRE_REDIS"
START_TIMEOUT = 5.0


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


def missing_reason() -> str | None:
    """Why the Redis tests cannot run here, or None if they can."""
    if redis_server_binary() is None:
        return "no redis-server binary on PATH (Debian: apt-get install redis-server)"
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install 'oneinbox-asgi[redis]')"
    return None


def require_redis() -> str:
    """The redis-server binary, or skip (fail under ONEINBOX_REQUIRE_REDIS=1) saying why."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but the Redis tests cannot run: {reason}")
        pytest.skip(f"Redis tests skipped: {reason}")
    binary = redis_server_binary()
    assert binary is not None
    return binary


def command(port: int, *words: str, timeout: float = 2.0) -> bytes:
    """Send one command in RESP and return the raw first reply (no client library needed)."""
    payload = f"*{len(words)}\r\n".encode()
    for word in words:
        payload += f"${len(word.encode())}\r\n{word}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(65536)


class RedisServer:
    """One redis-server process without persistence, bound to 127.0.0.1 only."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start (port {self.port} taken?)")
            try:
                if command(self.port, "PING", timeout=0.2).startswith(b"+PONG"):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT} s")

    def kill(self) -> None:
        """Stop it hard (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None


def started_server(binary: str, attempts: int = 3) -> RedisServer:
    """A running server on a free port (retrying if another process took the port)."""
    error: Exception | None = None
    for _ in range(attempts):
        server = RedisServer(binary)
        try:
            server.start()
        except RuntimeError as exc:
            error = exc
            continue
        return server
    raise RuntimeError(f"could not start redis-server: {error}")
