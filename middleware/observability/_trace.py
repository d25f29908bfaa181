"""``mw.trace()``: one OpenTelemetry span per call of a wrapped function.

OpenTelemetry is optional (the ``otel`` extra) and imported only when `trace` or
`trace_events` is called, never by importing ``middleware``.

The span is the current span while the call runs, so traced functions called inside it
get child spans, and so does work spawned from it into any nursery: OpenTelemetry keeps
its context in a context variable, which trio copies into a task when it is spawned.
Span attributes:

- ``runner.task.id``: the wrapped function's id, set when the span starts;
- ``runner.outcome``: ``"success"``, ``"error"`` (an `Exception`; the span also gets an
  exception event and status ERROR) or ``"cancelled"`` (``trio.Cancelled`` or any other
  `BaseException` that is not an `Exception`: not a failure, status left unset);
- ``runner.retry.attempts`` and ``runner.cache.hit``: ``call.state["attempt"]`` and
  ``call.state["cache_hit"]`` as the middlewares inside left them (``mw.retry``,
  ``mw.cache``), when present.

`trace_events` turns resilience events (``rs.observe``) into events on the current span.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from middleware._call import Call, Next
from middleware._pipeline import Bound

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.util.types import AttributeValue

    from resilience import Event

__all__ = [
    "OTEL_EXTRA",
    "TRACER_NAME",
    "Trace",
    "current_ids",
    "run_in_span",
    "trace",
    "trace_events",
]

#: How to get OpenTelemetry, for the ImportErrors raised when it is missing.
OTEL_EXTRA: Final = "install the `otel` extra: pip install 'trio-runner[otel]'"

#: The instrumentation scope of the spans made here.
TRACER_NAME: Final = "trio-runner"

A = TypeVar("A")
R = TypeVar("R")


def _opentelemetry_trace(owner: str) -> Any:
    """``opentelemetry.trace``, or an ImportError that says how to install it."""
    try:
        import opentelemetry.trace as otel_trace
    except ImportError as exc:
        raise ImportError(f"{owner} needs OpenTelemetry: {OTEL_EXTRA}") from exc
    return otel_trace


def _finish(span: Span, outcome: str, state: Mapping[str, Any] | None) -> None:
    span.set_attribute("runner.outcome", outcome)
    if state:
        attempt = state.get("attempt")
        if attempt is not None:
            span.set_attribute("runner.retry.attempts", attempt)
        cache_hit = state.get("cache_hit")
        if cache_hit is not None:
            span.set_attribute("runner.cache.hit", cache_hit)


async def run_in_span(
    tracer: Tracer,
    name: str,
    attributes: Mapping[str, AttributeValue],
    fn: Callable[[A], Awaitable[R]],
    arg: A,
    state: Mapping[str, Any] | None = None,
) -> R:
    """Await ``fn(arg)`` inside a new current span ``name``, then record its outcome.

    ``state`` (a ``call.state``) is read after ``fn`` returns or raises, for the retry and
    cache attributes. An `Exception` is recorded on the span (event and status ERROR, by
    OpenTelemetry's ``use_span``) and re-raised unchanged; cancellation is re-raised with
    outcome ``"cancelled"``. The span always ends and the previous context is restored
    (the context manager detaches its token in a ``finally``). A checkpoint exactly where
    ``fn`` is.
    """
    with tracer.start_as_current_span(name, attributes=attributes) as span:
        try:
            result = await fn(arg)
        except Exception:
            if span.is_recording():
                _finish(span, "error", state)
            raise
        except BaseException:
            if span.is_recording():
                _finish(span, "cancelled", state)
            raise
        if span.is_recording():
            _finish(span, "success", state)
        return result


class _Traced:
    """The middleware bound to one function: its span name and attributes are built once."""

    __slots__ = ("_attributes", "_name", "_tracer")

    def __init__(self, tracer: Tracer, name: str, target_id: str) -> None:
        self._tracer = tracer
        self._name = name
        self._attributes: Mapping[str, AttributeValue] = {"runner.task.id": target_id}

    def __call__(self, call: Call, next: Next) -> Awaitable[Any]:
        return run_in_span(self._tracer, self._name, self._attributes, next, call, call.state)


class _GlobalTraced(_Traced):
    """The middleware of ``mw.trace()`` without a tracer: while OpenTelemetry's global
    provider is still its unset proxy, a call goes straight through (no span, no context
    switch); once the application sets one, the proxy tracer delegates to it."""

    __slots__ = ("_get_provider", "_unset")

    def __init__(self, otel_trace: Any, name: str, target_id: str) -> None:
        super().__init__(otel_trace.get_tracer(TRACER_NAME), name, target_id)
        self._get_provider: Callable[[], object] = otel_trace.get_tracer_provider
        self._unset: type = otel_trace.ProxyTracerProvider

    def __call__(self, call: Call, next: Next) -> Awaitable[Any]:
        if isinstance(self._get_provider(), self._unset):
            return next(call)
        return run_in_span(self._tracer, self._name, self._attributes, next, call, call.state)


@attrs.frozen
class Trace:
    """The `Factory` that `trace` returns: a span per call of each function it wraps."""

    tracer: Tracer | None
    prefix: str

    def bind(self, target_id: str) -> Bound:
        """The tracing middleware for the function ``target_id`` (spans ``"<prefix> <id>"``).

        Without a tracer, OpenTelemetry's global ``get_tracer("trio-runner")`` is taken
        here. Until the application sets a global tracer provider, calls pass straight
        through (no span); from the moment one is set, their spans go to it.
        """
        name = f"{self.prefix} {target_id}"
        if self.tracer is None:
            return Bound(_GlobalTraced(_opentelemetry_trace("mw.trace"), name, target_id))
        return Bound(_Traced(self.tracer, name, target_id))


def trace(tracer: Tracer | None = None, *, prefix: str = "call") -> Trace:
    """A span ``"<prefix> <target id>"`` around every call of the wrapped function.

    ``tracer`` is an ``opentelemetry.trace.Tracer``; ``None`` uses the global tracer
    provider, so the middleware records nothing until the application configures
    OpenTelemetry. See the module docstring for the attributes. Raises ImportError when
    OpenTelemetry is not installed (the ``otel`` extra), TypeError/ValueError for bad
    arguments.
    """
    otel_trace = _opentelemetry_trace("mw.trace")
    if tracer is not None and not isinstance(tracer, otel_trace.Tracer):
        raise TypeError(
            f"mw.trace: tracer must be an opentelemetry.trace.Tracer or None, got {tracer!r}"
        )
    if not isinstance(prefix, str):
        raise TypeError(f"mw.trace: prefix must be a str, got {prefix!r}")
    if not prefix.strip():
        raise ValueError(f"mw.trace: prefix must not be blank, got {prefix!r}")
    return Trace(tracer, prefix)


def _span_attributes(event: Event) -> dict[str, AttributeValue]:
    """The event's data as OpenTelemetry attributes: str, bool, int and float kept; an
    exception becomes ``<key>.type`` and ``<key>.message``; ``None`` is left out; anything
    else becomes its ``repr``."""
    attributes: dict[str, AttributeValue] = {}
    if event.source is not None:
        attributes["source"] = event.source
    for key, value in event.data.items():
        if value is None:
            continue
        if isinstance(value, str | bool | int | float):
            attributes[key] = value
        elif isinstance(value, BaseException):
            attributes[f"{key}.type"] = type(value).__qualname__
            attributes[f"{key}.message"] = str(value)
        else:
            attributes[key] = repr(value)
    return attributes


class _SpanEvents:
    """An ``rs.observe`` listener adding each event to the current span when it records."""

    __slots__ = ("_current_span",)

    def __init__(self, current_span: Callable[[], Span]) -> None:
        self._current_span = current_span

    def __call__(self, event: Event) -> None:
        span = self._current_span()
        if span.is_recording():
            span.add_event(event.kind, attributes=_span_attributes(event))


def trace_events() -> Callable[[Event], None]:
    """A listener for ``rs.observe`` that adds every resilience event (``retry.attempt``,
    ``circuit.state_changed``, ``cache.hit``, …) as an event on the current span.

    Outside a recording span it does nothing. Raises ImportError without OpenTelemetry.
    """
    return _SpanEvents(_opentelemetry_trace("trace_events").get_current_span)


def current_ids() -> tuple[str | None, str | None]:
    """The current trace id and span id as 32 and 16 hex digits, or ``(None, None)``.

    Cheap when tracing is off: without ``opentelemetry.trace`` imported no span can be
    current, so nothing is imported here.
    """
    if "opentelemetry.trace" not in sys.modules:
        return None, None
    from opentelemetry import trace as otel_trace

    context = otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return otel_trace.format_trace_id(context.trace_id), otel_trace.format_span_id(context.span_id)
