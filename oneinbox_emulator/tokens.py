"""LiveKit-format access tokens: HS256 JWTs carrying a ``video`` grant for one room."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

DEFAULT_TTL_SECONDS = 15 * 60


class TokenError(Exception):
    """A participant token that must not be let in; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token lets its holder do."""

    identity: str
    name: str
    room: str
    can_publish: bool
    can_subscribe: bool
    can_publish_data: bool


@dataclass(frozen=True, slots=True)
class TokenSigner:
    """Mints and checks participant tokens with one LiveKit API key/secret pair."""

    api_key: str
    api_secret: str

    def mint(
        self,
        *,
        room: str,
        identity: str,
        name: str = "",
        ttl: float = DEFAULT_TTL_SECONDS,
        now: float | None = None,
    ) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.api_key,
            "sub": identity,
            "name": name,
            "nbf": issued - 5,
            "iat": issued,
            "exp": issued + int(ttl),
            "video": {
                "room": room,
                "roomJoin": True,
                "canPublish": True,
                "canSubscribe": True,
                "canPublishData": True,
            },
        }
        return jwt.encode(claims, self.api_secret, algorithm="HS256")

    def verify(self, token: str, *, now: float | None = None) -> Grant:
        """Check signature, issuer, time window and room grant; raise TokenError otherwise."""
        # With an explicit `now` (tests), the time window is checked here, not by PyJWT's clock.
        options: dict[str, Any] = {"require": ["exp", "sub", "iss"]}
        if now is not None:
            options |= {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
        try:
            claims = jwt.decode(
                token,
                self.api_secret,
                algorithms=["HS256"],
                issuer=self.api_key,
                options=options,  # type: ignore[arg-type]
                leeway=0,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("access token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("access token is not valid yet") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("access token was issued for another API key") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("access token signature is invalid") from exc
        except jwt.DecodeError as exc:  # includes a signature that is not even base64
            raise TokenError("access token is malformed or its signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"access token is malformed: {exc}") from exc
        if now is not None and claims["exp"] <= now:
            raise TokenError("access token has expired")
        if now is not None and claims.get("nbf", now) > now:
            raise TokenError("access token is not valid yet")
        video = claims.get("video")
        if not isinstance(video, dict) or not video.get("roomJoin") or not video.get("room"):
            raise TokenError("access token does not grant joining a room")
        return Grant(
            identity=str(claims["sub"]),
            name=str(claims.get("name") or ""),
            room=str(video["room"]),
            can_publish=bool(video.get("canPublish", True)),
            can_subscribe=bool(video.get("canSubscribe", True)),
            can_publish_data=bool(video.get("canPublishData", True)),
        )
