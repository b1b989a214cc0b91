"""Per-caller limits: a sliding-window rate limit and a cap on concurrent calls.

They are counted per *limit key*: ``id:<caller>`` when ``authorize`` returned an id
(a str or an int), else ``ip:<client address>``. Both limits live in one
``LimitStore``, so replicas sharing a Redis share one budget. A store that cannot
answer raises ``StoreUnavailable`` through here, and start-call fails closed (503
``limits_unavailable``): a limit not enforced is an open door.
"""

from __future__ import annotations

import datetime
import inspect
import itertools
import logging
import math
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..checks import positive_int_or_none, positive_seconds
from ..client_address import network_of
from ..errors import CallError, ConfigurationError
from ..stores.base import (
    DAY_MS,
    Admission,
    BudgetStore,
    LimitStore,
    ScopeRule,
    StoreUnavailable,
    duration_ms,
    now_ms,
    pause_target,
)

logger = logging.getLogger("oneinbox_asgi")

DEFAULT_RATE_LIMIT = "5/minute"
DEFAULT_MAX_CONCURRENT_CALLS = 1
DEFAULT_MAX_CALL_SECONDS = 900.0

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-zA-Z]+)\s*$")


def _unit_seconds(word: str) -> float | None:
    word = word.lower()
    if word not in _UNITS and len(word) > 2 and word.endswith("s"):
        word = word[:-1]  # plurals: minutes, hours, secs; never "ms"
    return _UNITS.get(word)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``limit`` attempts in any ``period`` seconds, e.g. ``RateLimit.parse("5/minute")``."""

    limit: int
    period: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"5/minute"``, ``"100/hour"``, ``"10/30 seconds"``, ``"2/s"``: count / [n] unit."""
        match = _RATE.match(text) if isinstance(text, str) else None
        unit = _unit_seconds(match.group(3)) if match else None
        if match is None or unit is None:
            raise ConfigurationError(
                f"rate_limit must look like '5/minute' (units: second, minute, hour, day) "
                f"or be None, not {text!r}"
            )
        limit = int(match.group(1))
        period = float(match.group(2) or 1) * unit
        if limit < 1 or period <= 0:
            raise ConfigurationError(f"rate_limit must allow at least 1 call, not {text!r}")
        return cls(limit, period)

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


class _SlotIds:
    """Slot ids, unique across replicas and restarts: a random prefix per process, then a
    count (a fresh random token per slot cost as much as the rest of an admission). A
    forked worker draws its own prefix, so workers forked from one parent never share ids.
    Ids need not be secret: a handle names its slot under the handle's signature."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._prefix = secrets.token_urlsafe(9)
        self._numbers = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._numbers):x}"


_slot_ids = _SlotIds()
new_slot_id = _slot_ids.next
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_slot_ids.reseed)


def limit_key(caller: Any, client_ip: str | None) -> str:
    """``id:<what authorize returned>`` for a str or int, else ``ip:<client network>``: the
    address for IPv4, the ``/ipv6_subnet`` network for IPv6 (``client_address.network_of``)."""
    if isinstance(caller, str) or (isinstance(caller, int) and not isinstance(caller, bool)):
        return f"id:{caller}"
    return f"ip:{network_of(client_ip)}"


@dataclass(slots=True)  # not frozen: made on every start-call, where frozen costs 3x
class Slot:
    """What one admitted start-call holds: a slot id at every capped scope (None when no
    scope has a cap), when its lease ends, and what to give back if the call never starts."""

    id: str | None
    #: When the lease ends: milliseconds of the store's clock.
    expires_ms: int
    rules: tuple[ScopeRule, ...] = ()
    #: The UTC day (number) the call was counted on.
    day: int = 0


@dataclass(frozen=True, slots=True)
class Budget:
    """The limits of one scope (``tenant_budget=``, ``global_budget=``, ``caller_budget=``):
    a rate, a cap on calls at once, and a daily budget in calls and in call minutes (UTC
    days). ``None`` leaves that limit off. Checked when made."""

    rate_limit: str | None = None
    max_concurrent_calls: int | None = None
    calls_per_day: int | None = None
    minutes_per_day: float | None = None
    #: The parsed ``rate_limit``.
    rate: RateLimit | None = field(init=False, default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "rate", None if self.rate_limit is None else RateLimit.parse(self.rate_limit)
        )
        positive_int_or_none("max_concurrent_calls", self.max_concurrent_calls)
        positive_int_or_none("calls_per_day", self.calls_per_day)
        if self.minutes_per_day is not None:
            positive_seconds("minutes_per_day", self.minutes_per_day)

    @property
    def has_daily(self) -> bool:
        return self.calls_per_day is not None or self.minutes_per_day is not None

    def rule(self, scope: str, key: str) -> ScopeRule:
        return ScopeRule(
            scope,
            key,
            None if self.rate is None else (self.rate.limit, self.rate.period),
            self.max_concurrent_calls,
            self.calls_per_day,
            self.minutes_per_day,
        )


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """What ``on_budget_alert`` receives: a daily budget crossed its threshold, or ran out.

    Fired once per scope, budget, level and UTC day, across replicas sharing the store.
    """

    scope: str  # caller | tenant | global
    key: str  # the caller's limit key, the tenant's name, "all"
    kind: str  # calls | minutes
    level: str  # threshold | exhausted
    used: float  # calls, or minutes
    budget: float
    day: str  # the UTC day, YYYY-MM-DD


_TENANT_TODAY = "Voice calls are paused for your organisation today."
_EVERYONE_TODAY = "Voice calls are unavailable for the rest of today."
#: What a refusal at each scope is called, and what a person is told.
_REFUSALS: dict[tuple[str, str], tuple[str, str]] = {
    ("caller", "calls"): ("daily_limit_reached", "You've reached today's limit for voice calls."),
    ("caller", "minutes"): ("daily_limit_reached", "You've reached today's limit for voice calls."),
    ("tenant", "rate"): (
        "tenant_rate_limited",
        "Voice calls are busy for your organisation. Please try again in {wait} s.",
    ),
    ("tenant", "cap"): (
        "tenant_busy",
        "Your organisation has the most voice calls allowed at once. Please try again shortly.",
    ),
    ("tenant", "calls"): (
        "tenant_budget_exhausted",
        "Voice calls are paused for your organisation today.",
    ),
    ("tenant", "minutes"): (
        "tenant_budget_exhausted",
        "Voice calls are paused for your organisation today.",
    ),
    ("global", "rate"): ("service_busy", "Voice calls are busy. Please try again in {wait} s."),
    ("global", "cap"): ("service_busy", "Voice calls are busy. Please try again shortly."),
    ("global", "calls"): (
        "service_budget_exhausted",
        "Voice calls are unavailable for the rest of today.",
    ),
    ("global", "minutes"): (
        "service_budget_exhausted",
        "Voice calls are unavailable for the rest of today.",
    ),
}


_UNLIMITED = Budget()


def day_name(day: int) -> str:
    return datetime.datetime.fromtimestamp(day * 86400, datetime.UTC).date().isoformat()


class Limits:
    """The limits of every scope (caller, tenant, global), applied through one store.

    With a ``BudgetStore`` (memory, Redis) every scope is checked and taken in one atomic
    step per start-call; with a 0.1-style ``LimitStore`` only the caller's rate and cap
    apply (``config`` refuses the rest).
    """

    def __init__(
        self,
        store: LimitStore,
        *,
        rate: RateLimit | None,
        max_concurrent_calls: int | None,
        max_call_seconds: float,
        caller_budget: Budget | None = None,
        tenant_budget: Budget | None = None,
        global_budget: Budget | None = None,
        alert_threshold: float = 0.8,
        on_budget_alert: Callable[[BudgetAlert], Any] | None = None,
    ) -> None:
        self.store = store
        self.rate = rate
        self.max_concurrent_calls = max_concurrent_calls
        self.max_call_seconds = max_call_seconds
        #: The caller's daily budgets (its rate and cap are the options above).
        self.caller_daily = caller_budget
        self.tenant = tenant_budget
        self.everyone = global_budget
        self.alert_threshold = alert_threshold
        self.on_budget_alert = on_budget_alert
        self.budgets = store if isinstance(store, BudgetStore) else None
        # What does not change from call to call, worked out once.
        self._caller_limits = (
            None if rate is None else (rate.limit, rate.period),
            max_concurrent_calls,
            None if caller_budget is None else caller_budget.calls_per_day,
            None if caller_budget is None else caller_budget.minutes_per_day,
        )
        self._global_rule = None if global_budget is None else global_budget.rule("global", "all")
        self._lease_ms = duration_ms(max_call_seconds)
        self._pauses: dict[str, tuple[str, ...]] = {}

    def rules(self, key: str, tenant: str | None) -> tuple[ScopeRule, ...]:
        """The scopes a call of this caller (and tenant) counts against, in checking order."""
        # A tenant is counted (live calls, calls and minutes today) even without a budget,
        # so that its usage can be reported; everyone, when there is a global budget
        # (``Budget()``, with no limits, only counts).
        caller = ScopeRule("caller", key, *self._caller_limits)
        if tenant is None and self._global_rule is None:
            return (caller,)
        rules = [caller]
        if tenant is not None:
            rules.append((self.tenant or _UNLIMITED).rule("tenant", tenant))
        if self._global_rule is not None:
            rules.append(self._global_rule)
        return tuple(rules)

    def _agent_pauses(self, agent_id: str) -> tuple[str, ...]:
        """The kill switch's targets that stop an agent's calls (one of the options'
        agents: made once each)."""
        pauses = self._pauses[agent_id] = ("global", pause_target("agent", agent_id))
        return pauses

    def started_ms(self, expires_ms: int) -> int:
        """When a slot whose lease ends at ``expires_ms`` was taken (the call's start)."""
        return expires_ms - self._lease_ms

    async def now_ms(self) -> int:
        """The store's clock (Redis: its TIME), the one leases and handles are measured on."""
        if self.budgets is not None:
            return await self.budgets.now_ms()
        return now_ms(self.store.clock)

    async def admit(
        self, key: str, *, tenant: str | None, agent_id: str, count_rate: bool = True
    ) -> Slot:
        """Pass every scope or raise the refusal of the first that refuses (its own code)."""
        if self.budgets is None:
            return await self._admit_caller_only(key, count_rate=count_rate)
        rules = self.rules(key, tenant)
        pauses = self._pauses.get(agent_id) or self._agent_pauses(agent_id)
        if tenant is not None:
            pauses += (f"tenant:{tenant}",)
        slot = new_slot_id()
        admission = await self.budgets.admit(
            rules,
            slot=slot,
            lease=self.max_call_seconds,
            pauses=pauses,
            count_rate=count_rate,
        )
        if admission.refused is not None:
            index, what = admission.refused
            raise self._refusal(rules[index].scope, what, admission.retry_ms)
        if self.on_budget_alert is not None:
            await self._alert_calls(rules, admission)
        return Slot(slot, admission.expires_ms, rules, admission.day)

    def _refusal(self, scope: str, what: str, retry_ms: int) -> CallError:
        wait = max(1, math.ceil(retry_ms / 1000)) if retry_ms else None
        if what == "paused":
            error = CallError(
                "calls_paused", "Voice calls are switched off for now. Please try again later."
            )
        elif scope == "caller" and what == "rate":
            error = CallError(
                "rate_limited", f"Too many calls. Please try again in {wait} s.", retry_after=wait
            )
        elif scope == "caller" and what == "cap":
            error = CallError(
                "too_many_calls",
                "You're already in a call, maybe in another tab. End it to start another."
                if self.max_concurrent_calls == 1
                else "You already have the most calls allowed at once. End one to start another.",
            )
        else:
            code, message = _REFUSALS[(scope, what)]
            error = CallError(code, message.format(wait=wait), retry_after=wait)
        error.scope = scope
        return error

    async def _alert_calls(self, rules: tuple[ScopeRule, ...], admission: Admission) -> None:
        for rule, used in zip(rules, admission.calls_today, strict=False):
            budget = rule.calls_per_day
            if budget is None:
                continue
            threshold = math.ceil(budget * self.alert_threshold)
            if used == threshold:
                await self._alert(rule, "calls", "threshold", used, budget, admission.day)
            if used == budget:
                await self._alert(rule, "calls", "exhausted", used, budget, admission.day)

    async def count_minutes(self, rules: tuple[ScopeRule, ...], milliseconds: int) -> None:
        """Count an ended call's duration against each scope's minutes today; alert once
        when a budget crosses its threshold or runs out."""
        if self.budgets is None or not any(r.minutes_per_day is not None for r in rules):
            return
        day = (await self.budgets.now_ms()) // DAY_MS
        totals = await self.budgets.add_minutes(rules, milliseconds, day)
        if self.on_budget_alert is None:
            return
        for rule, total in zip(rules, totals, strict=True):
            if rule.minutes_per_day is None:
                continue
            budget_ms = rule.minutes_per_day * 60_000
            before = total - milliseconds
            for level, edge in (
                ("threshold", budget_ms * self.alert_threshold),
                ("exhausted", budget_ms),
            ):
                if before < edge <= total:
                    await self._alert(
                        rule, "minutes", level, total / 60_000, rule.minutes_per_day, day
                    )

    async def _alert(
        self, rule: ScopeRule, kind: str, level: str, used: float, budget: float, day: int
    ) -> None:
        hook = self.on_budget_alert
        if hook is None:
            return
        alert = BudgetAlert(rule.scope, rule.key, kind, level, used, budget, day_name(day))
        try:
            result = hook(alert)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("the on_budget_alert hook raised; the call itself is unaffected")

    async def _admit_caller_only(self, key: str, *, count_rate: bool) -> Slot:
        """A 0.1-style store: the caller's rate, then a slot (two round trips)."""
        store = self.store
        if count_rate and self.rate is not None:
            wait = await store.hit(key, self.rate.limit, self.rate.period)
            if wait > 0:
                raise self._refusal("caller", "rate", math.ceil(wait * 1000))
        rules = (ScopeRule("caller", key, *self._caller_limits),)
        if self.max_concurrent_calls is None:
            expires = now_ms(store.clock) + duration_ms(self.max_call_seconds)
            return Slot(None, expires, rules)
        slot = new_slot_id()
        taken = await store.acquire(key, slot, self.max_concurrent_calls, self.max_call_seconds)
        if type(taken) is bool:  # a store written for 0.1: the lease ends about now + lease
            taken = now_ms(store.clock) + duration_ms(self.max_call_seconds) if taken else 0
        if not taken:
            raise self._refusal("caller", "cap", 0)
        return Slot(slot, int(taken), rules)

    async def give_back(self, key: str, slot: Slot) -> bool:
        """Undo an admission whose call was never made (its slots, its count today); True
        if its caller's slot was still held. Never raises, and finishes even when the
        request is cancelled: a slot left behind would lock its caller out for the lease."""
        if slot.id is None and not slot.rules:
            return True
        with anyio.CancelScope(shield=True):
            try:
                if self.budgets is not None and slot.rules:
                    held = slot.id is None or await self.store.release(key, slot.id)
                    await self.budgets.unadmit(slot.rules, slot.id or "", slot.day)
                    return held
                if slot.id is None:
                    return True
                return await self.store.release(key, slot.id)
            except StoreUnavailable as exc:
                logger.warning("slot not freed (its lease will free it): %s", exc)
        return False
