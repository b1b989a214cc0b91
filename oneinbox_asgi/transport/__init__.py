"""How the broker's requests reach OneInbox: one small interface, two implementations.

``Transport.send`` sends one request and reads its whole answer within a deadline, and
fails in exactly one of three ways, which decide what may be retried:

* ``NotSent``: the request surely never reached the server (refused, DNS, connect
  failure through a proxy). Safe to retry: nothing was created.
* ``TimedOut``: the deadline passed. The request may have been received.
* ``Broken``: the exchange failed after the request may have left (reset mid-answer,
  closed without an answer, an answer too large to read). Never retried.

``AiohttpTransport`` is the default on asyncio; ``HttpxTransport`` serves trio and an
injected ``httpx.AsyncClient``. Each maps its library's exceptions to these three in one
place, so nothing above this package ever sees aiohttp's or httpx's exception types.
"""

from .base import Broken, NotSent, Response, TimedOut, Transport, TransportError
from .default import open_transport

__all__ = [
    "Broken",
    "NotSent",
    "Response",
    "TimedOut",
    "Transport",
    "TransportError",
    "open_transport",
]
