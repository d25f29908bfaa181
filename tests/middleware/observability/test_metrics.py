"""``mw.metrics()`` and `MetricsRegistry`: per-task counters, rate window, latency quantiles,
and primitive figures from `rs.observe` events."""

from __future__ import annotations

import math
import random
from typing import Any

import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from ddsketch import DDSketch
from hypothesis import given, settings

import middleware as mw
import resilience as rs
from middleware.observability import UNNAMED, MetricsRegistry, TaskMetrics, _metrics, metrics
from middleware.observability._quantiles import LogHistogram

QUANTILES = (0.5, 0.95, 0.99)


def measured(registry: MetricsRegistry, target_id: str = "job") -> Any:
    async def job(seconds: float = 0.0, fail: bool = False) -> str:
        await trio.sleep(seconds)
        if fail:
            raise ValueError("boom")
        return "done"

    return mw.Pipeline([metrics(registry)]).wrap(job, target_id=target_id)


# ---------------------------------------------------------------- counters and durations


async def test_counts_outcomes_durations_and_in_flight(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    job = measured(registry)
    assert await job(1.0) == "done"
    with pytest.raises(ValueError, match="boom"):
        await job(2.0, fail=True)
    with trio.move_on_after(0.5):
        await job(10.0)
    assert trio.current_time() == 3.5

    async with trio.open_nursery() as nursery:
        nursery.start_soon(job, 4.0)
        nursery.start_soon(job, 4.0)
        await trio.sleep(1.0)
        running = registry.snapshot().tasks["job"]
        assert (running.calls, running.in_flight) == (3, 2)
    done = registry.snapshot()
    assert done.timestamp == 7.5
    task = done.tasks["job"]
    assert (task.calls, task.successes, task.errors, task.cancelled) == (5, 3, 1, 1)
    assert task.in_flight == 0
    assert task.duration_sum == 1.0 + 2.0 + 0.5 + 4.0 + 4.0
    assert sum(count for _, count in task.histogram) == 5
    assert task.p50 == pytest.approx(2.0, rel=0.01)
    assert task.p95 == pytest.approx(4.0, rel=0.01)
    assert task.p99 == pytest.approx(4.0, rel=0.01)


async def test_a_task_without_calls_has_no_quantiles(registry: MetricsRegistry) -> None:
    measured(registry)
    task = registry.snapshot().tasks["job"]
    assert (task.calls, task.p50, task.p95, task.p99, task.histogram) == (0, None, None, None, ())
    assert task.rate_per_second == 0.0


async def test_cancellation_is_counted_and_propagates_never_swallowed(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    job = measured(registry)
    with trio.CancelScope() as scope:
        scope.cancel()
        await job(1.0)
        pytest.fail("the cancellation was swallowed")  # pragma: no cover
    assert scope.cancelled_caught
    task = registry.snapshot().tasks["job"]
    assert (task.calls, task.cancelled, task.errors, task.in_flight) == (1, 1, 0, 0)
    assert task.histogram == ((0.0, 1),)  # cancelled at once: a zero duration
    assert task.p99 == 0.0


async def test_the_middleware_buckets_exactly_as_log_histogram_add(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    job = measured(registry)
    durations = [0.0, 0.001, 0.001, 0.0015, 0.25, 3.0, 3.0, 1234.5]
    async with trio.open_nursery() as nursery:
        for seconds in durations:  # every call starts at 0: its duration is exactly `seconds`
            nursery.start_soon(job, seconds)
    reference = LogHistogram()
    for seconds in durations:
        reference.add(seconds)
    assert job.metrics.histogram.counts == reference.counts
    assert job.metrics.histogram.zeros == reference.zeros == 1
    assert registry.snapshot().tasks["job"].histogram == reference.buckets()


async def test_wrapped_function_exposes_its_task_metrics_and_ids_share_them(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    first, second = measured(registry, "shared"), measured(registry, "shared")
    assert isinstance(first.metrics, TaskMetrics)
    assert first.metrics is second.metrics is registry.task("shared")
    await first()
    await second()
    assert first.metrics.snapshot().calls == 2
    assert list(registry.snapshot().tasks) == ["shared"]


async def test_default_target_id_is_module_qualname(registry: MetricsRegistry) -> None:
    @mw.apply(metrics(registry))
    async def ping() -> str:
        return "pong"

    assert await ping() == "pong"
    assert registry.snapshot().tasks[ping.target_id].calls == 1  # type: ignore[attr-defined]
    assert ping.target_id.endswith(".ping")  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the rate window


async def test_rate_counts_the_last_sixty_seconds_in_per_second_buckets(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    job = measured(registry)
    for _ in range(30):  # all completed in second 0
        await job()
    await trio.sleep_until(10.0)
    for _ in range(6):  # completed at 10.125 .. 10.75
        await job(0.125)
    assert trio.current_time() == 10.75

    def rate() -> float:
        return registry.snapshot().tasks["job"].rate_per_second

    assert rate() == 36 / 60
    await trio.sleep_until(59.75)  # second 0 is still within (now - 60 s, now]
    assert rate() == 36 / 60
    await trio.sleep_until(60.0)  # second 0 has left the window
    assert rate() == 6 / 60
    await trio.sleep_until(70.5)  # second 10 too
    assert rate() == 0.0
    await job()
    assert rate() == 1 / 60
    assert registry.snapshot().tasks["job"].calls == 37


async def test_rate_spans_many_seconds_and_only_the_last_minute(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    job = measured(registry)
    for _ in range(90):  # one call ending in each of seconds 1 .. 90
        await job(1.0)
    assert trio.current_time() == 90.0
    assert registry.snapshot().tasks["job"].rate_per_second == 60 / 60
    await trio.sleep(30.5)
    assert registry.snapshot().tasks["job"].rate_per_second == 30 / 60


def test_a_clock_going_back_restarts_the_window(registry: MetricsRegistry) -> None:
    job = measured(registry)

    async def calls(count: int, start: float) -> float:
        await trio.sleep(start)
        for _ in range(count):
            await job()
        return registry.snapshot().tasks["job"].rate_per_second

    # Two trio runs, two clocks: the second starts long before the first ended.
    assert trio.run(calls, 12, 1000.0, clock=trio.testing.MockClock(autojump_threshold=0)) == 0.2
    assert trio.run(calls, 3, 5.0, clock=trio.testing.MockClock(autojump_threshold=0)) == 0.05
    assert registry.snapshot().tasks["job"].calls == 15


async def test_outside_a_trio_run_the_rate_is_that_of_the_latest_minute(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    job = measured(registry)
    for _ in range(3):
        await job(1.0)
    await trio.sleep(120.0)
    assert registry.snapshot().tasks["job"].rate_per_second == 0.0
    outside = await trio.to_thread.run_sync(registry.snapshot)
    assert outside.timestamp is None
    assert outside.tasks["job"].rate_per_second == 3 / 60
    assert outside.tasks["job"].calls == 3


def test_an_unused_task_snapshot_outside_a_run(registry: MetricsRegistry) -> None:
    registry.task("idle")
    snapshot = registry.snapshot()
    assert snapshot.timestamp is None
    assert snapshot.tasks["idle"].rate_per_second == 0.0


# ---------------------------------------------------------------- quantile accuracy

durations = st.floats(min_value=1e-9, max_value=1e6, allow_nan=False, allow_infinity=False)


def assert_within_accuracy(histogram: LogHistogram, samples: list[float]) -> None:
    """Each reported quantile q is within the relative accuracy of the true sample of
    0-based rank floor(q * (n - 1)) among the sorted samples."""
    ordered = sorted(samples)
    reported = histogram.quantiles(QUANTILES)
    accuracy = histogram.relative_accuracy * (1 + 1e-9)  # float rounding at bucket edges
    for q, value in zip(QUANTILES, reported, strict=True):
        expected = ordered[math.floor(q * (len(ordered) - 1))]
        assert value is not None
        if expected == 0.0:
            assert value == 0.0
        else:
            assert abs(value - expected) <= accuracy * expected, (q, value, expected)


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(durations | st.just(0.0), min_size=1, max_size=300),
    accuracy=st.sampled_from([0.01, 0.02, 0.005]),
)
def test_quantiles_are_within_the_relative_accuracy_of_the_sorted_reference(
    samples: list[float], accuracy: float
) -> None:
    histogram = LogHistogram(relative_accuracy=accuracy)
    for sample in samples:
        histogram.add(sample)
    assert histogram.count == len(samples)
    assert_within_accuracy(histogram, samples)
    assert sum(count for _, count in histogram.buckets()) == len(samples)


@settings(max_examples=100, deadline=None)
@given(samples=st.lists(durations, min_size=1, max_size=200), limit=st.integers(1, 40))
def test_buckets_are_bounded_and_high_quantiles_survive_collapsing(
    samples: list[float], limit: int
) -> None:
    histogram = LogHistogram(max_buckets=limit)
    for sample in samples:
        histogram.add(sample)
    assert len(histogram.counts) <= limit
    assert histogram.count == len(samples)
    ordered = sorted(samples)
    top = ordered[-1]
    (p100,) = histogram.quantiles([1.0])
    assert p100 is not None
    assert abs(p100 - top) <= 0.01 * (1 + 1e-9) * top


def test_same_buckets_and_ranks_as_ddsketch() -> None:
    generator = random.Random(5)
    samples = [generator.lognormvariate(-6, 2) for _ in range(2000)] + [0.0] * 20
    histogram, sketch = LogHistogram(), DDSketch(0.01)
    for sample in samples:
        histogram.add(sample)
        sketch.add(sample)
    qs = [i / 100 for i in range(101)]
    assert histogram.quantiles(qs) == tuple(sketch.get_quantile_value(q) for q in qs)


def test_collapsing_merges_the_lowest_buckets() -> None:
    histogram = LogHistogram(max_buckets=2)
    for sample in (1.0, 10.0, 100.0, 0.001):
        histogram.add(sample)
    keys = sorted(histogram.counts)
    assert len(keys) == 2
    assert histogram.counts[keys[0]] == 3  # 0.001, 1.0 and 10.0 merged into 10.0's bucket
    assert histogram.buckets()[-1][0] == pytest.approx(100.0, rel=0.01)


def test_clear_forgets_in_place() -> None:
    histogram = LogHistogram()
    counts = histogram.counts
    histogram.add(0.0)
    histogram.add(1.0)
    histogram.clear()
    assert histogram.counts is counts
    assert (histogram.count, histogram.buckets(), histogram.quantiles([0.5])) == (0, (), (None,))


# ---------------------------------------------------------------- primitives


async def test_primitive_figures_from_real_events(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    async def broken() -> None:
        raise ConnectionError("down")

    async def slow() -> None:
        await trio.sleep(10)

    async def fine() -> str:
        return "fine"

    with rs.observe(registry.record_event):
        retry = rs.Retry(attempts=3, wait=rs.backoff.constant(0.5), name="fetch")
        with pytest.raises(ConnectionError):
            await retry.call(broken)
        breaker = rs.CircuitBreaker(failure_threshold=1, reset_timeout=30, name="payments")
        with pytest.raises(ConnectionError):
            await breaker.call(broken)
        with pytest.raises(rs.CircuitOpen):
            await breaker.call(fine)
        with pytest.raises(rs.TimeoutExceeded):
            await rs.Timeout(1.0).call(slow)
        spare: rs.Fallback[Any] = rs.Fallback(value="spare", name="payments")
        assert await spare.call(broken) == "spare"

    snapshot = registry.snapshot()
    assert set(snapshot.primitives) == {"fetch", "payments", UNNAMED}
    fetch = snapshot.primitives["fetch"]
    assert (fetch.kind, fetch.retries, fetch.gave_up, fetch.circuit_state) == ("retry", 2, 1, None)
    payments = snapshot.primitives["payments"]
    assert payments.kind == "circuit+fallback"
    assert (payments.circuit_state, payments.circuit_transitions) == ("open", 1)
    assert payments.fallbacks == 1
    unnamed = snapshot.primitives[UNNAMED]
    assert (unnamed.kind, unnamed.timeouts) == ("timeout", 1)
    assert unnamed.cache_hits == unnamed.ratelimit_rejections == unnamed.bulkhead_rejections == 0


async def test_circuit_state_follows_transitions_and_rejections(
    registry: MetricsRegistry,
) -> None:
    registry.record_event(rs.Event("circuit.rejected", "b", {"state": "half_open"}))
    assert registry.snapshot().primitives["b"].circuit_state == "half_open"
    registry.record_event(
        rs.Event("circuit.state_changed", "b", {"old": "half_open", "new": "closed"})
    )
    registry.record_event(rs.Event("hedge.attempt", "b", {"attempt": 2}))
    primitive = registry.snapshot().primitives["b"]
    assert (primitive.circuit_state, primitive.circuit_transitions) == ("closed", 1)
    assert primitive.kind == "circuit+hedge"


async def test_cache_limiter_and_bulkhead_figures(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    async def compute() -> int:
        return 42

    with rs.observe(registry.record_event):
        cache = rs.Cache(ttl=10, stale_ttl=10, name="users")
        await cache.get_or_compute("k", compute)  # miss
        await cache.get_or_compute("k", compute)  # hit
        await trio.sleep(12)
        await cache.get_or_compute("k", compute)  # stale hit
        limiter = rs.RateLimiter(rate=1, per=60, max_wait=0, name="api")
        await limiter.acquire()
        with pytest.raises(rs.RateLimited):
            await limiter.acquire()
        bulkhead = rs.Bulkhead(max_concurrent=1, name="db")
        async with bulkhead:  # the only slot taken
            with pytest.raises(rs.BulkheadFull):
                await bulkhead.call(compute)
    primitives = registry.snapshot().primitives
    users = primitives["users"]
    assert (users.cache_hits, users.cache_misses, users.cache_stale_hits) == (1, 1, 1)
    assert primitives["api"].ratelimit_rejections == 1
    assert primitives["db"].bulkhead_rejections == 1


# ---------------------------------------------------------------- registry lifecycle


async def test_reset_zeroes_everything_but_calls_in_flight(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    job = measured(registry)
    registry.record_event(rs.Event("retry.attempt", "r", {}))
    await job(1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(job, 5.0)
        await trio.sleep(1.0)
        registry.reset()
        reset = registry.snapshot()
        assert reset.primitives == {}
        task = reset.tasks["job"]
        assert (task.calls, task.in_flight, task.duration_sum, task.p50) == (0, 1, 0.0, None)
        assert task.rate_per_second == 0.0
    task = registry.snapshot().tasks["job"]
    assert (task.calls, task.in_flight, task.duration_sum) == (1, 0, 5.0)
    assert task.rate_per_second == 1 / 60


async def test_mw_metrics_without_a_registry_uses_the_default(
    clean_default: MetricsRegistry,
) -> None:
    assert _metrics.default_registry is clean_default

    @mw.apply(mw.Pipeline([metrics()]))
    async def counted() -> None:
        pass

    await counted()
    assert clean_default.snapshot().tasks[counted.target_id].calls == 1  # type: ignore[attr-defined]
    assert isinstance(metrics(), mw.Factory)


def test_bad_configuration_is_refused_naming_the_argument() -> None:
    with pytest.raises(
        ValueError, match=r"MetricsRegistry: relative_accuracy must be in \(0, 1\), got 1.5"
    ):
        MetricsRegistry(relative_accuracy=1.5)
    with pytest.raises(ValueError, match="relative_accuracy must be in"):
        MetricsRegistry(relative_accuracy=0)
    with pytest.raises(TypeError, match="MetricsRegistry: relative_accuracy must be a number"):
        MetricsRegistry(relative_accuracy="1%")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="relative_accuracy must be a number"):
        MetricsRegistry(relative_accuracy=True)
    with pytest.raises(ValueError, match="MetricsRegistry: max_buckets must be >= 1, got 0"):
        MetricsRegistry(max_buckets=0)
    with pytest.raises(TypeError, match="LogHistogram: max_buckets must be an int"):
        LogHistogram(max_buckets=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"mw\.metrics: registry must be a MetricsRegistry"):
        metrics("default")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MetricsRegistry(0.01)  # type: ignore[call-arg]  # keyword-only


async def test_errors_and_cancellations_inside_other_middleware_are_seen(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    @mw.apply(metrics(registry), mw.timeout(1.0), mw.retry(attempts=2, wait=rs.backoff.constant(0)))
    async def flaky() -> None:
        await trio.sleep(0.75)
        raise ConnectionError

    with pytest.raises(rs.TimeoutExceeded):
        await flaky()
    task = registry.snapshot().tasks[flaky.target_id]  # type: ignore[attr-defined]
    assert (task.calls, task.errors, task.cancelled) == (1, 1, 0)
    assert task.duration_sum == 1.0
