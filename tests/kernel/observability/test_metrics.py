"""Prometheus exposition of a `MetricsRegistry`, and the feed of resilience events into it."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import middleware as mw
import resilience as rs
from kernel.metrics import PrometheusCollector, prometheus_text
from kernel.observability._metrics import DEFAULT_BUCKETS, observe_primitives
from middleware.observability import UNNAMED, MetricsRegistry, metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """The type of each family, and every sample keyed by (name, sorted labels)."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return types, samples


def of(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


def named(samples: Samples, name: str) -> Samples:
    return {key: value for key, value in samples.items() if key[0] == name}


async def test_task_families(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    async def job(seconds: float, fail: bool = False) -> None:
        await trio.sleep(seconds)
        if fail:
            raise ValueError("failed")

    run = mw.Pipeline([metrics(registry)]).wrap(job, target_id="jobs.sync")
    await run(0.003)
    await run(0.2)
    with pytest.raises(ValueError, match="failed"):
        await run(0.7, fail=True)
    with trio.move_on_after(20.0):
        await run(100.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, 1.0)
        await trio.sleep(0.5)
        types, samples = parse(prometheus_text(registry))

    assert types["trio_runner_task_calls"] == "counter"
    assert types["trio_runner_task_duration_seconds"] == "histogram"
    assert types["trio_runner_task_in_flight"] == "gauge"
    assert types["trio_runner_task_duration_quantile_seconds"] == "gauge"
    task = {"task": "jobs.sync"}
    calls = "trio_runner_task_calls_total"
    assert of(samples, calls, outcome="success", **task) == 2
    assert of(samples, calls, outcome="error", **task) == 1
    assert of(samples, calls, outcome="cancelled", **task) == 1
    assert of(samples, "trio_runner_task_in_flight", **task) == 1
    buckets = {
        labels[0][1]: value
        for (_, labels), value in named(samples, "trio_runner_task_duration_seconds_bucket").items()
    }
    assert len(buckets) == len(DEFAULT_BUCKETS) + 1
    assert buckets["0.0025"] == 0
    assert buckets["0.005"] == 1
    assert buckets["0.25"] == 2
    assert buckets["1.0"] == 3
    assert buckets["10.0"] == 3
    assert buckets["30.0"] == buckets["+Inf"] == 4
    assert of(samples, "trio_runner_task_duration_seconds_count", **task) == 4
    assert of(samples, "trio_runner_task_duration_seconds_sum", **task) == pytest.approx(20.903)
    quantile = "trio_runner_task_duration_quantile_seconds"
    assert of(samples, quantile, quantile="0.5", **task) == pytest.approx(0.2, rel=0.01)
    assert of(samples, quantile, quantile="0.95", **task) == pytest.approx(0.7, rel=0.01)
    assert of(samples, quantile, quantile="0.99", **task) == pytest.approx(0.7, rel=0.01)


async def test_a_task_without_calls_has_zero_counts_and_no_quantiles(
    registry: MetricsRegistry,
) -> None:
    registry.task("idle")
    _, samples = parse(prometheus_text(registry, buckets=[0.1, 1]))
    assert of(samples, "trio_runner_task_calls_total", task="idle", outcome="success") == 0
    assert of(samples, "trio_runner_task_duration_seconds_bucket", task="idle", le="1.0") == 0
    assert of(samples, "trio_runner_task_duration_seconds_bucket", task="idle", le="+Inf") == 0
    assert named(samples, "trio_runner_task_duration_quantile_seconds") == {}


async def test_primitive_families_from_real_primitives(
    registry: MetricsRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    async def broken() -> None:
        raise ConnectionError("down")

    async def compute() -> int:
        return 7

    async def slow() -> None:
        await trio.sleep(5)

    with observe_primitives(registry):
        retry = rs.Retry(attempts=4, wait=rs.backoff.constant(1), name="fetch")
        with pytest.raises(ConnectionError):
            await retry.call(broken)
        breaker = rs.CircuitBreaker(failure_threshold=2, reset_timeout=10, name="payments")
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await breaker.call(broken)
        with pytest.raises(rs.CircuitOpen):
            await breaker.call(compute)
        cache = rs.Cache(ttl=5, stale_ttl=60, name="users")
        assert await cache.get_or_compute("a", compute) == 7  # miss
        assert await cache.get_or_compute("a", compute) == 7  # hit
        assert await cache.get_or_compute("b", compute) == 7  # miss
        await trio.sleep(6)
        assert await cache.get_or_compute("a", compute) == 7  # stale hit (refreshed inline)
        limiter = rs.RateLimiter(rate=2, per=1, max_wait=0, name="api")
        await limiter.acquire()
        await limiter.acquire()
        with pytest.raises(rs.RateLimited):
            await limiter.acquire()
        assert not limiter.try_acquire()
        bulkhead = rs.Bulkhead(max_concurrent=1, name="db")
        async with bulkhead:
            with pytest.raises(rs.BulkheadFull):
                await bulkhead.call(compute)
        with pytest.raises(rs.TimeoutExceeded):
            await rs.Timeout(1, name="slow").call(slow)
        spare: rs.Fallback[Any] = rs.Fallback(value=0, name="fetch")
        assert await spare.call(broken) == 0
        await trio.sleep(10)  # the breaker may now let a probe through
        assert await breaker.call(compute) == 7  # half open, then closed again

    primitives = registry.snapshot().primitives
    assert primitives["payments"].circuit_transitions == 3  # open, half open, closed
    assert primitives["payments"].circuit_state == "closed"
    assert primitives["fetch"].kind == "fallback+retry"

    _, samples = parse(prometheus_text(registry))
    assert of(samples, "trio_runner_retries_total", name="fetch") == 3
    assert of(samples, "trio_runner_retry_gave_up_total", name="fetch") == 1
    assert of(samples, "trio_runner_fallbacks_total", name="fetch") == 1
    assert of(samples, "trio_runner_circuit_state", name="payments") == 0
    assert of(samples, "trio_runner_circuit_transitions_total", name="payments") == 3
    cache_requests = "trio_runner_cache_requests_total"
    assert of(samples, cache_requests, name="users", result="hit") == 1
    assert of(samples, cache_requests, name="users", result="miss") == 2
    assert of(samples, cache_requests, name="users", result="stale") == 1
    assert of(samples, "trio_runner_ratelimit_rejections_total", name="api") == 2
    assert of(samples, "trio_runner_bulkhead_rejections_total", name="db") == 1
    assert of(samples, "trio_runner_timeouts_total", name="slow") == 1
    # A primitive appears only in the families it reported to.
    assert named(samples, "trio_runner_retries_total").keys() == {
        ("trio_runner_retries_total", (("name", "fetch"),))
    }
    assert named(samples, "trio_runner_cache_requests_total").keys() == {
        (cache_requests, (("name", "users"), ("result", result)))
        for result in ("hit", "miss", "stale")
    }


async def test_circuit_state_gauge_values(registry: MetricsRegistry) -> None:
    for name, state in (("a", "closed"), ("b", "open"), ("c", "half_open")):
        registry.record_event(rs.Event("circuit.rejected", name, {"state": state}))
    registry.record_event(rs.Event("bulkhead.rejected", None, {"reason": "full"}))
    _, samples = parse(prometheus_text(registry))
    states = {
        labels[0][1]: value
        for (_, labels), value in named(samples, "trio_runner_circuit_state").items()
    }
    assert states == {"a": 0, "b": 1, "c": 2}
    assert named(samples, "trio_runner_circuit_transitions_total") == {}
    assert of(samples, "trio_runner_bulkhead_rejections_total", name=UNNAMED) == 1


async def test_observe_primitives_stops_when_unsubscribed(registry: MetricsRegistry) -> None:
    subscription = observe_primitives(registry)
    fallback: rs.Fallback[int] = rs.Fallback(value=1, name="f")

    async def broken() -> int:
        raise ValueError

    await fallback.call(broken)
    subscription.unsubscribe()
    await fallback.call(broken)
    assert registry.snapshot().primitives["f"].fallbacks == 1


async def test_defaults_to_the_process_wide_registry(clean_default: MetricsRegistry) -> None:
    with observe_primitives():
        clean_default.task("kernel.tests.default")
        fallback: rs.Fallback[int] = rs.Fallback(value=1, name="default-fallback")
        await fallback.call(_raises)
    _, samples = parse(prometheus_text())
    assert of(samples, "trio_runner_fallbacks_total", name="default-fallback") == 1
    assert of(samples, "trio_runner_task_in_flight", task="kernel.tests.default") == 0


async def _raises() -> int:
    raise ValueError


def test_the_collector_plugs_into_a_prometheus_registry(registry: MetricsRegistry) -> None:
    registry.record_event(rs.Event("timeout.exceeded", "t", {"seconds": 1.0}))
    target = CollectorRegistry(auto_describe=True)  # collects once at registration
    target.register(PrometheusCollector(registry))
    _, samples = parse(generate_latest(target).decode())
    assert of(samples, "trio_runner_timeouts_total", name="t") == 1


def test_missing_prometheus_client_names_the_extra(
    registry: MetricsRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"prometheus-client.*'prometheus' extra") as caught:
        prometheus_text(registry)
    assert "trio-runner[prometheus]" in str(caught.value)
    with pytest.raises(ImportError, match="'prometheus' extra"):
        PrometheusCollector(registry)
    # Without the client, everything else still works.
    with observe_primitives(registry):
        pass
    assert registry.snapshot().tasks == {}


@pytest.mark.parametrize(
    ("buckets", "error", "message"),
    [
        ([], TypeError, "buckets must be a non-empty list of numbers"),
        (0.5, TypeError, "buckets must be a non-empty list of numbers"),
        (["0.5"], TypeError, "buckets must be a non-empty list of numbers"),
        ([True], TypeError, "buckets must be a non-empty list of numbers"),
        ([1.0, 0.5], ValueError, "strictly increasing"),
        ([0.5, 0.5], ValueError, "strictly increasing"),
        ([0, 1], ValueError, "positive"),
        ([1, float("inf")], ValueError, "finite"),
    ],
)
def test_bad_buckets_are_refused(
    registry: MetricsRegistry, buckets: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"PrometheusCollector: .*{message}"):
        prometheus_text(registry, buckets=buckets)


def test_a_bad_registry_is_refused() -> None:
    with pytest.raises(TypeError, match="PrometheusCollector: registry must be a MetricsRegistry"):
        prometheus_text("default")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="observe_primitives: registry must be a MetricsRegistry"):
        observe_primitives(object())  # type: ignore[arg-type]
