"""oneinbox-asgi: a secure, drop-in "Talk to AI" voice button for any ASGI app."""

__version__ = "0.2.0"

from .context import CallEvent, CallRequest, Forbidden, allow_anonymous
from .errors import ConfigurationError
from .middleware import OneInboxMiddleware
from .sessions import DjangoSessionReader, QuartSessionReader, SessionReader, StarletteSessionReader

__all__ = [
    "CallEvent",
    "CallRequest",
    "ConfigurationError",
    "DjangoSessionReader",
    "Forbidden",
    "OneInboxMiddleware",
    "QuartSessionReader",
    "SessionReader",
    "StarletteSessionReader",
    "__version__",
    "allow_anonymous",
]
