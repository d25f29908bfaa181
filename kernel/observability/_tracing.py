"""Traces of a running app: `TracingConfig`, and `start_tracing` which builds a `Tracing`.

``kernel.run(app, tracing=kernel.TracingConfig(service_name="shop"))`` gives one span per
task run (``task <id>``, by ``mw.trace``), one per hook run (``hook <id>``), and the
resilience events as events on the current span. OpenTelemetry (the ``otel`` extra) is
imported by `start_tracing`, never by importing ``kernel``.

The app gets a ``TracerProvider`` of its own; the global provider is left alone, because
OpenTelemetry lets it be set once per process (a second ``set_tracer_provider`` is ignored
with a warning), which would tie every later ``kernel.run`` in the process — each test,
each embedded app — to the first one's exporter and service name. Libraries that trace
through the global provider are unaffected; a ``mw.trace()`` without a tracer keeps using
the global one.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import trio

from middleware.observability import OTEL_EXTRA, TRACER_NAME, Trace, run_in_span, trace
from middleware.observability import trace_events as _trace_events

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Tracer

    from kernel._bus import Emission
    from resilience import Event

__all__ = ["Tracing", "TracingConfig", "start_tracing"]

_EXPORTERS: Final = ("console", "otlp")
_PROCESSORS: Final = ("simple", "batch")


def _is_instance(value: object, module: str, name: str) -> bool:
    """``isinstance(value, module.name)``; False when OpenTelemetry is not installed (then
    ``value`` cannot be one)."""
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError:
        return False
    return isinstance(value, cls)


def _check_service_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"TracingConfig: service_name must be a str, got {value!r}")
    if not value.strip():
        raise ValueError(f"TracingConfig: service_name must not be blank, got {value!r}")


def _check_exporter(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None or value in _EXPORTERS:
        return
    if isinstance(value, str):
        raise ValueError(
            f"TracingConfig: exporter must be 'console', 'otlp', a SpanExporter or None, "
            f"got {value!r}"
        )
    if not _is_instance(value, "opentelemetry.sdk.trace.export", "SpanExporter"):
        raise TypeError(
            "TracingConfig: exporter must be 'console', 'otlp', an "
            f"opentelemetry.sdk.trace.export.SpanExporter or None, got {value!r}"
        )


def _check_endpoint(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"TracingConfig: endpoint must be a str URL or None, got {value!r}")
    if not value.startswith(("http://", "https://")):
        raise ValueError(
            f"TracingConfig: endpoint must be an http:// or https:// URL, got {value!r}"
        )
    if instance.exporter != "otlp":
        raise ValueError(
            f"TracingConfig: endpoint applies only to exporter='otlp', "
            f"got exporter={instance.exporter!r}"
        )


def _check_processor(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value not in _PROCESSORS:
        raise ValueError(
            f"TracingConfig: processor must be 'simple', 'batch' or None, got {value!r}"
        )


def _check_sampler(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not _is_instance(value, "opentelemetry.sdk.trace.sampling", "Sampler"):
        raise TypeError(
            "TracingConfig: sampler must be an opentelemetry.sdk.trace.sampling.Sampler "
            f"or None, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class TracingConfig:
    """How an app's traces are made and where they go.

    - ``service_name``: the ``service.name`` resource attribute (required).
    - ``exporter``: ``"console"`` (spans as JSON on stdout, for development), ``"otlp"``
      (OTLP over HTTP to a collector), any ``SpanExporter`` instance (tests use the SDK's
      ``InMemorySpanExporter``), or ``None`` (spans are made, so trace ids reach the logs,
      and exported nowhere).
    - ``endpoint``: with ``"otlp"`` only, the full URL of the collector's traces endpoint
      (``http://collector:4318/v1/traces``); ``None`` keeps the exporter's own default
      (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else ``http://localhost:4318/v1/traces``).
    - ``processor``: ``"simple"`` exports each span as it ends, ``"batch"`` from a
      background thread in batches; ``None`` picks ``"batch"`` for ``"otlp"`` and
      ``"simple"`` otherwise (pass ``"batch"`` with an exporter instance that does I/O).
    - ``sampler``: an SDK ``Sampler``; ``None`` keeps the SDK default (parent-based,
      always on, or ``OTEL_TRACES_SAMPLER``).
    """

    service_name: str = attrs.field(validator=_check_service_name)
    exporter: Literal["console", "otlp"] | SpanExporter | None = attrs.field(
        default="console", validator=_check_exporter
    )
    endpoint: str | None = attrs.field(default=None, validator=_check_endpoint)
    processor: Literal["simple", "batch"] | None = attrs.field(
        default=None, validator=_check_processor
    )
    sampler: Sampler | None = attrs.field(default=None, validator=_check_sampler)


@attrs.define(eq=False)
class Tracing:
    """An app's tracing, made by `start_tracing`: its provider, tracer and exporter.

    ``middleware()`` traces tasks, ``hook(call, hook_id)`` traces a hook,
    ``events_listener()`` feeds resilience events to the current span; ``shutdown()`` (or
    ``await aclose()`` from trio) flushes and stops the exporter.
    """

    config: TracingConfig
    provider: TracerProvider
    tracer: Tracer
    exporter: SpanExporter | None
    _closed: bool = attrs.field(default=False, init=False)

    def middleware(self) -> Trace:
        """``mw.trace(self.tracer, prefix="task")``: a span ``task <id>`` per task run."""
        return trace(self.tracer, prefix="task")

    def hook(
        self, call: Callable[[Emission], Awaitable[Any]], hook_id: str
    ) -> Callable[[Emission], Awaitable[Any]]:
        """Wrap a hook's call (``HookBinding.call``) so each run is a span ``hook <id>``.

        The span has ``runner.hook.id``, ``runner.event.id`` and ``runner.outcome``; it is
        a child of the span that emitted the event. The wrapper is a checkpoint exactly
        where ``call`` is; exceptions and cancellation propagate unchanged.
        """
        tracer = self.tracer
        name = f"hook {hook_id}"

        def traced(emission: Emission) -> Awaitable[Any]:
            attributes = {"runner.hook.id": hook_id, "runner.event.id": emission.event.id}
            return run_in_span(tracer, name, attributes, call, emission)

        return traced

    def events_listener(self) -> Callable[[Event], None]:
        """A listener for ``rs.observe``: each resilience event becomes an event on the
        current span, when that span is recording (any provider's span, not only this
        one's)."""
        return _trace_events()

    def shutdown(self) -> None:
        """Export what is pending, then shut the provider and its exporter down.

        Blocking (the exporter may do network I/O, bounded by its own timeout): from trio,
        ``await aclose()`` instead. Calling it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.provider.force_flush()
        finally:
            self.provider.shutdown()

    async def aclose(self) -> None:
        """`shutdown` in a worker thread, shielded from cancellation.

        Blocks until the pending spans are exported or the exporter gives up; cancellation
        does not interrupt it (losing the last spans of a run is what a shutdown must
        avoid). Calling it again returns at once, without a checkpoint.
        """
        if self._closed:
            return
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self.shutdown)


def _make_exporter(config: TracingConfig) -> SpanExporter | None:
    exporter = config.exporter
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # The stdout of now, not of import time: redirecting sys.stdout then works.
        return ConsoleSpanExporter(service_name=config.service_name, out=sys.stdout)
    if exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ImportError(
                f"TracingConfig(exporter='otlp') needs opentelemetry-exporter-otlp-proto-http: "
                f"{OTEL_EXTRA}"
            ) from exc
        return OTLPSpanExporter(endpoint=config.endpoint)
    assert not isinstance(exporter, str)
    return exporter


def start_tracing(config: TracingConfig) -> Tracing:
    """Build the provider, processor and exporter that ``config`` describes.

    Raises ImportError (naming the ``otel`` extra) when the OpenTelemetry SDK or the
    chosen exporter is not installed. Call `Tracing.shutdown` (or ``aclose``) when done.
    """
    if not isinstance(config, TracingConfig):
        raise TypeError(f"start_tracing: config must be a TracingConfig, got {config!r}")
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ImportError(f"kernel tracing needs the OpenTelemetry SDK: {OTEL_EXTRA}") from exc
    exporter = _make_exporter(config)
    provider = TracerProvider(
        sampler=config.sampler, resource=Resource.create({"service.name": config.service_name})
    )
    if exporter is not None:
        processor_kind = config.processor
        if processor_kind is None:
            processor_kind = "batch" if config.exporter == "otlp" else "simple"
        processor: SpanProcessor = (
            BatchSpanProcessor(exporter)
            if processor_kind == "batch"
            else SimpleSpanProcessor(exporter)
        )
        provider.add_span_processor(processor)
    return Tracing(
        config=config,
        provider=provider,
        tracer=provider.get_tracer(TRACER_NAME),
        exporter=exporter,
    )
