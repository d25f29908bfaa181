"""In-process metrics: `MetricsRegistry`, fed by the ``mw.metrics()`` middleware (per task)
and by `rs.observe` events (per resilience primitive); read with ``snapshot()``.

    registry = MetricsRegistry()

    @mw.apply(mw.metrics(registry), mw.retry(attempts=3))
    async def fetch(url: str) -> bytes: ...

    with rs.observe(registry.record_event):
        await fetch("https://example.org")
    registry.snapshot().tasks[fetch.target_id].p99

Everything here runs in the trio thread; ``snapshot()`` may also be called from another
thread (each figure is read atomically, the figures together are not one instant).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs
import trio

from middleware._call import Call, Middleware, Next
from middleware._pipeline import Bound, Factory
from middleware.observability._quantiles import LogHistogram, accuracy, quantiles_of
from resilience import Event
from resilience.validate import positive_int

__all__ = [
    "UNNAMED",
    "MetricsRegistry",
    "MetricsSnapshot",
    "PrimitiveSnapshot",
    "TaskMetrics",
    "TaskSnapshot",
    "default_registry",
    "metrics",
]

#: The key under which events of primitives without a ``name`` are counted.
UNNAMED: Final = "(unnamed)"

#: The length of the window of `TaskSnapshot.rate_per_second`, in seconds.
RATE_WINDOW: Final = 60

QUANTILES: Final = (0.5, 0.95, 0.99)


@attrs.frozen
class TaskSnapshot:
    """The figures of one task (one wrapped function) at one moment.

    ``calls`` counts completed calls of any outcome; ``errors`` those that raised an
    `Exception`; ``cancelled`` those ended by a `BaseException` that is not one
    (`trio.Cancelled`, `KeyboardInterrupt`, …); ``in_flight`` those running now.
    ``rate_per_second`` is the number of calls completed over the last 60 s, divided by
    60: per-second buckets of trio's clock, the current second included.
    ``p50``/``p95``/``p99`` are durations in seconds (``None`` before any call), each within
    the registry's relative accuracy (1 %) of the true sample of rank ``floor(q * (n - 1))``;
    ``duration_sum`` is the exact total, ``histogram`` the ``(value, count)`` buckets
    behind the quantiles (see `LogHistogram.buckets`). Durations cover every outcome.
    """

    calls: int
    errors: int
    cancelled: int
    in_flight: int
    rate_per_second: float
    p50: float | None
    p95: float | None
    p99: float | None
    duration_sum: float
    histogram: tuple[tuple[float, int], ...]

    @property
    def successes(self) -> int:
        """Calls that returned."""
        return self.calls - self.errors - self.cancelled


@attrs.frozen
class PrimitiveSnapshot:
    """What the resilience primitives of one ``name`` reported (`rs.observe` events).

    ``kind`` is the event family of the primitive (``"retry"``, ``"circuit"``,
    ``"ratelimit"``, ``"bulkhead"``, ``"cache"``, ``"timeout"``, ``"fallback"``,
    ``"hedge"``, ``"store"`` for a ``resilience.redis.Store``); several primitives sharing a
    name (the ``mw`` adapters name each after its function) give their families joined by
    ``+`` in order: ``"circuit+retry"``.
    ``circuit_state`` is the breaker's last reported state (``"closed"``, ``"open"``,
    ``"half_open"``), ``None`` until it reports a transition or a rejection.
    ``store_unavailable`` counts a store's outages (``store.unavailable``);
    ``store_available`` is whether it answered at its last report (``None`` before any).
    """

    kind: str
    retries: int
    gave_up: int
    circuit_state: str | None
    circuit_transitions: int
    ratelimit_rejections: int
    bulkhead_rejections: int
    cache_hits: int
    cache_misses: int
    cache_stale_hits: int
    timeouts: int
    fallbacks: int
    store_unavailable: int = 0
    store_available: bool | None = None


@attrs.frozen
class MetricsSnapshot:
    """Every figure of a `MetricsRegistry` at ``timestamp`` (``trio.current_time()``).

    Outside a trio run there is no clock: ``timestamp`` is ``None`` and each task's rate
    is that of the minute ending with its latest completed call.
    """

    timestamp: float | None
    tasks: Mapping[str, TaskSnapshot]
    primitives: Mapping[str, PrimitiveSnapshot]


@attrs.define(eq=False)
class TaskMetrics:
    """The live figures of one task, updated by the ``mw.metrics()`` middleware.

    Exposed as ``.metrics`` on a function wrapped with it. The counters are plain
    attributes updated in place; read them through `snapshot`.
    """

    target_id: str
    histogram: LogHistogram
    #: Calls begun; ``started - calls`` are in flight.
    started: int = attrs.field(init=False, default=0)
    calls: int = attrs.field(init=False, default=0)
    errors: int = attrs.field(init=False, default=0)
    cancelled: int = attrs.field(init=False, default=0)
    duration_sum: float = attrs.field(init=False, default=0.0)
    #: The open second of the rate window: ``[second_start, second_end)`` of trio's clock.
    second_start: float = attrs.field(init=False, default=math.inf, repr=False)
    second_end: float = attrs.field(init=False, default=-math.inf, repr=False)
    _mark: int = attrs.field(init=False, default=0, repr=False)
    _seconds: deque[tuple[float, int]] = attrs.field(
        init=False, factory=lambda: deque(maxlen=RATE_WINDOW), repr=False
    )

    def roll(self, now: float) -> None:
        """Open the second holding ``now`` (a call ends outside the open one).

        The calls of the closed second join the window; if the clock went back (another
        trio run, another clock), the window restarts.
        """
        if now >= self.second_end:
            closed = self.calls - self._mark
            if closed:
                self._seconds.append((self.second_start, closed))
        else:
            self._seconds.clear()
        self._mark = self.calls
        self.second_start = float(math.floor(now))
        self.second_end = self.second_start + 1.0

    def rate(self, now: float | None) -> float:
        """Calls per second over the ``RATE_WINDOW`` seconds ending in the second of ``now``
        (of the latest completed call if ``None``)."""
        latest = math.floor(now) if now is not None else self.second_start
        oldest = latest - RATE_WINDOW
        seconds = tuple(self._seconds)  # one C call: safe against the trio thread
        total = sum(count for second, count in seconds if oldest < second <= latest)
        if oldest < self.second_start <= latest:
            total += self.calls - self._mark
        return total / RATE_WINDOW

    def snapshot(self, now: float | None = None) -> TaskSnapshot:
        """The figures now (``now`` defaults to ``trio.current_time()`` in a trio run)."""
        if now is None:
            now = _current_time()
        calls = self.calls
        histogram = self.histogram.buckets()
        p50, p95, p99 = quantiles_of(histogram, QUANTILES)
        return TaskSnapshot(
            calls=calls,
            errors=self.errors,
            cancelled=self.cancelled,
            in_flight=self.started - calls,
            rate_per_second=self.rate(now),
            p50=p50,
            p95=p95,
            p99=p99,
            duration_sum=self.duration_sum,
            histogram=histogram,
        )

    def reset(self) -> None:
        """Forget every figure but the calls in flight."""
        self.started -= self.calls
        self.calls = self.errors = self.cancelled = self._mark = 0
        self.duration_sum = 0.0
        self.histogram.clear()
        self._seconds.clear()
        self.second_start, self.second_end = math.inf, -math.inf


@attrs.define(eq=False)
class _PrimitiveStats:
    counts: dict[str, int] = attrs.Factory(dict)
    circuit_state: str | None = None
    store_available: bool | None = None

    def snapshot(self) -> PrimitiveSnapshot:
        counts = self.counts.copy()
        families = sorted({kind.partition(".")[0] for kind in counts})
        return PrimitiveSnapshot(
            kind="+".join(families),
            retries=counts.get("retry.attempt", 0),
            gave_up=counts.get("retry.gave_up", 0),
            circuit_state=self.circuit_state,
            circuit_transitions=counts.get("circuit.state_changed", 0),
            ratelimit_rejections=counts.get("ratelimit.rejected", 0),
            bulkhead_rejections=counts.get("bulkhead.rejected", 0),
            cache_hits=counts.get("cache.hit", 0),
            cache_misses=counts.get("cache.miss", 0),
            cache_stale_hits=counts.get("cache.stale_hit", 0),
            timeouts=counts.get("timeout.exceeded", 0),
            fallbacks=counts.get("fallback.used", 0),
            store_unavailable=counts.get("store.unavailable", 0),
            store_available=self.store_available,
        )


@attrs.define(eq=False)
class MetricsRegistry:
    """A process-local store of task and primitive metrics.

    ``relative_accuracy`` and ``max_buckets`` shape each task's latency histogram (see
    `LogHistogram`: quantiles within 1 %; per task at most 2048 buckets of about 100 bytes,
    a few hundred for common latency spreads).
    Tasks are keyed by target id (the kernel's task id); functions wrapped under the same
    id share their figures. Primitives are keyed by their ``name`` (`UNNAMED` for none).
    """

    relative_accuracy: float = attrs.field(default=0.01, validator=accuracy, kw_only=True)
    max_buckets: int = attrs.field(default=2048, validator=positive_int, kw_only=True)
    _tasks: dict[str, TaskMetrics] = attrs.field(init=False, factory=dict, repr=False)
    _primitives: dict[str, _PrimitiveStats] = attrs.field(init=False, factory=dict, repr=False)

    def task(self, target_id: str) -> TaskMetrics:
        """The live metrics of ``target_id``, created on first use."""
        found = self._tasks.get(target_id)
        if found is None:
            histogram = LogHistogram(
                relative_accuracy=self.relative_accuracy, max_buckets=self.max_buckets
            )
            found = self._tasks[target_id] = TaskMetrics(target_id, histogram)
        return found

    def record_event(self, event: Event) -> None:
        """Count a resilience event (a listener for `rs.observe`)."""
        name = UNNAMED if event.source is None else event.source
        stats = self._primitives.get(name)
        if stats is None:
            stats = self._primitives[name] = _PrimitiveStats()
        kind = event.kind
        stats.counts[kind] = stats.counts.get(kind, 0) + 1
        if kind == "circuit.state_changed":
            stats.circuit_state = event.data["new"]
        elif kind == "circuit.rejected":
            stats.circuit_state = event.data["state"]
        elif kind == "store.unavailable":
            stats.store_available = False
        elif kind == "store.recovered":
            stats.store_available = True

    def snapshot(self) -> MetricsSnapshot:
        """Every figure now; see `MetricsSnapshot`. Not a checkpoint (plain function)."""
        now = _current_time()
        tasks = {tid: task.snapshot(now) for tid, task in self._tasks.copy().items()}
        primitives = {name: stats.snapshot() for name, stats in self._primitives.copy().items()}
        return MetricsSnapshot(now, MappingProxyType(tasks), MappingProxyType(primitives))

    def reset(self) -> None:
        """Forget every figure (tests): tasks keep their entries, zeroed, since wrapped
        functions hold them; calls in flight stay counted."""
        for task in self._tasks.copy().values():
            task.reset()
        self._primitives.clear()


#: The registry of ``mw.metrics()`` without an argument (and of ``kernel.run(metrics=True)``).
default_registry: Final = MetricsRegistry()


def _current_time() -> float | None:
    try:
        return trio.current_time()
    except RuntimeError:
        return None


def measure(task: TaskMetrics) -> Callable[..., Awaitable[Any]]:
    """``measured(fn, *args, **kwargs)``: await ``fn(*args, **kwargs)``, counting the call in
    ``task``: two clock reads and a few updates. The middleware uses it, and the kernel
    wraps task runners with it directly (no pipeline needed).

    It reads trio's clock exactly as ``trio.current_time()`` does (which returns
    ``current_clock().current_time()``), looking the clock up once per call: about 90 ns
    less a call, 10 % of the middleware's cost.
    """
    clock = trio.lowlevel.current_clock
    histogram = task.histogram
    counts = histogram.counts
    inverse = histogram.inverse_log_gamma
    ceil, log = math.ceil, math.log

    async def measured(fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        now = clock().current_time
        t0 = now()
        task.started += 1
        try:
            return await fn(*args, **kwargs)
        except Exception:
            task.errors += 1
            raise
        except BaseException:
            task.cancelled += 1
            raise
        finally:
            t1 = now()
            if t1 >= task.second_end or t1 < task.second_start:
                task.roll(t1)
            task.calls += 1
            elapsed = t1 - t0
            task.duration_sum += elapsed
            try:  # LogHistogram.add, its common case inlined
                counts[ceil(log(elapsed) * inverse)] += 1
            except (KeyError, ValueError):
                histogram.add(elapsed)

    return measured


def _measuring(task: TaskMetrics) -> Middleware:
    """The middleware counting the calls of ``task`` (see `measure`)."""
    measured = measure(task)

    def metrics_middleware(call: Call, next: Next) -> Awaitable[Any]:
        return measured(next, call)

    return metrics_middleware


@attrs.frozen
class _Metrics:
    """``mw.metrics(registry)``: binds each wrapped function to its `TaskMetrics`."""

    registry: MetricsRegistry

    def bind(self, target_id: str) -> Bound:
        """The counting middleware for ``target_id``; the function exposes ``.metrics``."""
        task = self.registry.task(target_id)
        return Bound(_measuring(task), {"metrics": task})


def metrics(registry: MetricsRegistry | None = None) -> Factory:
    """Count each call of the wrapped function in ``registry`` (default `default_registry`):
    calls by outcome, calls in flight, rate, and latency quantiles (see `TaskSnapshot`).

    Put it first (outermost) to measure the whole pipeline. Cancellation and other
    `BaseException`s are counted as ``cancelled`` and re-raised; errors are re-raised.
    The wrapped function exposes its `TaskMetrics` as ``.metrics``.
    """
    if registry is None:
        registry = default_registry
    elif not isinstance(registry, MetricsRegistry):
        raise TypeError(f"mw.metrics: registry must be a MetricsRegistry, got {registry!r}")
    return _Metrics(registry)
