"""Checks shared by every option: each raises ``ConfigurationError`` naming the option."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

from .errors import ConfigurationError


def positive_seconds(name: str, value: Any) -> float:
    """A finite number of seconds above zero (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, not {value!r}")
    return float(value)


def positive_int_or_none(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int or None, not {value!r}")
    return value


def hook_or_none(name: str, value: Any, of: str = "CallRequest") -> Callable[..., Any] | None:
    if value is None:
        return None
    if not callable(value):
        raise ConfigurationError(f"{name} must be a function of the {of}, not {value!r}")
    hook: Callable[..., Any] = value
    return hook


def strings(name: str, value: Any, example: str) -> tuple[str, ...]:
    """A collection of strings (a lone str is refused: it would be read letter by letter)."""
    if isinstance(value, str | bytes) or not isinstance(value, Collection):
        raise ConfigurationError(
            f"{name} must be a collection of strings such as [{example!r}], not {value!r}"
        )
    for item in value:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"{name} entries must be strings such as {example!r}, not {item!r}"
            )
    return tuple(value)
