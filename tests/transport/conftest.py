from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from oneinbox_asgi.transport import Transport

from ..reliability.faulty_upstream import FaultyUpstream, faulty_upstream
from .support import TRANSPORTS, clear_proxy_environment, make_transport


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no proxy variable set; a test sets the ones it is about."""
    clear_proxy_environment(monkeypatch)


@pytest.fixture
def upstream() -> Iterator[tuple[FaultyUpstream, str]]:
    """A raw-socket OneInbox on loopback (tests/reliability/faulty_upstream.py) and its URL."""
    with faulty_upstream() as served:
        yield served


@pytest.fixture(params=TRANSPORTS)
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """Each implementation in turn, made in the test's loop and closed after it."""
    made = make_transport(request.param)
    try:
        yield made
    finally:
        await made.aclose()
