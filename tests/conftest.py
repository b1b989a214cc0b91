from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from oneinbox_emulator.api import DEFAULT_API_KEY, EmulatorAPI

from .support import API_KEY, fake_oneinbox

assert API_KEY == DEFAULT_API_KEY


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def oneinbox() -> EmulatorAPI:
    """A fresh fake OneInbox API that knows agents agt_demo and agt_sales."""
    return fake_oneinbox()


@pytest.fixture
async def upstream_client(oneinbox: EmulatorAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose transport is the fake OneInbox, in-process."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=oneinbox)) as client:
        yield client


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
