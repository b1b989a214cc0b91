"""Which transport the broker's own client uses: aiohttp on asyncio, httpx elsewhere."""

from __future__ import annotations

import sniffio

from .base import Transport


def open_transport() -> Transport:
    """A new pooled transport for the running event loop.

    aiohttp on asyncio: httpx's own transport (httpcore) degrades badly under
    concurrency (bench/RESULTS.md). Under trio, httpx's, which runs on anyio.
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = ""
    if library == "asyncio":
        from .aiohttp_transport import AiohttpTransport

        return AiohttpTransport()
    from .httpx_transport import HttpxTransport

    return HttpxTransport.pooled()
