"""JSON the broker writes and reads back: orjson where installed, else the standard
library, the same values either way, and nothing lost where orjson refuses a value."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from oneinbox_asgi import jsoncodec

orjson = jsoncodec.orjson  # None where it is not installed (PyPy): its cases are skipped

ANSWER = {
    "call_id": "call_000000000001",
    "server_url": "wss://voice.example.test",
    "participant_token": "eyJhbGciOiJIUzI1NiJ9." + "x" * 460,
    "end_token": "oieh1.abc.def",
}
VALUES = [
    ANSWER,
    {"error": {"code": "bad_request", "message": "Unknown agent 'Zoë' — try \"sales\"."}},
    {"variables": {"n": 3, "ratio": 0.25, "neg": -1, "ok": True, "none": None, "list": [1, "a"]}},
    {"text": "tab\tnew\nline \u0000 \u2028 😀"},
]


@pytest.fixture(params=["orjson", "json"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "json":
        monkeypatch.setattr(jsoncodec, "orjson", None)
    elif orjson is None:
        pytest.skip("orjson is not installed here")
    yield request.param


@pytest.mark.parametrize("value", VALUES)
def test_what_is_written_reads_back_as_the_same_value(codec: str, value: object) -> None:
    text = jsoncodec.dumps(value)
    assert isinstance(text, bytes)
    assert json.loads(text) == value
    assert jsoncodec.loads(text) == value
    assert b": " not in text and b", " not in text  # compact


@pytest.mark.skipif(orjson is None, reason="orjson is not installed here")
def test_orjson_writes_what_json_writes_compact_in_utf8() -> None:
    for value in VALUES:
        expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        assert jsoncodec.dumps(value) == expected


@pytest.mark.parametrize("value", [2**70, {"caller": -(2**64)}, "lone \udc80 surrogate"])
def test_a_value_orjson_refuses_is_written_by_json(codec: str, value: object) -> None:
    if codec == "orjson":
        with pytest.raises(TypeError):
            orjson.dumps(value)  # type: ignore[union-attr]
    assert json.loads(jsoncodec.dumps(value)) == value


def test_nan_is_never_written(codec: str) -> None:
    if codec == "json":
        with pytest.raises(ValueError):
            jsoncodec.dumps({"x": float("nan")})
    else:  # orjson writes null: payload.py refuses non-finite numbers before this
        assert jsoncodec.dumps({"x": float("nan")}) == b'{"x":null}'


@pytest.mark.parametrize("text", [b"", b"{", b"\xff{}", b"{'a': 1}"])
def test_what_is_not_json_is_a_value_error(codec: str, text: bytes) -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(text)


@pytest.mark.parametrize(
    "text", [b'{"x": NaN}', b'{"x": 1e400}', b'"\\ud800"', b"\xef\xbb\xbf{}", b"[-Infinity]"]
)
def test_what_json_reads_is_read_the_same(codec: str, text: bytes) -> None:
    # Readable before orjson, readable now (orjson refuses these; json reads them).
    assert repr(jsoncodec.loads(text)) == repr(json.loads(text))  # NaN != NaN; reprs match
