"""Every option of the middleware, checked once into one frozen ``Settings``.

Each check raises ``ConfigurationError`` naming what to set. Options read from the
environment (``ONEINBOX_API_KEY``, ``ONEINBOX_AGENT_ID``, ``ONEINBOX_BASE_URL``,
``ONEINBOX_REDIS_URL``) are read here and nowhere else.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Required, TypedDict
from urllib.parse import urlsplit

import httpx

from .checks import hook_or_none, positive_int_or_none, positive_seconds, strings
from .client_address import DEFAULT_IPV6_SUBNET, Network
from .errors import ConfigurationError
from .guards.limits import Budget, BudgetAlert, RateLimit
from .hooks import EventHook, Hook, WebhookVerifier
from .sessions import SessionReader
from .stores.base import BudgetStore, CallLedger, LimitStore
from .stores.redis_connect import URL_PREFIXES
from .transport import Transport
from .transport.httpx_transport import HttpxTransport
from .upstream import DEFAULT_BASE_URL

DEFAULT_PREFIX = "/oneinbox"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RATE_LIMIT = "5/minute"
DEFAULT_MAX_CONCURRENT_CALLS = 1
DEFAULT_MAX_CALL_SECONDS = 900.0
DEFAULT_ALERT_THRESHOLD = 0.8
REDIS_URL_ENV = "ONEINBOX_REDIS_URL"
#: One server, Sentinel or Cluster (and their valkey spellings): stores/redis_connect.py.
REDIS_SCHEMES = URL_PREFIXES
#: Marks ``authorize`` as not passed (None is refused with the same message).
REQUIRED: Any = object()


class Options(TypedDict, total=False):
    """The middleware's keyword options, for type checkers (README: "Options")."""

    authorize: Required[Hook]
    api_key: str | None
    agent_id: str | None
    agents: Mapping[str, str] | None
    base_url: str | None
    variables: Hook | None
    client_variables: Collection[str]
    metadata: Hook | None
    prefix: str
    session: SessionReader | None
    timeout: float
    http_client: httpx.AsyncClient | None
    tracer_provider: Any
    meter_provider: Any
    trusted_origins: Collection[str]
    trusted_proxies: Collection[str]
    ipv6_subnet: int
    rate_limit: str | None
    max_concurrent_calls: int | None
    max_call_seconds: float
    store: LimitStore | str | None
    on_call_started: EventHook | None
    on_call_ended: EventHook | None
    on_call_record: EventHook | None
    webhooks: bool
    webhook_verifier: WebhookVerifier | None
    tenant: Hook | None
    caller_budget: Budget | None
    tenant_budget: Budget | None
    global_budget: Budget | None
    budget_alert_threshold: float
    on_budget_alert: Callable[[BudgetAlert], Any] | None
    browser_metrics: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The checked options (README: "Options"). Built by ``Settings.from_options``."""

    api_key: str
    base_url: str
    timeout: float
    #: An injected client's transport; None: our own pooled one.
    transport: Transport | None
    #: OpenTelemetry providers to report to; None: the global ones (telemetry.py).
    tracer_provider: Any
    meter_provider: Any
    agent_id: str | None
    agents: Mapping[str, str]
    authorize: Hook
    variables: Hook | None
    client_variables: frozenset[str]
    metadata: Hook | None
    prefix: str
    session: SessionReader | None
    trusted_origins: frozenset[str]
    trusted_proxies: tuple[Network, ...]
    #: The network an IPv6 caller keyed by address is limited by (128: per address).
    ipv6_subnet: int
    rate: RateLimit | None
    max_concurrent_calls: int | None
    max_call_seconds: float
    store: LimitStore
    #: Whether the middleware made the store (and so closes it).
    owns_store: bool
    on_call_started: EventHook | None
    on_call_ended: EventHook | None
    #: OneInbox's full record of an ended call (transcript, summary), once per call.
    on_call_record: EventHook | None
    #: Whether ``POST {prefix}/webhook`` is mounted for OneInbox's deliveries.
    webhooks: bool
    #: ``(headers, raw body) -> bool`` (sync or async): a delivery's signature check.
    webhook_verifier: WebhookVerifier | None
    #: ``(CallRequest) -> str | None``: the team, customer or service a call counts for.
    tenant: Hook | None
    #: The caller's daily budgets; each tenant's limits; everyone's limits.
    caller_budget: Budget | None
    tenant_budget: Budget | None
    global_budget: Budget | None
    #: The share of a daily budget at which ``on_budget_alert`` first fires.
    budget_alert_threshold: float
    on_budget_alert: Callable[[BudgetAlert], Any] | None
    #: Whether ``POST {prefix}/metrics`` is mounted for the widget's call figures.
    browser_metrics: bool

    def __repr__(self) -> str:  # never the key
        return f"Settings(prefix={self.prefix!r}, base_url={self.base_url!r})"

    @classmethod
    def from_options(
        cls,
        *,
        authorize: Hook = REQUIRED,
        api_key: str | None = None,
        agent_id: str | None = None,
        agents: Mapping[str, str] | None = None,
        base_url: str | None = None,
        variables: Hook | None = None,
        client_variables: Collection[str] = (),
        metadata: Hook | None = None,
        prefix: str = DEFAULT_PREFIX,
        session: SessionReader | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        trusted_origins: Collection[str] = (),
        trusted_proxies: Collection[str] = (),
        ipv6_subnet: int = DEFAULT_IPV6_SUBNET,
        rate_limit: str | None = DEFAULT_RATE_LIMIT,
        max_concurrent_calls: int | None = DEFAULT_MAX_CONCURRENT_CALLS,
        max_call_seconds: float = DEFAULT_MAX_CALL_SECONDS,
        store: LimitStore | str | None = None,
        on_call_started: EventHook | None = None,
        on_call_ended: EventHook | None = None,
        on_call_record: EventHook | None = None,
        webhooks: bool = False,
        webhook_verifier: WebhookVerifier | None = None,
        tenant: Hook | None = None,
        caller_budget: Budget | None = None,
        tenant_budget: Budget | None = None,
        global_budget: Budget | None = None,
        budget_alert_threshold: float = DEFAULT_ALERT_THRESHOLD,
        on_budget_alert: Callable[[BudgetAlert], Any] | None = None,
        browser_metrics: bool = False,
    ) -> Settings:
        key = api_key if api_key is not None else os.environ.get("ONEINBOX_API_KEY")
        if not key or not isinstance(key, str):
            raise ConfigurationError(
                "OneInbox API key missing: set ONEINBOX_API_KEY or pass api_key="
            )
        if authorize is REQUIRED or authorize is None:
            raise ConfigurationError(
                "authorize= is required: pass a hook that returns the caller's id "
                "(or oneinbox_asgi.allow_anonymous to let anyone call)"
            )
        agents_by_name = _agents(agents)
        default_agent = agent_id if agent_id is not None else os.environ.get("ONEINBOX_AGENT_ID")
        if not default_agent and not agents_by_name:
            raise ConfigurationError(
                "no agent configured: set ONEINBOX_AGENT_ID, or pass agent_id= or agents="
            )
        if session is not None and not isinstance(session, SessionReader):
            raise ConfigurationError("session must be a session reader with an async read()")
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError("http_client must be an httpx.AsyncClient")
        checked: dict[str, Any] = {
            "api_key": key,
            "base_url": _base_url(base_url),
            "timeout": positive_seconds("timeout", timeout),
            "transport": None if http_client is None else HttpxTransport(http_client),
            "tracer_provider": _provider("tracer_provider", tracer_provider, "get_tracer"),
            "meter_provider": _provider("meter_provider", meter_provider, "get_meter"),
            "agent_id": default_agent or None,
            "agents": agents_by_name,
            "authorize": _required_hook("authorize", authorize),
            "variables": hook_or_none("variables", variables),
            "client_variables": frozenset(
                strings("client_variables", client_variables, "customer_name")
            ),
            "metadata": hook_or_none("metadata", metadata),
            "prefix": _prefix(prefix),
            "session": session,
            "trusted_origins": frozenset(
                _origin(origin)
                for origin in strings("trusted_origins", trusted_origins, "https://example.com")
            ),
            "trusted_proxies": tuple(
                _network(entry)
                for entry in strings("trusted_proxies", trusted_proxies, "10.0.0.0/8")
            ),
            "ipv6_subnet": _ipv6_subnet(ipv6_subnet),
            "rate": None if rate_limit is None else RateLimit.parse(rate_limit),
            "max_concurrent_calls": positive_int_or_none(
                "max_concurrent_calls", max_concurrent_calls
            ),
            "max_call_seconds": positive_seconds("max_call_seconds", max_call_seconds),
            "on_call_started": hook_or_none("on_call_started", on_call_started, "CallEvent"),
            "on_call_ended": hook_or_none("on_call_ended", on_call_ended, "CallEvent"),
            "on_call_record": hook_or_none("on_call_record", on_call_record, "CallEvent"),
            "webhooks": _flag("webhooks", webhooks),
            "webhook_verifier": hook_or_none(
                "webhook_verifier", webhook_verifier, "headers and the raw body"
            ),
            "browser_metrics": _flag("browser_metrics", browser_metrics),
        }
        if checked["webhook_verifier"] is not None and not checked["webhooks"]:
            raise ConfigurationError("webhook_verifier= needs webhooks=True")
        checked.update(
            tenant=hook_or_none("tenant", tenant),
            caller_budget=_budget("caller_budget", caller_budget, daily_only=True),
            tenant_budget=_budget("tenant_budget", tenant_budget),
            global_budget=_budget("global_budget", global_budget),
            budget_alert_threshold=_share("budget_alert_threshold", budget_alert_threshold),
            on_budget_alert=hook_or_none("on_budget_alert", on_budget_alert, "BudgetAlert"),
        )
        if checked["tenant_budget"] is not None and checked["tenant"] is None:
            raise ConfigurationError(
                "tenant_budget= needs tenant=: a hook naming the tenant of a CallRequest"
            )
        budgets = ("caller_budget", "tenant_budget", "global_budget")
        # Last: a store made from a URL must not be left open by a later failed check.
        opened, owned = open_store(store)
        if any(checked[name] is not None for name in budgets) and not isinstance(
            opened, BudgetStore
        ):
            raise ConfigurationError(
                "tenant, global and daily budgets need a store that keeps them (MemoryStore, "
                f"RedisStore); {type(opened).__name__} is a LimitStore without them"
            )
        if checked["webhooks"] and not isinstance(opened, CallLedger):
            raise ConfigurationError(
                "webhooks=True needs a store that keeps calls (MemoryStore, RedisStore); "
                f"{type(opened).__name__} is a LimitStore without the CallLedger methods"
            )
        return cls(store=opened, owns_store=owned, **checked)


def _provider(name: str, value: Any, method: str) -> Any:
    """An OpenTelemetry provider (anything with ``method``), or None for the global one."""
    if value is not None and not callable(getattr(value, method, None)):
        raise ConfigurationError(
            f"{name} must be an OpenTelemetry {name.replace('_', ' ')} (with {method}()), "
            f"or None for the global one, not {value!r}"
        )
    return value


def _budget(name: str, value: Any, *, daily_only: bool = False) -> Budget | None:
    if value is None:
        return None
    if not isinstance(value, Budget):
        raise ConfigurationError(
            f"{name} must be a oneinbox_asgi.guards.Budget(...), not {value!r:.60}"
        )
    if daily_only and (value.rate_limit is not None or value.max_concurrent_calls is not None):
        raise ConfigurationError(
            f"{name} sets only calls_per_day and minutes_per_day: the caller's rate and cap "
            "are rate_limit= and max_concurrent_calls="
        )
    return value


def _share(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigurationError(f"{name} must be a share above 0 and at most 1, not {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value


def _required_hook(name: str, value: Any) -> Hook:
    if not callable(value):
        raise ConfigurationError(f"{name} must be a function of the CallRequest")
    hook: Hook = value
    return hook


def _agents(agents: Mapping[str, str] | None) -> dict[str, str]:
    if agents is not None and not isinstance(agents, Mapping):
        raise ConfigurationError("agents must map names to agent ids, such as {'sales': 'agt_…'}")
    checked = dict(agents or {})
    for name, value in checked.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name or not value:
            raise ConfigurationError("agents must map names to agent ids, both non-empty strings")
    return checked


def _base_url(option: str | None) -> str:
    url = option if option is not None else os.environ.get("ONEINBOX_BASE_URL") or DEFAULT_BASE_URL
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ConfigurationError(f"base_url must be an http(s) URL, not {url!r}")
    return url


def _prefix(option: Any) -> str:
    if not isinstance(option, str) or not option.startswith("/") or "//" in option:
        raise ConfigurationError(f"prefix must be a path such as '/oneinbox', not {option!r}")
    prefix = option.rstrip("/")
    if not prefix:
        raise ConfigurationError("prefix must not be '/': the broker needs a path of its own")
    return prefix


def _origin(origin: str) -> str:
    """``scheme://host[:port]``, lower-cased."""
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigurationError(f"trusted_origins: {origin!r} is not a valid origin") from None
    if not parts.scheme or not parts.netloc:
        raise ConfigurationError(
            f"trusted_origins: {origin!r} needs a scheme and a host, like 'https://example.com'"
        )
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigurationError(
            f"trusted_origins: {origin!r} must be only scheme://host[:port] "
            "(no path, not even a trailing '/', no query, no user)"
        )
    return origin.lower()


def _network(entry: str) -> Network:
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ConfigurationError(
            f"trusted_proxies: {entry!r} is not an IP address or CIDR network"
        ) from None


def _ipv6_subnet(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 128:
        raise ConfigurationError(
            "ipv6_subnet must be an IPv6 prefix length from 1 to 128, such as 64 (callers "
            f"keyed by address are limited per /64 network) or 128 (per address), not {value!r}"
        )
    return value


def open_store(option: LimitStore | str | None) -> tuple[LimitStore, bool]:
    """The store the ``store`` option names, and whether the middleware owns (closes) it.

    ``None``: env ``ONEINBOX_REDIS_URL`` if set, else in-process. ``"memory"``:
    in-process. ``"redis://…"``, ``"rediss://…"``, ``"unix://…"``: one Redis;
    ``"redis+sentinel://…"``: through Sentinel; ``"redis+cluster://…"``: a Redis Cluster
    (``valkey`` may stand for ``redis`` in each; see stores/redis_connect.py). A
    ``LimitStore`` instance is used as it is, and closed by whoever made it.
    """
    if option is None:
        option = os.environ.get(REDIS_URL_ENV) or "memory"
    if isinstance(option, str):
        if option == "memory":
            from .stores.memory import MemoryStore

            return MemoryStore(), True
        if option.startswith(REDIS_SCHEMES):
            from .stores.redis import RedisStore

            return RedisStore(option), True
        raise ConfigurationError(
            "store must be 'memory', a Redis URL (redis://, rediss://, unix://, "
            "redis+sentinel://, redis+cluster://, valkey://…), or a LimitStore "
            f"(got a str starting {option[:8]!r})"
        )
    if isinstance(option, LimitStore):
        return option, False
    raise ConfigurationError(f"store must be a URL string or a LimitStore, not {option!r}")
