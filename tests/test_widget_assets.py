"""Unit tests of oneinbox_asgi.widget: the asset responder, script_tag, and the build."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import pytest

from oneinbox_asgi.widget import IMMUTABLE, LOADER_CACHE, WidgetAssets, load_assets, script_tag

STATIC = resources.files("oneinbox_asgi").joinpath("static")
LOADER_BYTES = STATIC.joinpath("widget.js").read_bytes()


def chunk_name() -> str:
    names = [p.name for p in STATIC.iterdir() if re.fullmatch(r"call-[0-9a-f]{12}\.js", p.name)]
    assert len(names) == 1, names
    return names[0]


class Response:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
        assert not messages[1].get("more_body", False)
        self.status: int = messages[0]["status"]
        self.raw_headers: list[tuple[bytes, bytes]] = messages[0]["headers"]
        self.headers = {k.decode(): v.decode() for k, v in self.raw_headers}
        assert len(self.headers) == len(self.raw_headers), "duplicate header"
        self.body: bytes = messages[1]["body"]

    def json(self) -> Any:
        return json.loads(self.body)


async def fetch(
    name: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    query: bytes = b"",
    assets: WidgetAssets | None = None,
) -> Response:
    scope = {
        "type": "http",
        "method": method,
        "path": f"/oneinbox/{name}",
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await (assets or WidgetAssets())(scope, receive, send, name)
    return Response(sent)


# -- the responder --------------------------------------------------------------------


@pytest.mark.anyio
async def test_loader_is_served_with_short_caching_and_nosniff() -> None:
    r = await fetch("widget.js")
    assert r.status == 200
    assert r.body == LOADER_BYTES
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["content-length"] == str(len(LOADER_BYTES))
    assert r.headers["cache-control"] == LOADER_CACHE.decode()
    assert "immutable" not in r.headers["cache-control"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["vary"] == "accept-encoding"
    assert "content-encoding" not in r.headers
    assert re.fullmatch(r'"[0-9a-f]{32}"', r.headers["etag"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("*", True),
        ("x-gzip", True),
        ("GZIP", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, deflate", False),
        ("*;q=0", False),
        ("br", False),
        ("identity", False),
        ("", False),
        ("gzip;q=bogus", False),
    ],
)
async def test_gzip_is_negotiated(accept: str, gzipped: bool) -> None:
    r = await fetch("widget.js", headers={"Accept-Encoding": accept})
    assert r.status == 200
    if gzipped:
        assert r.headers["content-encoding"] == "gzip"
        assert gzip.decompress(r.body) == LOADER_BYTES
        assert int(r.headers["content-length"]) == len(r.body) < len(LOADER_BYTES)
        assert r.headers["etag"].endswith('-gz"')
    else:
        assert "content-encoding" not in r.headers
        assert r.body == LOADER_BYTES


@pytest.mark.anyio
async def test_precomputed_gzip_is_deterministic() -> None:
    a = await fetch("widget.js", headers={"Accept-Encoding": "gzip"})
    assert a.body == gzip.compress(LOADER_BYTES, compresslevel=9, mtime=0)


@pytest.mark.anyio
@pytest.mark.parametrize("accept", ["", "gzip"])
async def test_if_none_match_gives_304(accept: str) -> None:
    first = await fetch("widget.js", headers={"Accept-Encoding": accept})
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        r = await fetch("widget.js", headers={"Accept-Encoding": accept, "If-None-Match": header})
        assert r.status == 304, header
        assert r.body == b""
        assert r.headers["etag"] == etag
        assert r.headers["cache-control"] == first.headers["cache-control"]
        assert "content-length" not in r.headers
    stale = await fetch("widget.js", headers={"If-None-Match": '"0123", W/"abc"'})
    assert stale.status == 200
    assert stale.body == LOADER_BYTES


@pytest.mark.anyio
async def test_etag_of_either_encoding_validates() -> None:
    plain = await fetch("widget.js")
    r = await fetch(
        "widget.js", headers={"Accept-Encoding": "gzip", "If-None-Match": plain.headers["etag"]}
    )
    assert r.status == 304


@pytest.mark.anyio
async def test_head_has_headers_and_no_body() -> None:
    get = await fetch("widget.js", headers={"Accept-Encoding": "gzip"})
    head = await fetch("widget.js", method="HEAD", headers={"Accept-Encoding": "gzip"})
    assert head.status == 200
    assert head.body == b""
    assert head.headers == get.headers


@pytest.mark.anyio
async def test_hashed_files_are_immutable() -> None:
    name = chunk_name()
    r = await fetch(name, headers={"Accept-Encoding": "gzip"})
    assert r.status == 200
    assert r.headers["cache-control"] == IMMUTABLE.decode()
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert gzip.decompress(r.body) == STATIC.joinpath(name).read_bytes()
    css = [p.name for p in STATIC.iterdir() if p.name.endswith(".css")]
    assert len(css) == 1
    r = await fetch(css[0])
    assert r.headers["content-type"] == "text/css; charset=utf-8"
    assert r.headers["cache-control"] == IMMUTABLE.decode()


@pytest.mark.anyio
async def test_versioned_loader_url_is_immutable_only_for_the_current_version() -> None:
    version = load_assets()["widget.js"].version
    current = await fetch("widget.js", query=f"v={version}".encode())
    assert current.headers["cache-control"] == IMMUTABLE.decode()
    also = await fetch("widget.js", query=f"x=1&v={version}".encode())
    assert also.headers["cache-control"] == IMMUTABLE.decode()
    old = await fetch("widget.js", query=b"v=000000000000")
    assert old.headers["cache-control"] == LOADER_CACHE.decode()
    assert old.body == current.body == LOADER_BYTES


@pytest.mark.anyio
@pytest.mark.parametrize("origin", [None, "https://shop.example.com", "null"])
async def test_every_file_may_be_loaded_from_any_origin_without_credentials(
    origin: str | None,
) -> None:
    """A page on another origin loads the loader (script_tag's crossorigin) and the chunk
    (the loader's crossOrigin) in CORS mode, with integrity: ``*``, the same for every
    request (so caches need no Vary: Origin), and never with credentials."""
    version = load_assets()["widget.js"].version
    css = next(p.name for p in STATIC.iterdir() if p.name.endswith(".css"))
    asked = {} if origin is None else {"Origin": origin}
    for name, query in [
        ("widget.js", b""),
        ("widget.js", f"v={version}".encode()),
        (chunk_name(), b""),
        (css, b""),
    ]:
        for accept in ("", "gzip"):
            r = await fetch(name, query=query, headers={**asked, "Accept-Encoding": accept})
            assert r.status == 200
            assert r.headers["access-control-allow-origin"] == "*", name
            assert "access-control-allow-credentials" not in r.headers
            assert "origin" not in r.headers.get("vary", "").lower()
            again = await fetch(
                name,
                query=query,
                headers={**asked, "Accept-Encoding": accept, "If-None-Match": r.headers["etag"]},
            )
            assert again.status == 304
            assert again.headers["access-control-allow-origin"] == "*", name


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_get_405_with_allow(method: str) -> None:
    r = await fetch("widget.js", method=method)
    assert r.status == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"]["code"] == "method_not_allowed"
    assert body["error"]["message"]
    assert int(r.headers["content-length"]) == len(r.body)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "name", ["nope.js", "call-000000000000.js", "../widget.py", "static/widget.js", "", "__init__"]
)
async def test_unknown_names_get_404_json(name: str) -> None:
    r = await fetch(name)
    assert r.status == 404
    assert r.json()["error"]["code"] == "not_found"
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    head = await fetch(name, method="HEAD")
    assert head.status == 404
    assert head.body == b""
    post = await fetch(name, method="POST")  # an unknown name is not found, whatever the method
    assert post.status == 404
    assert "allow" not in post.headers


def test_assets_are_loaded_once_and_shared() -> None:
    assert WidgetAssets().assets is WidgetAssets().assets


@pytest.mark.anyio
async def test_responder_does_not_read_the_request_body() -> None:
    """GET needs no receive(): a responder that waited for a body would hang here."""
    scope = {"type": "http", "method": "GET", "path": "/oneinbox/widget.js", "headers": []}
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("receive() called")

    async def send(message: Any) -> None:
        sent.append(message)

    await WidgetAssets()(scope, receive, send, "widget.js")
    assert sent[0]["status"] == 200


# -- script_tag -----------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(html: str) -> dict[str, str | None]:
    parser = _Tags()
    parser.feed(html)
    assert [t for t, _ in parser.tags] == ["script"]
    assert html.endswith("></script>")
    return parser.tags[0][1]


def test_script_tag_has_versioned_src_and_a_correct_integrity_hash() -> None:
    attrs = parse(script_tag())
    digest = hashlib.sha256(LOADER_BYTES).hexdigest()
    assert attrs["src"] == f"/oneinbox/widget.js?v={digest[:12]}"
    sri = "sha384-" + base64.b64encode(hashlib.sha384(LOADER_BYTES).digest()).decode()
    assert attrs["integrity"] == sri
    assert "async" in attrs
    assert "nonce" not in attrs
    assert "crossorigin" not in attrs  # same-origin by default


def test_script_tag_prefix_nonce_and_data() -> None:
    attrs = parse(
        script_tag(
            "/voice/",
            nonce="n0nce+/=",
            agent="sales",
            label_end="Bye",
            var_customer_id="42",
            mount="manual",
        )
    )
    assert attrs["src"] is not None and attrs["src"].startswith("/voice/widget.js?v=")
    assert attrs["nonce"] == "n0nce+/="
    assert attrs["data-agent"] == "sales"
    assert attrs["data-label-end"] == "Bye"
    assert attrs["data-var-customer-id"] == "42"
    assert attrs["data-mount"] == "manual"


def test_script_tag_escapes_every_value() -> None:
    evil = "\"><script>alert(1)</script><x a='&"
    html = script_tag(nonce=evil, label=evil)
    assert "<script>alert" not in html
    attrs = parse(html)
    assert attrs["nonce"] == evil
    assert attrs["data-label"] == evil


def test_script_tag_absolute_prefix_is_crossorigin() -> None:
    attrs = parse(script_tag("https://cdn.example.com/oneinbox"))
    assert attrs["src"] is not None
    assert attrs["src"].startswith("https://cdn.example.com/oneinbox/widget.js?v=")
    assert attrs["crossorigin"] == "anonymous"


@pytest.mark.parametrize("bad", ["oneinbox", "", "javascript:alert(1)", " /oneinbox"])
def test_script_tag_rejects_a_prefix_that_is_not_a_path_or_url(bad: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        script_tag(bad)


@pytest.mark.parametrize("key", ["a b", 'x"', "x=y", "-lead", "é"])
def test_script_tag_rejects_bad_data_names(key: str) -> None:
    with pytest.raises(ValueError, match="data attribute"):
        script_tag(**{key: "v"})


def test_script_tag_rejects_non_string_values() -> None:
    with pytest.raises(TypeError):
        script_tag(agent=1)  # type: ignore[arg-type]


# -- the committed build --------------------------------------------------------------


def test_loader_names_the_chunk_with_its_sri_hash() -> None:
    name = chunk_name()
    chunk = STATIC.joinpath(name).read_bytes()
    loader = LOADER_BYTES.decode()
    assert f'/{name}"' in loader  # base + "/" + name, folded by the minifier
    assert name == f"call-{hashlib.sha256(chunk).hexdigest()[:12]}.js"
    sri = "sha384-" + base64.b64encode(hashlib.sha384(chunk).digest()).decode()
    assert f'"{sri}"' in loader


def test_bundles_are_within_their_budgets() -> None:
    loader_gz = len(gzip.compress(LOADER_BYTES, 9))
    chunk_gz = len(gzip.compress(STATIC.joinpath(chunk_name()).read_bytes(), 9))
    assert loader_gz <= 6 * 1024, loader_gz
    assert chunk_gz <= 160 * 1024, chunk_gz


def test_loader_holds_no_livekit_code() -> None:
    loader = LOADER_BYTES.decode()
    chunk = STATIC.joinpath(chunk_name()).read_bytes().decode()
    for marker in ("RTCPeerConnection(", "SignalRequest", "livekit", "sdp"):
        assert marker not in loader, marker
    assert "SignalRequest" in chunk  # the markers are real: the chunk has them


def test_loader_uses_no_inline_styles() -> None:
    """style-src 'self' forbids style attributes and <style>: the loader must not make them."""
    loader = LOADER_BYTES.decode()
    for forbidden in ("<style", 'createElement("style")', ".cssText", 'setAttribute("style"'):
        assert forbidden not in loader, forbidden
    assert "adoptedStyleSheets" in loader
