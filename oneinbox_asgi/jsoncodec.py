"""JSON the broker writes (its answers, its requests to OneInbox) and reads (OneInbox's
answers, its own end handles): orjson where it is installed (a dependency on CPython),
the standard library's ``json`` otherwise.

Why a library: a start-call's answer carries a participant token of about 500
characters, which ``json`` escapes one character at a time: 3 µs for the answer through
``json.dumps`` (2.4 with its C encoder made once), an eighth of the broker's own CPU per
start-call, where orjson takes 0.2 (``bench.costs``, the "json:" rows). Reading
OneInbox's answer takes 0.4 µs where ``json`` takes 2.4.
orjson over msgspec (also measured): as fast to read, twice as fast to write, and
nothing else in it that the broker would not use.

What the browser sends is not read here: ``payload.parse_body`` needs what orjson does
not offer (duplicate keys refused, every number kept exactly); nor are the Redis store's
call entries, whose ``caller`` may be any integer a host's ``authorize`` returned.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # PyPy, or a platform without its wheels
    orjson = None  # type: ignore[assignment]

_FALLBACK = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dumps(value: object) -> bytes:
    """``value`` as compact JSON text in UTF-8.

    Only finite numbers may be given (orjson would write NaN as ``null``; ``json``
    refuses it): payload.py checks the numbers hooks and browsers give. What orjson
    refuses (an int beyond 64 bits, a lone surrogate) is written by ``json``, with
    ``\\u`` escapes outside ASCII.
    """
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:  # orjson.JSONEncodeError
            pass
    return _FALLBACK.encode(value).encode()


def loads(text: bytes | str) -> Any:
    """The value of JSON ``text``; ``ValueError`` if it is not JSON.

    What orjson refuses and ``json`` reads (NaN and Infinity, ``1e400``, a lone surrogate
    escape, a byte-order mark) is read by ``json``, so nothing readable before is refused
    now. One difference stays: with orjson an integer beyond 64 bits reads as a float
    (OneInbox's numbers are durations, counts and timestamps).
    """
    if orjson is not None:
        try:
            return orjson.loads(text)
        except ValueError:  # orjson.JSONDecodeError
            pass
    return json.loads(text)
