"""Metrics of a running app for Prometheus (the ``prometheus`` extra), and the feed of
resilience events into a `MetricsRegistry`.

    text = prometheus_text()  # what a ``/metrics`` endpoint serves

``prometheus-client`` is imported only here, and only when exposition is asked for.

Families (``task`` is the task id, ``name`` the primitive's ``name=``):

- ``trio_runner_task_calls_total{task,outcome}`` counter; outcome ``success``, ``error``,
  ``cancelled``
- ``trio_runner_task_duration_seconds{task}`` histogram (every outcome)
- ``trio_runner_task_duration_quantile_seconds{task,quantile}`` gauge: p50, p95, p99
- ``trio_runner_task_in_flight{task}`` gauge
- ``trio_runner_circuit_state{name}`` gauge: 0 closed, 1 open, 2 half open
- ``trio_runner_circuit_transitions_total{name}``, ``trio_runner_retries_total{name}``,
  ``trio_runner_retry_gave_up_total{name}``, ``trio_runner_ratelimit_rejections_total{name}``,
  ``trio_runner_bulkhead_rejections_total{name}``, ``trio_runner_timeouts_total{name}``,
  ``trio_runner_fallbacks_total{name}`` counters
- ``trio_runner_cache_requests_total{name,result}`` counter; result ``hit``, ``miss``,
  ``stale``
- ``trio_runner_store_unavailable_total{name}`` counter (outages of a ``resilience.redis``
  store), ``trio_runner_store_available{name}`` gauge: 1 answering, 0 not

A primitive appears in a family once it has reported an event counted there. While an event
lane runs in the process, its families follow (see `kernel.lanes.lane_families`), and so do
those of a running ``kernel.durable.metrics`` resource (see `kernel.durable.durable_families`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Final, cast

import attrs

import resilience as rs
from middleware.observability import MetricsRegistry, MetricsSnapshot, default_registry

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["DEFAULT_BUCKETS", "PrometheusCollector", "observe_primitives", "prometheus_text"]

#: Upper bounds (seconds) of the duration histogram's buckets, ``+Inf`` implied.
DEFAULT_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_CIRCUIT_STATES: Final = {"closed": 0, "open": 1, "half_open": 2}

# (family, help, field of PrimitiveSnapshot) of the per-primitive counters.
_PRIMITIVE_COUNTERS: Final = (
    ("trio_runner_circuit_transitions", "Circuit breaker state changes.", "circuit_transitions"),
    ("trio_runner_retries", "Attempts that failed and were retried.", "retries"),
    ("trio_runner_retry_gave_up", "Calls a retry policy gave up on.", "gave_up"),
    (
        "trio_runner_ratelimit_rejections",
        "Calls refused by a rate limiter.",
        "ratelimit_rejections",
    ),
    ("trio_runner_bulkhead_rejections", "Calls refused by a bulkhead.", "bulkhead_rejections"),
    ("trio_runner_timeouts", "Calls that exceeded their timeout.", "timeouts"),
    ("trio_runner_fallbacks", "Failures answered by a fallback.", "fallbacks"),
    (
        "trio_runner_store_unavailable",
        "Times a shared store (Redis) became unreachable.",
        "store_unavailable",
    ),
)

_MISSING: Final = (
    "Prometheus exposition needs prometheus-client, part of the 'prometheus' extra: "
    "pip install 'trio-runner[prometheus]'"
)


def observe_primitives(
    registry: MetricsRegistry | None = None, *, into: rs.Listeners | None = None
) -> rs.Subscription:
    """Feed resilience events into ``registry`` (default: the process-wide one) until the
    returned subscription is unsubscribed (or its ``with`` block left): every event, or,
    ``into`` a `resilience.Listeners` registry, those reported in its context (a runtime's)."""
    record = _registry(registry, "observe_primitives").record_event
    return rs.observe(record) if into is None else into.observe(record)


def _registry(registry: MetricsRegistry | None, owner: str) -> MetricsRegistry:
    if registry is None:
        return default_registry
    if not isinstance(registry, MetricsRegistry):
        raise TypeError(f"{owner}: registry must be a MetricsRegistry, got {registry!r}")
    return registry


def _require_client() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(_MISSING) from exc


def _to_buckets(value: Iterable[float]) -> tuple[float, ...]:
    owner = "PrometheusCollector"
    bounds = tuple(value) if isinstance(value, Iterable) else ()
    if not bounds or not all(
        isinstance(bound, int | float) and not isinstance(bound, bool) for bound in bounds
    ):
        raise TypeError(f"{owner}: buckets must be a non-empty list of numbers, got {value!r}")
    if not all(0 < bound < math.inf for bound in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError(
            f"{owner}: buckets must be finite, positive and strictly increasing, got {value!r}"
        )
    return tuple(float(bound) for bound in bounds)


def _to_registry(value: MetricsRegistry | None) -> MetricsRegistry:
    return _registry(value, "PrometheusCollector")


@attrs.define(eq=False)
class PrometheusCollector:
    """A ``prometheus_client`` collector of a `MetricsRegistry` (default: the process-wide
    one): ``prometheus_client.REGISTRY.register(PrometheusCollector())`` exposes the
    figures beside an app's own metrics.

    The duration histogram is derived, when collected, from each task's logarithmic
    buckets: a sample counts under ``le=b`` when its bucket's value (within the relative
    accuracy, 1 %, of the sample) is ``<= b``. ``_sum`` is exact.
    Raises `ImportError` naming the ``prometheus`` extra if ``prometheus-client`` is missing.
    """

    registry: MetricsRegistry = attrs.field(default=None, converter=_to_registry)
    buckets: tuple[float, ...] = attrs.field(
        default=DEFAULT_BUCKETS, converter=_to_buckets, kw_only=True
    )

    def __attrs_post_init__(self) -> None:
        _require_client()

    def collect(self) -> Iterator[Metric]:
        """The metric families, from a fresh snapshot."""
        snapshot = self.registry.snapshot()
        yield from _task_families(snapshot, self.buckets)
        yield from _primitive_families(snapshot)
        from kernel.lanes import lane_families  # (imported late: lanes import observability)

        yield from lane_families()
        from kernel.durable import durable_families  # (the same: durable imports observability)

        yield from durable_families()


def prometheus_text(
    registry: MetricsRegistry | None = None, *, buckets: Sequence[float] = DEFAULT_BUCKETS
) -> str:
    """The figures of ``registry`` (default: the process-wide one) in the Prometheus text
    exposition format, for any server to serve as ``/metrics``.

    Raises `ImportError` naming the ``prometheus`` extra if ``prometheus-client`` is missing.
    """
    collector = PrometheusCollector(registry, buckets=buckets)
    from prometheus_client import generate_latest

    return generate_latest(collector).decode()


def _task_families(snapshot: MetricsSnapshot, bounds: Sequence[float]) -> tuple[Metric, ...]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.utils import floatToGoString

    calls = CounterMetricFamily(
        "trio_runner_task_calls", "Completed task calls by outcome.", labels=["task", "outcome"]
    )
    durations = HistogramMetricFamily(
        "trio_runner_task_duration_seconds", "Task call durations.", labels=["task"]
    )
    quantiles = GaugeMetricFamily(
        "trio_runner_task_duration_quantile_seconds",
        "Task call duration quantiles (relative error <= 1 %).",
        labels=["task", "quantile"],
    )
    in_flight = GaugeMetricFamily(
        "trio_runner_task_in_flight", "Task calls running now.", labels=["task"]
    )
    go_format = cast("Callable[[float], str]", floatToGoString)  # untyped upstream
    labels = [go_format(bound) for bound in bounds]
    for task_id, task in sorted(snapshot.tasks.items()):
        calls.add_metric([task_id, "success"], task.successes)
        calls.add_metric([task_id, "error"], task.errors)
        calls.add_metric([task_id, "cancelled"], task.cancelled)
        in_flight.add_metric([task_id], task.in_flight)
        cumulative = _cumulative(task.histogram, bounds)
        durations.add_metric(
            [task_id],
            [*zip(labels, cumulative[:-1], strict=True), ("+Inf", cumulative[-1])],
            task.duration_sum,
        )
        for quantile, value in (("0.5", task.p50), ("0.95", task.p95), ("0.99", task.p99)):
            if value is not None:
                quantiles.add_metric([task_id, quantile], value)
    return calls, durations, quantiles, in_flight


def _cumulative(histogram: Sequence[tuple[float, int]], bounds: Sequence[float]) -> list[int]:
    """Samples at or below each bound, then all of them (last)."""
    counts: list[int] = []
    running = index = 0
    for bound in bounds:
        while index < len(histogram) and histogram[index][0] <= bound:
            running += histogram[index][1]
            index += 1
        counts.append(running)
    counts.append(running + sum(count for _, count in histogram[index:]))
    return counts


def _primitive_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    primitives = sorted(snapshot.primitives.items())
    state = GaugeMetricFamily(
        "trio_runner_circuit_state",
        "Circuit breaker state: 0 closed, 1 open, 2 half open.",
        labels=["name"],
    )
    for name, primitive in primitives:
        if primitive.circuit_state is not None:
            state.add_metric([name], _CIRCUIT_STATES[primitive.circuit_state])
    yield state
    available = GaugeMetricFamily(
        "trio_runner_store_available",
        "Whether a shared store (Redis) answered at its last report: 1 yes, 0 no.",
        labels=["name"],
    )
    for name, primitive in primitives:
        if primitive.store_available is not None:
            available.add_metric([name], int(primitive.store_available))
    yield available
    for family, help_text, field in _PRIMITIVE_COUNTERS:
        counter = CounterMetricFamily(family, help_text, labels=["name"])
        for name, primitive in primitives:
            value = getattr(primitive, field)
            if value:
                counter.add_metric([name], value)
        yield counter
    cache = CounterMetricFamily(
        "trio_runner_cache_requests", "Cache lookups by result.", labels=["name", "result"]
    )
    for name, primitive in primitives:
        results = (
            ("hit", primitive.cache_hits),
            ("miss", primitive.cache_misses),
            ("stale", primitive.cache_stale_hits),
        )
        if any(count for _, count in results):
            for result, count in results:
                cache.add_metric([name, result], count)
    yield cache
