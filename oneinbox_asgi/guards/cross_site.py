"""The cross-site guard: Go's ``net/http`` CrossOriginProtection, for our POST routes.

1. ``Sec-Fetch-Site: same-origin`` or ``none`` passes; any other value fails unless
   the ``Origin`` is one of ``trusted_origins``.
2. Without ``Sec-Fetch-Site``: no ``Origin`` passes (a non-browser client, or a
   same-origin request from an old browser); an ``Origin`` whose host[:port] equals
   the ``Host`` header passes; any other ``Origin`` fails unless it is trusted.

Host names are compared case-insensitively; otherwise the comparison is exact, as
in Go: ``https://example.com:443`` is not ``https://example.com``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import Scope

from ..errors import CallError

_PASSING_FETCH_SITES = (b"same-origin", b"none")


class CrossSiteGuard:
    """Refuses state-changing requests a browser sent on behalf of another site."""

    __slots__ = ("trusted_origins",)

    def __init__(self, trusted_origins: Iterable[str] = ()) -> None:
        #: Lower-cased ``scheme://host[:port]`` strings (``config`` checked them).
        self.trusted_origins = frozenset(trusted_origins)

    def allows(self, scope: Scope) -> bool:
        fetch_site: bytes | None = None
        origin: bytes | None = None
        host: bytes | None = None
        for key, value in scope["headers"]:  # first value of each wins, like Go's Header.Get
            if key == b"sec-fetch-site":
                if fetch_site is None:
                    fetch_site = value
            elif key == b"origin":
                if origin is None:
                    origin = value
            elif key == b"host" and host is None:
                host = value
        if fetch_site:  # Go treats an empty value as absent
            if fetch_site in _PASSING_FETCH_SITES:
                return True
            return self._trusted(origin)
        if not origin:
            return True
        if host is not None and _origin_host(origin) == host.decode("latin-1").lower():
            return True
        return self._trusted(origin)

    def check(self, scope: Scope) -> None:
        """Raise ``cross_site`` unless ``allows(scope)``."""
        if not self.allows(scope):
            raise CallError("cross_site", "Cross-site requests are not allowed here.")

    def trusted_origin(self, scope: Scope) -> bytes | None:
        """The request's ``Origin`` when it is one of ``trusted_origins`` (for CORS), else None."""
        if not self.trusted_origins:
            return None
        for key, value in scope["headers"]:
            if key == b"origin":
                return value if self._trusted(value) else None
        return None

    def _trusted(self, origin: bytes | None) -> bool:
        if not origin or not self.trusted_origins:
            return False
        return origin.decode("latin-1").lower() in self.trusted_origins


def _origin_host(origin: bytes) -> str | None:
    """The host[:port] of an Origin header, lower-cased; None for ``null`` or garbage."""
    try:
        netloc = urlsplit(origin.decode("latin-1")).netloc
    except ValueError:
        return None
    return netloc.lower() or None


#: How long a browser may cache a preflight's answer (seconds).
PREFLIGHT_MAX_AGE = b"600"


def cors_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    """What lets a browser on a trusted origin read an answer it sent with credentials.

    Only ever for one of ``trusted_origins``, named exactly (never ``*``: credentials
    are sent), with ``Vary: Origin`` so that no cache hands it to another origin.
    """
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]


def preflight_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    """The answer to a trusted origin's preflight for a JSON POST."""
    return [
        *cors_headers(origin),
        (b"access-control-allow-methods", b"POST"),
        (b"access-control-allow-headers", b"content-type"),
        (b"access-control-max-age", PREFLIGHT_MAX_AGE),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
    ]
