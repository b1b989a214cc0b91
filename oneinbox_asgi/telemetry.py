"""OpenTelemetry traces and metrics, optional and free when nobody listens (docs/telemetry.md).

With ``opentelemetry-api`` installed (``pip install 'oneinbox-asgi[otel]'``) the broker
reports through the global tracer and meter providers, or the ones passed as
``tracer_provider=`` / ``meter_provider=``; it never configures an SDK or an exporter.
Without the package, ``Telemetry.build`` answers ``OFF``, whose every method does
nothing. With the API's own no-op providers, a route's span is never made current and
no attribute is built.

Only bounded values are attributes of metrics (agent ids and names from the options,
error codes, route names, outcomes); call ids go on spans only. Never an attribute, span
name or event: the API key, a participant token, an end handle, a variable's value, a
caller's id or address, a transcript.
"""

from __future__ import annotations

import importlib.metadata
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .stores.base import StoreUnavailable
from .transport.base import Broken, NotSent, Response, TimedOut, Transport

if TYPE_CHECKING:
    from starlette.types import Scope

    from .context import CallEvent
    from .errors import CallError
    from .stores.base import Admission, CallEntry, Ended, ScopeRule

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import propagate as otel_propagate
    from opentelemetry import trace as otel_trace
    from opentelemetry.metrics import _internal as otel_metrics_state
except ImportError:  # the [otel] extra is not installed: everything below is a no-op
    otel_trace = None  # type: ignore[assignment]

#: The instrumentation scope's name (the tracer's and the meter's).
SCOPE = "oneinbox_asgi"
#: Buckets (seconds) of the HTTP semantic conventions, for request durations.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
#: Buckets (seconds) for how long calls last.
CALL_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
#: Buckets (seconds) for voice latencies (time to first token, to first audio, ...).
VOICE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
#: OneInbox's per-call ``latency`` figures read into histograms: ``{name: {p50_ms, ...}}``.
VOICE_FIGURES = ("llm_ttft", "tts_ttfb", "eou_delay")
#: ``latency.connect`` steps, each one number of milliseconds per call.
CONNECT_STEPS = (
    "setup_ms",
    "dispatch_to_answer_ms",
    "answer_to_active_ms",
    "active_to_greeting_ms",
)
#: A refusal's scope is one lower-case word (``caller`` today; budgets add more).
_SCOPE_WORD = re.compile(r"^[a-z][a-z_]{0,31}$")
#: ``/v1/calls/{id}`` and ``/v1/calls/{id}/stop`` as templates (call ids are unbounded).
_CALL_PATH = re.compile(r"^/v1/calls/(?!web$)[^/]+(/[a-z_]+)?$")

S = TypeVar("S")
T = TypeVar("T")


class Telemetry:
    """No telemetry: every method is a no-op. The ``OFF`` instance is used without the API."""

    enabled = False

    def serving(self, route: str, scope: Scope) -> AbstractContextManager[object] | None:
        """The span of one request to a broker route, current while it runs; None when no
        span is made (the route then runs outside any ``with``)."""
        return None

    def started(self, agent_id: str, agent: str | None, call_id: str, started: float) -> None:
        """start-call answered 201; ``started`` is the request's ``time.perf_counter()``."""

    def answered(
        self,
        route: str,
        outcome: str,
        status: int,
        *,
        agent_id: str | None = None,
        call_id: str | None = None,
    ) -> None:
        """end-call or a webhook delivery answered ``status`` with ``outcome``."""

    def refused(
        self,
        route: str,
        error: CallError,
        *,
        agent_id: str | None = None,
        call_id: str | None = None,
    ) -> None:
        """A route answered with an error (a refusal or an upstream failure)."""

    def call_recorded(self, agent_id: str) -> None:
        """A started call is in the store: one more live call."""

    def call_ended(self, event: CallEvent) -> None:
        """``Lifecycle.end`` won for this call: one live call fewer, and its duration."""

    def call_record(self, event: CallEvent) -> None:
        """OneInbox's written record of an ended call (its ``latency`` figures)."""

    def wants_records(self) -> bool:
        """Whether ended calls' records should be fetched for their latency figures."""
        return False

    def browser(self, figures: Mapping[str, float], agent_id: str | None) -> None:
        """One browser's measurements of its call (``POST {prefix}/metrics``), in seconds."""

    def traced_transport(self, transport: Transport) -> Transport:
        """The transport to OneInbox with a CLIENT span and a duration per request."""
        return transport

    def watched_store(self, store: S) -> S:
        """The store with its operations timed and its outages counted."""
        return store


OFF = Telemetry()


def build(
    *, tracer_provider: Any = None, meter_provider: Any = None, prefix: str = ""
) -> Telemetry:
    """``OFF`` without ``opentelemetry-api``; else telemetry through the providers given,
    or the global ones (looked up at each use, so an SDK set up later is used)."""
    if otel_trace is None:
        return OFF
    return OpenTelemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider, prefix=prefix
    )


class OpenTelemetry(Telemetry):
    """Spans and metrics through the OpenTelemetry API."""

    enabled = True

    def __init__(self, *, tracer_provider: Any, meter_provider: Any, prefix: str) -> None:
        self.prefix = prefix
        self._meter_provider = meter_provider
        #: Providers passed in are always listened to; the global ones once an SDK is set.
        self._own_tracing = tracer_provider is not None
        self._own_metering = meter_provider is not None
        version = _version()
        self.tracer = otel_trace.get_tracer(SCOPE, version, tracer_provider=tracer_provider)
        meter = otel_metrics.get_meter(SCOPE, version, meter_provider=meter_provider)
        self.upstream_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (to OneInbox).",
            explicit_bucket_boundaries_advisory=HTTP_BUCKETS,
        )
        self.calls_started = meter.create_counter(
            "oneinbox.calls.started", unit="{call}", description="Calls created at OneInbox."
        )
        self.refusals = meter.create_counter(
            "oneinbox.refusals",
            unit="{refusal}",
            description="Requests answered with an error, by route, code and scope.",
        )
        self.calls_live = meter.create_up_down_counter(
            "oneinbox.calls.live",
            unit="{call}",
            description="Calls started and not yet seen to end (sum over replicas).",
        )
        self.call_duration = meter.create_histogram(
            "oneinbox.call.duration",
            unit="s",
            description="How long ended calls lasted.",
            explicit_bucket_boundaries_advisory=CALL_BUCKETS,
        )
        self.create_duration = meter.create_histogram(
            "oneinbox.call.create.duration",
            unit="s",
            description="From a start-call request's arrival to its 201 answer.",
            explicit_bucket_boundaries_advisory=HTTP_BUCKETS,
        )
        self.store_duration = meter.create_histogram(
            "oneinbox.store.duration",
            unit="s",
            description="Duration of limit store operations.",
            explicit_bucket_boundaries_advisory=HTTP_BUCKETS,
        )
        self.store_outages = meter.create_counter(
            "oneinbox.store.outages",
            unit="{error}",
            description="Limit store operations that failed (StoreUnavailable).",
        )
        self.voice = {
            name: meter.create_histogram(
                f"oneinbox.voice.{name}",
                unit="s",
                description=f"Per call: the median {name} of its turns (OneInbox's p50).",
                explicit_bucket_boundaries_advisory=VOICE_BUCKETS,
            )
            for name in VOICE_FIGURES
        }
        self.connect = {
            step: meter.create_histogram(
                f"oneinbox.voice.connect.{step.removesuffix('_ms')}",
                unit="s",
                description=f"Per call: OneInbox's connect.{step}.",
                explicit_bucket_boundaries_advisory=VOICE_BUCKETS,
            )
            for step in CONNECT_STEPS
        }
        self.browser_figures = {
            name: meter.create_histogram(
                f"oneinbox.browser.{name}",
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=buckets,
            )
            for name, (unit, description, buckets) in BROWSER_FIGURES.items()
        }

    # -- the routes ----------------------------------------------------------------------

    def tracing(self) -> bool:
        """Whether spans go anywhere: a provider was passed, or a global one was set (the
        API's proxy then delegates to it). Until then every span would be a no-op, so none
        is started. One attribute read: this runs several times per request."""
        return self._own_tracing or getattr(otel_trace, "_TRACER_PROVIDER", True) is not None

    def metering(self) -> bool:
        """Whether measurements go anywhere (as ``tracing``, for the meter provider)."""
        return (
            self._own_metering or getattr(otel_metrics_state, "_METER_PROVIDER", True) is not None
        )

    def serving(self, route: str, scope: Scope) -> AbstractContextManager[object] | None:
        if not self.tracing():
            return None
        return self._serving(route, scope)

    @contextmanager
    def _serving(self, route: str, scope: Scope) -> Iterator[object]:
        parent = otel_trace.get_current_span()
        # Ours is the request's span when the host has none (no HTTP instrumentation).
        kind = (
            otel_trace.SpanKind.INTERNAL
            if parent.get_span_context().is_valid
            else otel_trace.SpanKind.SERVER
        )
        span = self.tracer.start_span(f"oneinbox {route}", kind=kind)
        if not span.is_recording():  # the API's no-op provider, or sampled out
            if span is parent or not span.get_span_context().is_valid:
                yield span
                return
        else:
            span.set_attributes(
                {
                    "http.request.method": scope["method"],
                    "http.route": f"{self.prefix}/{route}",
                    "url.scheme": scope.get("scheme", "http"),
                    "oneinbox.route": route,
                }
            )
        token = otel_context.attach(otel_trace.set_span_in_context(span))
        try:
            yield span
        except BaseException as exc:
            # Never the exception's text: it is not ours to vouch for.
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(otel_trace.StatusCode.ERROR)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def started(self, agent_id: str, agent: str | None, call_id: str, started: float) -> None:
        if self.metering():
            attributes = {"oneinbox.agent_id": agent_id}
            self.calls_started.add(1, attributes)
            self.create_duration.record(time.perf_counter() - started, attributes)
        if not self.tracing():
            return
        span = otel_trace.get_current_span()
        if span.is_recording():
            span.set_attributes(
                {
                    "http.response.status_code": 201,
                    "oneinbox.outcome": "started",
                    "oneinbox.agent_id": agent_id,
                    "oneinbox.call_id": call_id,
                }
            )
            if agent is not None:
                span.set_attribute("oneinbox.agent", agent)

    def answered(
        self,
        route: str,
        outcome: str,
        status: int,
        *,
        agent_id: str | None = None,
        call_id: str | None = None,
    ) -> None:
        if not self.tracing():
            return
        span = otel_trace.get_current_span()
        if span.is_recording():
            span.set_attributes(
                _present(
                    {
                        "http.response.status_code": status,
                        "oneinbox.outcome": outcome,
                        "oneinbox.agent_id": agent_id,
                        "oneinbox.call_id": call_id,
                    }
                )
            )

    def refused(
        self,
        route: str,
        error: CallError,
        *,
        agent_id: str | None = None,
        call_id: str | None = None,
    ) -> None:
        if self.metering():
            self.refusals.add(
                1,
                {
                    "oneinbox.route": route,
                    "oneinbox.error.code": error.code,
                    "oneinbox.scope": refusal_scope(error),
                },
            )
        if not self.tracing():
            return
        span = otel_trace.get_current_span()
        if span.is_recording():
            span.set_attributes(
                _present(
                    {
                        "http.response.status_code": error.status,
                        "oneinbox.outcome": error.code,
                        "oneinbox.error.code": error.code,
                        "oneinbox.scope": refusal_scope(error),
                        "oneinbox.agent_id": agent_id,
                        "oneinbox.call_id": call_id,
                    }
                )
            )
            if error.status >= 500:
                span.set_attribute("error.type", error.code)
                span.set_status(otel_trace.StatusCode.ERROR, error.code)

    # -- the lifecycle -------------------------------------------------------------------

    def call_recorded(self, agent_id: str) -> None:
        if self.metering():
            self.calls_live.add(1, {"oneinbox.agent_id": agent_id})

    def call_ended(self, event: CallEvent) -> None:
        if self.metering():
            attributes = {"oneinbox.agent_id": event.agent_id}
            self.calls_live.add(-1, attributes)
            if event.duration is not None:
                ended_by = event.ended_by or "unknown"
                self.call_duration.record(
                    event.duration, {**attributes, "oneinbox.ended_by": ended_by}
                )
        if not self.tracing():
            return
        span = otel_trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "oneinbox.call.ended",
                _present(
                    {
                        "oneinbox.call_id": event.call_id,
                        "oneinbox.ended_by": event.ended_by,
                        "oneinbox.end_reason": _word(event.end_reason),
                    }
                ),
            )

    def call_record(self, event: CallEvent) -> None:
        record = event.record or {}
        latency = record.get("latency")
        if not isinstance(latency, Mapping):
            return
        attributes = {"oneinbox.agent_id": event.agent_id}
        for name, histogram in self.voice.items():
            figures = latency.get(name)
            if isinstance(figures, Mapping):
                _observe_ms(histogram, figures.get("p50_ms"), attributes)
        connect = latency.get("connect")
        if isinstance(connect, Mapping):
            for step, histogram in self.connect.items():
                _observe_ms(histogram, connect.get(step), attributes)

    def wants_records(self) -> bool:
        if not self.metering():
            return False
        provider = self._meter_provider or otel_metrics.get_meter_provider()
        return type(provider).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider")

    def browser(self, figures: Mapping[str, float], agent_id: str | None) -> None:
        if not self.metering():
            return
        attributes = _present({"oneinbox.agent_id": agent_id})
        for name, value in figures.items():
            histogram = self.browser_figures.get(name)
            if histogram is not None:
                histogram.record(value, attributes)

    # -- OneInbox and the store ----------------------------------------------------------

    def traced_transport(self, transport: Transport) -> Transport:
        return TracedTransport(transport, self)

    def watched_store(self, store: S) -> S:
        watched: S = _watched_class(type(store))(store, self)
        return watched


def _version() -> str:
    try:
        return importlib.metadata.version("oneinbox-asgi")
    except importlib.metadata.PackageNotFoundError:
        return ""


def refusal_scope(error: CallError) -> str:
    """Whose budget a refusal protects: the error's ``scope`` when it names one (one
    lower-case word), else ``caller``."""
    scope = getattr(error, "scope", None)
    return scope if isinstance(scope, str) and _SCOPE_WORD.match(scope) else "caller"


def url_template(path: str) -> str:
    """``/v1/calls/{call_id}[/stop]`` for a call's path; other paths as they are."""
    match = _CALL_PATH.match(path)
    if match is None:
        return path
    return "/v1/calls/{call_id}" + (match.group(1) or "")


def safe_url(url: str) -> tuple[str, str, int | None, str]:
    """(``url.full`` without user, password, query or fragment; host; port; path)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}", host, port, parts.path


class TracedTransport:
    """A transport whose every request is a CLIENT span (HTTP semantic conventions) and an
    ``http.client.request.duration``, with ``traceparent`` sent to OneInbox."""

    def __init__(self, inner: Transport, telemetry: OpenTelemetry) -> None:
        self.inner = inner
        self.telemetry = telemetry

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        seconds: float,
    ) -> Coroutine[Any, Any, Response]:
        """The inner transport's own coroutine while no SDK listens (not even a frame of
        ours in between), else the traced exchange."""
        telemetry = self.telemetry
        tracing, metering = telemetry.tracing(), telemetry.metering()
        if not (tracing or metering):
            return self.inner.send(method, url, headers=headers, body=body, seconds=seconds)
        return self._traced(method, url, headers, body, seconds, tracing, metering)

    async def _traced(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        seconds: float,
        tracing: bool,
        metering: bool,
    ) -> Response:
        telemetry = self.telemetry
        full, host, port, path = safe_url(url)
        template = url_template(path)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "server.address": host,
            "url.template": template,
        }
        if port is not None:
            attributes["server.port"] = port
        span = (
            telemetry.tracer.start_span(
                f"{method} {template}",
                kind=otel_trace.SpanKind.CLIENT,
                attributes={**attributes, "url.full": full},
            )
            if tracing
            else otel_trace.INVALID_SPAN
        )
        started = time.perf_counter()
        response: Response | None = None
        error: str | None = None
        try:
            if not span.get_span_context().is_valid:  # the API's no-op tracer: nothing to send
                response = await self.inner.send(
                    method, url, headers=headers, body=body, seconds=seconds
                )
                return response
            # Current while it is sent: an instrumented HTTP client's spans are its children.
            token = otel_context.attach(otel_trace.set_span_in_context(span))
            try:
                headers = dict(headers)
                otel_propagate.inject(headers)  # traceparent (the global propagator)
                response = await self.inner.send(
                    method, url, headers=headers, body=body, seconds=seconds
                )
            finally:
                otel_context.detach(token)
            return response
        except TimedOut:
            error = "timeout"
            raise
        except NotSent:
            error = "not_sent"
            raise
        except Broken:
            error = "broken"
            raise
        except BaseException as exc:
            error = type(exc).__qualname__
            raise
        finally:
            if response is not None:
                attributes["http.response.status_code"] = response.status
                if response.status >= 400:
                    error = str(response.status)
            if error is not None:
                attributes["error.type"] = error
            if metering:
                telemetry.upstream_duration.record(time.perf_counter() - started, attributes)
            if span.is_recording():
                if response is not None:
                    span.set_attribute("http.response.status_code", response.status)
                if error is not None:
                    span.set_attribute("error.type", error)
                    span.set_status(otel_trace.StatusCode.ERROR)
            span.end()

    async def aclose(self) -> None:
        await self.inner.aclose()


_WATCHED: dict[type, type] = {}


def _watched_class(store_type: type) -> type:
    """A proxy class with a timed forwarder for each public async method of ``store_type``
    (so that runtime ``Protocol`` checks answer as for the store itself), other attributes
    passed on. The stores' own operations get ``_Operations``' forwarders, any other
    method a generic one."""
    made = _WATCHED.get(store_type)
    if made is not None:
        return made
    import inspect

    def parameters(function: Any) -> list[str]:
        return list(inspect.signature(function).parameters)

    namespace: dict[str, Any] = {}
    for name, member in inspect.getmembers(store_type):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            operation = _Operations.__dict__.get(name)
            # The protocol's own forwarder only for a method with the protocol's parameters
            # (a store may take more, or name a method of its own alike).
            if operation is None or parameters(operation) != parameters(member):
                operation = _forwarder(name)
            namespace[name] = operation
    namespace["__slots__"] = ()
    made = type(f"Watched{store_type.__name__}", (WatchedStore,), namespace)
    _WATCHED[store_type] = made
    return made


class WatchedStore:
    """A store whose operations are timed (``oneinbox.store.duration``) and whose
    ``StoreUnavailable`` are counted (``oneinbox.store.outages``).

    Each operation looks the store's method up when called (a test may replace it), and
    answers the store's own awaitable while no meter provider listens."""

    __slots__ = ("_inner", "_telemetry")
    _inner: Any
    _telemetry: OpenTelemetry

    def __init__(self, inner: Any, telemetry: OpenTelemetry) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_telemetry", telemetry)

    def __getattr__(self, name: str) -> Any:
        if name in WatchedStore.__slots__:  # not set yet (copy, pickle): not the store's
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in WatchedStore.__slots__:  # copy.copy restores them so
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    @property
    def clock(self) -> Any:
        return self._inner.clock

    def __repr__(self) -> str:
        return repr(self._inner)

    def _watch(self, name: str, operation: Awaitable[T]) -> Awaitable[T]:
        telemetry = self._telemetry
        if not telemetry.metering():
            return operation
        return _timed(telemetry, name, operation)


async def _timed(telemetry: OpenTelemetry, name: str, operation: Awaitable[T]) -> T:
    attributes = _OPERATIONS.get(name)
    if attributes is None:  # the names of one store class's methods: a bounded set
        attributes = _OPERATIONS[name] = {"oneinbox.store.operation": name}
    started = time.perf_counter()
    try:
        return await operation
    except StoreUnavailable:
        telemetry.store_outages.add(1, attributes)
        raise
    finally:
        telemetry.store_duration.record(time.perf_counter() - started, attributes)


def _forwarder(name: str) -> Callable[..., Awaitable[Any]]:
    """A forwarder for a method the store protocols do not name (any arguments)."""

    def forward(self: WatchedStore, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return self._watch(name, getattr(self._inner, name)(*args, **kwargs))

    forward.__name__ = name
    return forward


class _Operations(WatchedStore):
    """Forwarders, with the protocols' own signatures, for the operations that starting
    and ending calls make: passing ``*args, **kwargs`` on costs about 1 µs a call, a fifth
    of the memory store's whole ``admit``. (Never made: ``_watched_class`` takes its
    methods.)"""

    __slots__ = ()

    def hit(self, key: str, limit: int, period: float) -> Awaitable[float]:
        return self._watch("hit", self._inner.hit(key, limit, period))

    def acquire(self, key: str, slot: str, cap: int, lease: float) -> Awaitable[int | bool]:
        return self._watch("acquire", self._inner.acquire(key, slot, cap, lease))

    def release(self, key: str, slot: str) -> Awaitable[bool]:
        return self._watch("release", self._inner.release(key, slot))

    def admit(
        self,
        rules: tuple[ScopeRule, ...],
        *,
        slot: str,
        lease: float,
        pauses: tuple[str, ...],
        count_rate: bool = True,
    ) -> Awaitable[Admission]:
        return self._watch(
            "admit",
            self._inner.admit(rules, slot=slot, lease=lease, pauses=pauses, count_rate=count_rate),
        )

    def unadmit(self, rules: tuple[ScopeRule, ...], slot: str, day: int) -> Awaitable[None]:
        return self._watch("unadmit", self._inner.unadmit(rules, slot, day))

    def add_minutes(
        self, rules: tuple[ScopeRule, ...], milliseconds: int, day: int
    ) -> Awaitable[tuple[int, ...]]:
        return self._watch("add_minutes", self._inner.add_minutes(rules, milliseconds, day))

    def record_call(self, entry: CallEntry) -> Awaitable[None]:
        return self._watch("record_call", self._inner.record_call(entry))

    def call(self, call_id: str) -> Awaitable[tuple[CallEntry, bool] | None]:
        return self._watch("call", self._inner.call(call_id))

    def finish(self, call_id: str, ended_ms: int, reason: str) -> Awaitable[Ended | None]:
        return self._watch("finish", self._inner.finish(call_id, ended_ms, reason))

    def claim(self, name: str, seconds: float) -> Awaitable[bool]:
        return self._watch("claim", self._inner.claim(name, seconds))

    def unclaim(self, name: str) -> Awaitable[None]:
        return self._watch("unclaim", self._inner.unclaim(name))


#: Each store operation's metric attributes, made once.
_OPERATIONS: dict[str, dict[str, str]] = {}


#: What a browser may report of its call (``POST {prefix}/metrics``): unit, description,
#: buckets. Values arrive in milliseconds (or a ratio) and are bounded (payload.py).
BROWSER_FIGURES: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "click_to_active": ("s", "From the click to the call being active.", VOICE_BUCKETS),
    "click_to_first_audio": (
        "s",
        "From the click to the agent's first audio.",
        VOICE_BUCKETS,
    ),
    "round_trip_time": ("s", "WebRTC round-trip time at the call's end.", HTTP_BUCKETS),
    "jitter": ("s", "WebRTC jitter of the agent's audio at the call's end.", HTTP_BUCKETS),
    "packet_loss": (
        "1",
        "Fraction of the agent's audio packets lost over the call.",
        (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1),
    ),
}


def _observe_ms(histogram: Any, value: Any, attributes: Mapping[str, Any]) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 3.6e6:
        histogram.record(value / 1000, attributes)


def _present(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in attributes.items() if value is not None}


def _word(value: str | None) -> str | None:
    """OneInbox's end reason when it is one short snake_case word (never free text)."""
    return value if value is not None and _SCOPE_WORD.match(value) else None
