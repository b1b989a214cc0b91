"""Guards for money and abuse: cross-site refusal, per-caller limits, end-call handles.

The limit stores are public here so an app can pass one to ``store=`` (with its own
clock, key prefix or timeout); ``RedisStore`` imports redis-py only when made.
"""

from ..stores.base import LimitStore, StoreUnavailable
from ..stores.memory import MemoryStore
from ..stores.redis import RedisStore
from .limits import Budget, BudgetAlert, RateLimit
from .switch import KillSwitch

__all__ = [
    "Budget",
    "BudgetAlert",
    "KillSwitch",
    "LimitStore",
    "MemoryStore",
    "RateLimit",
    "RedisStore",
    "StoreUnavailable",
]
