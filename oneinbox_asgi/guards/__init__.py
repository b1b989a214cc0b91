"""Guards for money and abuse: cross-site refusal, per-caller limits, end-call handles.

The limit stores are public so an app can pass one to ``store=`` (with its own
clock, key prefix or timeout); ``RedisStore`` imports redis-py only when made.
"""

from .limits import RateLimit
from .memory import MemoryStore
from .redis import RedisStore
from .store import LimitStore, StoreUnavailable

__all__ = ["LimitStore", "MemoryStore", "RateLimit", "RedisStore", "StoreUnavailable"]
