"""Observation middleware and what it records: ``log()``, ``metrics()`` (into a
`MetricsRegistry`, read as a `MetricsSnapshot`) and ``trace()`` (OpenTelemetry spans).

    from middleware import observability

    registry = observability.MetricsRegistry()
    pipeline = mw.Pipeline([observability.metrics(registry), mw.retry(attempts=3)])
    with rs.observe(registry.record_event):  # the primitives' events, per name
        ...

`trace_events` turns resilience events into events on the current span; `measure`,
`run_in_span` and `current_ids` are the pieces a runtime builds its own observation from
(the kernel's metrics and tracing use them). Each is a no-op until a sink is configured.
"""

from middleware.observability._log import log
from middleware.observability._metrics import (
    UNNAMED,
    MetricsRegistry,
    MetricsSnapshot,
    PrimitiveSnapshot,
    TaskMetrics,
    TaskSnapshot,
    default_registry,
    measure,
    metrics,
)
from middleware.observability._trace import (
    OTEL_EXTRA,
    TRACER_NAME,
    Trace,
    current_ids,
    run_in_span,
    trace,
    trace_events,
)
from resilience.faces import present as _present

__all__ = [
    "OTEL_EXTRA",
    "TRACER_NAME",
    "UNNAMED",
    "MetricsRegistry",
    "MetricsSnapshot",
    "PrimitiveSnapshot",
    "TaskMetrics",
    "TaskSnapshot",
    "Trace",
    "current_ids",
    "default_registry",
    "log",
    "measure",
    "metrics",
    "run_in_span",
    "trace",
    "trace_events",
]

_present("middleware.observability", globals())
