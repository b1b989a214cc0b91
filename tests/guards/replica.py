"""One replica for the multi-process tests: ``python -m tests.guards.replica``.

Configured only by the environment, as a deployment would be: ONEINBOX_API_KEY,
ONEINBOX_AGENT_ID, ONEINBOX_BASE_URL, ONEINBOX_REDIS_URL (the shared limit store), and
the caps, each a whole number or absent (then no such cap):

- REPLICA_MAX_CONCURRENT_CALLS: each caller's (named by the ``X-User`` header);
- REPLICA_TENANT_MAX_CONCURRENT_CALLS: each tenant's (named by the ``X-Tenant`` header;
  a start-call without one has no tenant scope);
- REPLICA_GLOBAL_MAX_CONCURRENT_CALLS: everyone's.

Rate limits are off. Serves on 127.0.0.1 on a free port and prints ``PORT <n>`` once it
listens.
"""

from __future__ import annotations

import asyncio
import os

import uvicorn
from starlette.applications import Starlette

from oneinbox_asgi import OneInboxMiddleware
from oneinbox_asgi.guards import Budget

from ..support import tenant_from_header, user_from_header


def cap(variable: str) -> int | None:
    value = os.environ.get(variable)
    return int(value) if value else None


def budget(variable: str) -> Budget | None:
    most = cap(variable)
    return None if most is None else Budget(max_concurrent_calls=most)


def make_app() -> OneInboxMiddleware:
    return OneInboxMiddleware(
        Starlette(),
        authorize=user_from_header,
        rate_limit=None,
        max_concurrent_calls=cap("REPLICA_MAX_CONCURRENT_CALLS"),
        tenant=tenant_from_header,
        tenant_budget=budget("REPLICA_TENANT_MAX_CONCURRENT_CALLS"),
        global_budget=budget("REPLICA_GLOBAL_MAX_CONCURRENT_CALLS"),
    )


async def serve() -> None:
    config = uvicorn.Config(
        make_app(),
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
        loop="asyncio",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):  # at most 10 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(serve())
