"""The broker's working parts, built once from the checked ``Settings``."""

from __future__ import annotations

from dataclasses import dataclass

from .client_address import ClientAddress
from .config import Settings
from .guards.cross_site import CrossSiteGuard
from .guards.handles import HandleSigner
from .guards.limits import Limits
from .lifecycle import Lifecycle
from .stores.base import CallLedger
from .telemetry import OFF, Telemetry, build
from .upstream import OneInboxClient


@dataclass(frozen=True, slots=True)
class Broker:
    """What both routes use: the options, OneInbox, and the guards in front of it."""

    settings: Settings
    upstream: OneInboxClient
    cross_site: CrossSiteGuard
    client_address: ClientAddress
    limits: Limits
    handles: HandleSigner
    #: None when the store keeps no calls (a custom ``LimitStore`` without ``CallLedger``).
    lifecycle: Lifecycle | None
    #: OpenTelemetry spans and metrics (telemetry.py); ``OFF`` without the API.
    telemetry: Telemetry = OFF

    @classmethod
    def build(cls, settings: Settings) -> Broker:
        telemetry = build(
            tracer_provider=settings.tracer_provider,
            meter_provider=settings.meter_provider,
            prefix=settings.prefix,
        )
        store = telemetry.watched_store(settings.store)
        upstream = OneInboxClient(
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout=settings.timeout,
            transport=settings.transport,
            telemetry=telemetry,
        )
        limits = Limits(
            store,
            rate=settings.rate,
            max_concurrent_calls=settings.max_concurrent_calls,
            max_call_seconds=settings.max_call_seconds,
            caller_budget=settings.caller_budget,
            tenant_budget=settings.tenant_budget,
            global_budget=settings.global_budget,
            alert_threshold=settings.budget_alert_threshold,
            on_budget_alert=settings.on_budget_alert,
        )
        lifecycle = None
        if isinstance(store, CallLedger):
            lifecycle = Lifecycle(
                ledger=store,
                upstream=upstream,
                limits=limits,
                on_call_ended=settings.on_call_ended,
                on_call_record=settings.on_call_record,
                telemetry=telemetry,
            )
        return cls(
            settings=settings,
            upstream=upstream,
            lifecycle=lifecycle,
            cross_site=CrossSiteGuard(settings.trusted_origins),
            client_address=ClientAddress(
                settings.trusted_proxies, ipv6_subnet=settings.ipv6_subnet
            ),
            limits=limits,
            # The store's clock: a handle ends when its slot's lease does.
            handles=HandleSigner(settings.api_key, clock=store.clock),
            telemetry=telemetry,
        )

    async def aclose(self) -> None:
        """Close what the broker made: its own upstream transport and store."""
        try:
            await self.upstream.aclose()
        finally:
            if self.settings.owns_store:
                await self.settings.store.aclose()
