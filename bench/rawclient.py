"""A minimal keep-alive HTTP/1.1 client on asyncio streams: the raw ceiling's client.

A lower bound on what any Python HTTP client can cost, for the benchmark only. It
is not production code and nothing in the package may use it: no TLS, no timeouts,
no redirects, no chunked bodies, no error recovery beyond dropping a connection.
"""

from __future__ import annotations

import asyncio


class RawPool:
    """Idle connections to one ``host:port``, reused LIFO; a new one when none is idle."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._host_header = f"{host}:{port}".encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, headers: bytes, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; ``headers`` are complete ``Name: value\\r\\n`` lines.

        A pooled connection the server closed while idle fails before any byte of an
        answer; then the request is sent once more on a new connection.
        """
        while self._idle:
            reader, writer = self._idle.pop()
            try:
                return await self._exchange(reader, writer, path, headers, body)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self._exchange(reader, writer, path, headers, body)

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        path: str,
        headers: bytes,
        body: bytes,
    ) -> tuple[int, bytes]:
        try:
            writer.write(
                b"POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s"
                % (path.encode(), self._host_header, headers, len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer))
        return status, answer

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
