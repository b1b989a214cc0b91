"""Redaction of secrets from text that is logged: the API key and anything token-shaped.

Text that came from OneInbox (an error body's ``detail``) is logged in the audit
line's ``reason``. OneInbox may echo back what we sent it, so before that text goes
anywhere it loses the API key, participant tokens (JWTs) and end-call handles. The
order matters: redact first, then cut to length, so a secret straddling the cut
cannot leave a readable piece behind.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
#: A JWT (a participant token): base64url header, which for JSON starts ``eyJ``,
#: payload and signature.
_JWT = r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
#: Our end-call handles (``guards.handles``).
_HANDLE = r"oieh[0-9]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
#: OneInbox's key formats: secret and publishable keys.
_KEY = r"oi_(?:sk|pk)_[A-Za-z0-9_]+"
_TOKEN_SHAPED = re.compile(f"{_JWT}|{_HANDLE}|{_KEY}")
#: The shortest piece of the key at a cut edge that is still redacted.
_MIN_EDGE = 4


class Redactor:
    """Removes one API key (whole or in part at either edge) and token-shaped strings."""

    __slots__ = ("_key",)

    def __init__(self, api_key: str) -> None:
        self._key = api_key

    def __repr__(self) -> str:  # never the key
        return "Redactor()"

    def __call__(self, text: str, limit: int | None = None) -> str:
        """``text`` without secrets, then cut to ``limit`` characters."""
        key = self._key
        if key:
            text = text.replace(key, REDACTED)
        text = _TOKEN_SHAPED.sub(REDACTED, text)
        text = self._edges(text)
        if limit is not None and len(text) > limit:
            text = self._edges(text[:limit])
        return text

    def _edges(self, text: str) -> str:
        """A piece of the key cut off at either end of ``text`` (someone else's cut)."""
        key = self._key
        if len(key) < _MIN_EDGE:
            return text
        for size in range(min(len(key) - 1, len(text)), _MIN_EDGE - 1, -1):
            if text.endswith(key[:size]):
                text = text[:-size] + REDACTED
                break
        for size in range(min(len(key) - 1, len(text)), _MIN_EDGE - 1, -1):
            if text.startswith(key[-size:]):
                text = REDACTED + text[size:]
                break
        return text
