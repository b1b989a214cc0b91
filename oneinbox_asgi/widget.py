"""The widget's static assets: a precomputed ASGI responder and a script-tag helper.

Everything is read from ``oneinbox_asgi/static/`` once (the files ``widget/build.mjs``
writes and the repository commits) and precomputed: identity and gzip bodies, strong
ETags, SRI hashes, and the complete header lists. Answering a request is then a dict
lookup, two header checks and one ``send``: no file system, no hashing, no Starlette
``Request``.

Served under ``{prefix}/``:

* ``widget.js`` -- the loader. Its URL is stable, so it is cached briefly, except when
  asked for as ``widget.js?v=<version>`` (what :func:`script_tag` renders), which is
  cached for a year: a new version has a new URL.
* ``call-<hash>.js`` and ``widget-<hash>.css`` -- content-hashed, cached for a year,
  ``immutable``.
* ``THIRD_PARTY_LICENSES.txt`` -- licences of the bundled npm packages.

Every file is public and answered ``Access-Control-Allow-Origin: *``, so that a page on
another origin (one of ``trusted_origins``) can load the loader and the call chunk with
``crossorigin`` and their integrity hashes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from .asgi import drain_body
from .errors import CallError, method_not_allowed
from .responses import send_error

__all__ = ["LOADER", "WidgetAssets", "script_tag"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

LOADER = "widget.js"
"""File name of the loader below the prefix."""

IMMUTABLE = b"public, max-age=31536000, immutable"
LOADER_CACHE = b"public, max-age=60"
"""Short, so that a deploy's new loader (naming a new call chunk) is picked up quickly."""

_HASHED = re.compile(r"-[0-9a-f]{8,}\.[a-z0-9]+\Z")
_CONTENT_TYPES = {
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "txt": b"text/plain; charset=utf-8",
    "json": b"application/json",
}
_NOSNIFF = (b"x-content-type-options", b"nosniff")
#: Public files, the same for everyone and fetched without credentials: any origin may load
#: them in CORS mode. A page on another origin must, since ``crossorigin`` (with ``integrity``)
#: makes the loader's tag and the call chunk's a CORS request. The same value for every
#: request, so a cache needs no ``Vary: Origin``.
_ANY_ORIGIN = (b"access-control-allow-origin", b"*")

#: A body sent to a widget file (it takes none) is read up to this, then refused.
DRAIN_LIMIT = 16 * 1024


@dataclass(frozen=True, slots=True)
class _Variant:
    body: bytes
    etag: bytes
    headers: Headers  # for 200, with content-length
    not_modified: Headers  # for 304


@dataclass(frozen=True, slots=True)
class Asset:
    """One precomputed static file."""

    name: str
    body: bytes
    sri: str
    """Subresource-integrity hash of the body, ``sha384-<base64>``."""
    version: str
    """First 12 hex digits of the body's SHA-256."""
    identity: _Variant
    gzipped: _Variant | None
    versioned: tuple[_Variant, _Variant | None] | None
    """For the loader: the variants to use when the request names the current version."""
    etags: tuple[bytes, ...]


def _variant(
    body: bytes,
    etag: bytes,
    content_type: bytes,
    cache_control: bytes,
    *,
    gzipped: bool,
    vary: bool,
) -> _Variant:
    common: Headers = [
        (b"etag", etag),
        (b"cache-control", cache_control),
        _NOSNIFF,
        _ANY_ORIGIN,
    ]
    if vary:
        common.append((b"vary", b"accept-encoding"))
    headers: Headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *common,
    ]
    if gzipped:
        headers.append((b"content-encoding", b"gzip"))
    return _Variant(body=body, etag=etag, headers=headers, not_modified=common)


def _asset(name: str, body: bytes) -> Asset:
    digest = hashlib.sha256(body).hexdigest()
    content_type = _CONTENT_TYPES.get(name.rpartition(".")[2], b"application/octet-stream")
    packed = gzip.compress(body, compresslevel=9, mtime=0)
    has_gzip = len(packed) < len(body)
    tag = f'"{digest[:32]}"'.encode()
    gz_tag = f'"{digest[:32]}-gz"'.encode()

    def variants(cache_control: bytes) -> tuple[_Variant, _Variant | None]:
        plain = _variant(body, tag, content_type, cache_control, gzipped=False, vary=has_gzip)
        packed_variant = (
            _variant(packed, gz_tag, content_type, cache_control, gzipped=True, vary=True)
            if has_gzip
            else None
        )
        return plain, packed_variant

    hashed = bool(_HASHED.search(name))
    identity, gzipped = variants(IMMUTABLE if hashed else LOADER_CACHE)
    return Asset(
        name=name,
        body=body,
        sri="sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode(),
        version=digest[:12],
        identity=identity,
        gzipped=gzipped,
        versioned=None if hashed else variants(IMMUTABLE),
        etags=(tag, gz_tag) if has_gzip else (tag,),
    )


@cache
def load_assets() -> dict[str, Asset]:
    """Reads and precomputes every file in ``oneinbox_asgi/static`` (once per process)."""
    root = resources.files("oneinbox_asgi").joinpath("static")
    assets: dict[str, Asset] = {}
    for entry in root.iterdir():
        name = entry.name
        if not entry.is_file() or name.startswith((".", "_")) or name.endswith(".py"):
            continue
        assets[name] = _asset(name, entry.read_bytes())
    if LOADER not in assets:
        raise RuntimeError(
            f"oneinbox_asgi/static/{LOADER} is missing: build the widget "
            "(cd widget && npm ci && npm run build)"
        )
    return assets


@lru_cache(maxsize=128)
def _accepts_gzip(value: bytes) -> bool:
    """Whether an Accept-Encoding value admits gzip (q-values honoured, ``*`` too)."""
    gzip_q: float | None = None
    star_q: float | None = None
    for part in value.split(b","):
        token, _, params = part.partition(b";")
        token = token.strip().lower()
        q = 1.0
        for param in params.split(b";"):
            key, _, val = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    q = float(val.strip())
                except ValueError:
                    q = 0.0
        if token in (b"gzip", b"x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif token == b"*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _none_match(value: bytes, etags: tuple[bytes, ...]) -> bool:
    """If-None-Match uses the weak comparison: ``W/`` prefixes are ignored."""
    value = value.strip()
    if value == b"*":
        return True
    for candidate in value.split(b","):
        tag = candidate.strip()
        if tag.startswith(b"W/"):
            tag = tag[2:]
        if tag in etags:
            return True
    return False


def _query_version(query: bytes) -> bytes | None:
    for pair in query.split(b"&"):
        if pair.startswith(b"v="):
            return pair[2:]
    return None


class WidgetAssets:
    """ASGI responder for ``GET|HEAD {prefix}/<name>``; build once, call per request."""

    def __init__(self) -> None:
        self.assets: dict[str, Asset] = load_assets()
        self.loader: Asset = self.assets[LOADER]

    async def __call__(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        method = scope.get("method", "GET")
        asset = self.assets.get(name)
        if asset is None or method not in ("GET", "HEAD"):
            error = (
                CallError("not_found", "There is no such widget file.")
                if asset is None
                else method_not_allowed(["GET", "HEAD"])
            )
            await drain_body(scope, receive, DRAIN_LIMIT)
            await send_error(send, error, head_only=method == "HEAD")
            return

        plain, packed = asset.identity, asset.gzipped
        if asset.versioned is not None:
            version = _query_version(scope.get("query_string", b""))
            if version is not None and version == asset.version.encode():
                plain, packed = asset.versioned

        accept_encoding = b""
        if_none_match: bytes | None = None
        for key, value in scope.get("headers", ()):
            if key == b"accept-encoding":
                accept_encoding = value
            elif key == b"if-none-match":
                if_none_match = value
        variant = packed if packed is not None and _accepts_gzip(accept_encoding) else plain

        if if_none_match is not None and _none_match(if_none_match, asset.etags):
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": list(variant.not_modified),
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        # Fresh messages and header lists each time: a middleware outside ours (GZip,
        # Litestar's compression) may edit what it forwards in place.
        await send({"type": "http.response.start", "status": 200, "headers": list(variant.headers)})
        await send(
            {"type": "http.response.body", "body": b"" if method == "HEAD" else variant.body}
        )


_DATA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
_ABSOLUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//")


def script_tag(prefix: str = "/oneinbox", *, nonce: str | None = None, **data: str) -> str:
    """The ``<script>`` tag that mounts the widget, for server-rendered templates.

    ``data`` become ``data-*`` attributes (``label_end="Bye"`` → ``data-label-end="Bye"``,
    ``var_customer_id="42"`` → ``data-var-customer-id``, which the widget sends as the
    variable ``customer_id``). The URL carries the loader's version, so the ``integrity``
    hash always matches what a cache holds. Every value is HTML-escaped.
    """
    if not (prefix.startswith("/") or _ABSOLUTE.match(prefix)):
        raise ValueError(f"prefix must be a path starting with '/' or an absolute URL: {prefix!r}")
    loader = load_assets()[LOADER]
    attributes: list[tuple[str, str | None]] = [
        ("src", f"{prefix.rstrip('/')}/{LOADER}?v={loader.version}"),
        ("integrity", loader.sri),
    ]
    if _ABSOLUTE.match(prefix):
        attributes.append(("crossorigin", "anonymous"))
    if nonce is not None:
        attributes.append(("nonce", nonce))
    attributes.append(("async", None))
    for key, value in data.items():
        if not _DATA_NAME.match(key):
            raise ValueError(f"not a valid data attribute name: {key!r}")
        if not isinstance(value, str):
            raise TypeError(f"data attribute {key!r} must be a str, not {type(value).__name__}")
        attributes.append(("data-" + key.replace("_", "-").lower(), value))
    rendered = " ".join(
        name if value is None else f'{name}="{html.escape(value, quote=True)}"'
        for name, value in attributes
    )
    return f"<script {rendered}></script>"
