"""What the routes accept from the browser, and what they send to OneInbox from the hooks.

The browser's body is strict JSON: one object, no duplicate keys, no NaN or Infinity
(``1e999`` too: it would become infinity), only the route's own fields. Client
variables are allowed by name, as strings or finite numbers. Hook values are turned
into JSON here (a UUID, a date, a Decimal become strings), so that what goes
upstream is always valid JSON and a hook returning something else is named.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from .errors import bad_request

MAX_BODY_BYTES = 16 * 1024
MAX_CLIENT_VARIABLE_CHARS = 500
#: LiveKit's standard token-endpoint request (every LiveKit client SDK's endpoint token
#: source sends it, snake_case): the agent may be picked through ``room_config``; the rest
#: names what only the server decides here, so it is refused (LiveKit: "if a given field
#: shouldn't be configurable, return a corresponding 4xx status code").
LIVEKIT_FIELDS = frozenset(
    {
        "room_name",
        "participant_identity",
        "participant_name",
        "participant_metadata",
        "participant_attributes",
        "room_config",
    }
)
START_FIELDS = frozenset({"agent", "variables"}) | LIVEKIT_FIELDS
END_FIELDS = frozenset({"end_token"})
#: Nesting of a hook's value sent upstream; deeper is a mistake, not data.
MAX_HOOK_DEPTH = 32


def parse_body(raw: bytes, fields: Collection[str] | None) -> dict[str, Any]:
    """The browser's JSON object with only ``fields`` (None: any); empty means ``{}``."""
    if raw == b"{}" or not raw.strip():  # the widget's usual body, answered without a parse
        return {}
    try:
        payload = _DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_request("The body is not valid UTF-8.") from None
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"The body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise bad_request("The body must be a JSON object.")
    unknown = [] if fields is None else sorted(set(payload) - set(fields))
    if unknown:
        raise bad_request(f"Unknown field: {unknown[0][:40]!r}.")
    return payload


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


#: Made once: ``json.loads`` with hooks builds a new decoder on every call.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants, parse_float=_finite_float
)


def pick_agent(default: str | None, agents: Mapping[str, str], name: Any) -> str:
    """OneInbox's agent id for the agent name the browser asked for (None: the default)."""
    if name is None:
        if default is None:
            raise bad_request(f"Choose an agent: {', '.join(sorted(agents))}.")
        return default
    if not isinstance(name, str):
        raise bad_request("`agent` must be a string.")
    agent_id = agents.get(name)
    if agent_id is None:
        raise bad_request(f"Unknown agent {name[:40]!r}.")
    return agent_id


_DECIDED_BY_SERVER = tuple(sorted(LIVEKIT_FIELDS - {"room_config"}))


def requested_agent(body: Mapping[str, Any]) -> Any:
    """The agent name a start-call asks for: ``agent``, or LiveKit's
    ``room_config.agents[0].agent_name``; every other LiveKit field is refused."""
    if not body:
        return None
    for field in _DECIDED_BY_SERVER:
        if field in body:
            raise bad_request(f"`{field}` is decided by the server and may not be set here.")
    config = body.get("room_config")
    if config is None:
        return body.get("agent")
    if not isinstance(config, dict) or set(config) - {"agents"}:
        raise bad_request("`room_config` may only name the agent (`agents[0].agent_name`).")
    agents = config.get("agents", [])
    if not isinstance(agents, list) or len(agents) > 1:
        raise bad_request("`room_config.agents` may name one agent.")
    if not agents:
        return body.get("agent")
    dispatch = agents[0]
    if not isinstance(dispatch, dict) or set(dispatch) - {"agent_name", "agentName"}:
        raise bad_request("`room_config.agents[0]` may only set `agent_name`.")
    name = dispatch.get("agent_name", dispatch.get("agentName"))
    if "agent" in body and body["agent"] != name:
        raise bad_request("`agent` and `room_config` name different agents.")
    return name


def browser_variables(allowed: Collection[str], value: Any) -> dict[str, Any]:
    """The variables the browser sent, each allowed by name, type and length."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("`variables` must be a JSON object.")
    for name, item in value.items():
        if name not in allowed:
            raise bad_request(f"Variable {name[:40]!r} may not be set here.")
        # A JSON true is a Python bool, which is an int: refused by name.
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise bad_request(f"Variable {name[:40]!r} must be a string or a number.")
        if isinstance(item, str) and len(item) > MAX_CLIENT_VARIABLE_CHARS:
            raise bad_request(
                f"Variable {name[:40]!r} is longer than {MAX_CLIENT_VARIABLE_CHARS} characters."
            )
    return value


class HookValueError(TypeError):
    """A hook returned something that is not a dict of JSON values; the message says where."""


def hook_mapping(name: str, value: Any) -> dict[str, Any]:
    """A ``variables`` / ``metadata`` hook's result as a dict of JSON values."""
    if value is None:
        return {}
    # A dict, nearly always: asked first, as isinstance against the Mapping ABC costs 6x.
    if type(value) is not dict and not isinstance(value, Mapping):
        raise HookValueError(f"the {name} hook must return a dict, not {type(value).__name__}")
    return {
        str(key): item
        if item is None or isinstance(item, str | bool | int)  # as is; no name to build
        else _json_value(f"{name}[{key!r}]", item, 0)
        for key, item in value.items()
    }


def json_form(value: Any) -> Any:
    """``value`` as JSON can carry it (see ``hook_mapping``), else its ``str()``."""
    try:
        return _json_value("value", value, 0)
    except HookValueError:
        return str(value)


def _json_value(where: str, value: Any, depth: int) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HookValueError(f"{where} is {value}, which JSON cannot carry")
        return value
    if isinstance(value, uuid.UUID | decimal.Decimal):
        if isinstance(value, decimal.Decimal) and not value.is_finite():
            raise HookValueError(f"{where} is {value}, which JSON cannot carry")
        return str(value)
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    if depth >= MAX_HOOK_DEPTH:
        raise HookValueError(f"{where} is nested more than {MAX_HOOK_DEPTH} levels deep")
    if isinstance(value, Mapping):
        return {
            str(key): _json_value(f"{where}[{key!r}]", item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_json_value(f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value)]
    raise HookValueError(f"{where} is a {type(value).__name__}, which JSON cannot carry")
