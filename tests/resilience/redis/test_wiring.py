"""The shared primitives in the other layers: ``mw`` adapters, ``kernel.redis.resource``
(lifetime and health), metrics and traces of store outages."""

from __future__ import annotations

import attrs
import pytest
import trio

import kernel
import middleware as mw
import resilience as rs
from middleware.observability import MetricsRegistry
from resilience import redis as shared
from tests.resilience.redis.conftest import new_prefix
from tests.resilience.redis.helpers import eventually
from tests.resilience.redis.server import RedisServer


@attrs.frozen
class Quote:
    symbol: str
    price: float


async def test_adapters_take_the_shared_primitives(store: shared.Store) -> None:
    limiter = shared.RateLimiter(store, name="api", rate=2, per=60.0, max_wait=0)
    breaker = shared.CircuitBreaker(store, name="api", sync_interval=0.05)
    bulkhead = shared.Bulkhead(store, name="api", max_concurrent=2)
    cache = shared.Cache(store, name="quotes", ttl=60)
    calls: list[str] = []

    @mw.apply(
        mw.circuit_breaker(breaker),
        mw.bulkhead(bulkhead),
        mw.cache(cache, returns=Quote),
        mw.rate_limit(limiter, key=lambda call: call.args[0]),
    )
    async def quote(symbol: str) -> Quote:
        calls.append(symbol)
        return Quote(symbol, 1.5)

    assert await quote("ACME") == Quote("ACME", 1.5)
    assert await quote("ACME") == Quote("ACME", 1.5)  # from the cache: no permit taken
    assert await quote("INIT") == Quote("INIT", 1.5)
    assert calls == ["ACME", "INIT"]
    assert (quote.breaker, quote.bulkhead, quote.cache, quote.limiter) == (
        breaker,
        bulkhead,
        cache,
        limiter,
    )


async def test_the_shared_cache_key_is_json_and_refuses_what_is_not(store: shared.Store) -> None:
    cache = shared.Cache(store, name="keys", ttl=60)

    @mw.apply(mw.cache(cache))
    async def echo(value: object) -> object:
        return value

    assert await echo({"a": [1, 2]}) == {"a": [1, 2]}
    with pytest.raises(TypeError, match=r"argument 0 \(object\) .* is not JSON data"):
        await echo(object())
    with pytest.raises(TypeError, match=r"returns= is for a resilience\.redis\.Cache"):
        mw.cache(returns=int, ttl=1)
    with pytest.raises(TypeError, match=r"or a resilience\.redis\.CircuitBreaker"):
        mw.circuit_breaker(cache)  # type: ignore[arg-type]


async def test_the_resource_owns_the_store_and_reports_its_health(redis: RedisServer) -> None:
    store = shared.Store.from_url(redis.url, prefix=new_prefix())
    resource = kernel.redis.resource("redis", store)
    seen: list[bool] = []

    @kernel.resource("user", deps={"store": resource})
    async def user(*, store: shared.Store):  # type: ignore[no-untyped-def]
        seen.append(store.is_open)
        yield store
        seen.append(store.is_open)  # disposed before the store closes

    async with kernel.run(kernel.App("app", register=[resource, user])) as rt:
        assert rt.resource(resource) is store
        report = await rt.health()
        assert report.status == "healthy"
        assert report.checks["redis"].status == "healthy"
    assert seen == [True, True]
    assert not store.is_open
    with pytest.raises(kernel.DefinitionError, match=r"store must be a resilience\.redis\.Store"):
        kernel.redis.resource("redis", "redis://localhost")  # type: ignore[arg-type]


async def test_the_health_report_shows_a_fleet_circuit(redis: RedisServer) -> None:
    store = shared.Store.from_url(redis.url, prefix=new_prefix())
    resource = kernel.redis.resource("redis", store)
    breaker = shared.CircuitBreaker(store, name="payments.charge", sync_interval=0.05)

    @kernel.task("payments.charge", middleware=[mw.circuit_breaker(breaker)])
    async def charge() -> str:
        return "charged"

    async with kernel.run(kernel.App("app", register=[resource, charge])) as rt:
        assert await rt.run_task(charge) == "charged"
        report = await rt.health()
        assert (report.status, report.circuits["payments.charge"]) == ("healthy", "closed")
        await breaker.isolate()
        report = await rt.health()
        assert (report.status, report.circuits["payments.charge"]) == ("degraded", "open")


@pytest.mark.slow
async def test_health_is_degraded_while_redis_is_gone(own_redis: RedisServer) -> None:
    store = shared.Store.from_url(own_redis.url, on_unavailable="local", op_timeout=0.3)
    resource = kernel.redis.resource("redis", store)
    async with kernel.run(kernel.App("app", register=[resource])) as rt:
        own_redis.kill()
        report = await rt.health()
        assert report.status == "degraded"
        assert "StoreUnavailable" in (report.checks["redis"].error or "")
        own_redis.start()
        await eventually(lambda: store.available, within=1.5)
        assert (await rt.health()).status == "healthy"


@pytest.mark.slow
async def test_store_outages_are_counted_in_metrics_and_seen_in_traces(
    own_redis: RedisServer,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from kernel.observability._metrics import prometheus_text
    from middleware.observability._trace import trace_events

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    registry = MetricsRegistry()
    async with shared.Store.from_url(
        own_redis.url, prefix=new_prefix(), name="fleet", op_timeout=0.3
    ) as store:
        with rs.observe(registry.record_event), rs.observe(trace_events()):

            @mw.apply(mw.trace(tracer))
            async def ping() -> None:
                own_redis.kill()
                with pytest.raises(rs.StoreUnavailable):
                    await store.ping()

            await ping()
            own_redis.start()
            await eventually(lambda: store.available, within=1.5)
    snapshot = registry.snapshot().primitives["fleet"]
    assert (snapshot.kind, snapshot.store_unavailable, snapshot.store_available) == (
        "store",
        1,
        True,
    )
    text = prometheus_text(registry)
    assert 'trio_runner_store_unavailable_total{name="fleet"} 1.0' in text
    assert 'trio_runner_store_available{name="fleet"} 1.0' in text
    (span,) = exporter.get_finished_spans()
    assert [event.name for event in span.events] == ["store.unavailable"]
    assert span.events[0].attributes["mode"] == "raise"
    await trio.lowlevel.checkpoint()
