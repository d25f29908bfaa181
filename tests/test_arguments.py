"""One rule for bad options, in every layer: a value out of range is a ``ValueError``, a
value of the wrong type a ``TypeError`` (not a ``kernel.DefinitionError``, which is kept for
malformed declarations), and both name the argument. Every duration the contract takes is
"a number of seconds or a timedelta"."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.lowlevel

import kernel
import middleware as mw
import resilience as rs
from kernel import durable, exposure
from middleware import observability as mwo
from resilience import redis as shared


async def _noop() -> None:
    return None


def _store(**options: Any) -> shared.Store:
    return shared.Store.from_url("redis://127.0.0.1:1", **options)


_memory = durable.MemoryStore
_app = kernel.App("app", register=[])

#: (label, constructor taking the option as keywords, option, bad value, expected error)
BAD: list[tuple[str, Callable[..., object], str, object, type[Exception]]] = [
    # resilience
    ("Timeout", lambda **o: rs.Timeout(**o), "seconds", -1, ValueError),
    ("Timeout", lambda **o: rs.Timeout(**o), "seconds", "1", TypeError),
    ("Retry", rs.Retry, "attempts", 0, ValueError),
    ("Retry", rs.Retry, "attempts", 1.5, TypeError),
    ("Retry", rs.Retry, "timeout", -1, ValueError),
    ("Retry", rs.Retry, "timeout", "1", TypeError),
    ("CircuitBreaker", rs.CircuitBreaker, "failure_threshold", 0, ValueError),
    ("CircuitBreaker", rs.CircuitBreaker, "failure_threshold", "5", TypeError),
    ("CircuitBreaker", rs.CircuitBreaker, "reset_timeout", -1, ValueError),
    ("CircuitBreaker", rs.CircuitBreaker, "half_open_max_calls", 0, ValueError),
    ("CircuitBreaker", rs.CircuitBreaker, "failure_ratio", 1.5, ValueError),
    ("CircuitBreaker", rs.CircuitBreaker, "slow_call_duration", 0, ValueError),
    ("CircuitBreaker", rs.CircuitBreaker, "name", 3, TypeError),
    ("Window.count", lambda **o: rs.Window.count(**o), "n", 0, ValueError),
    ("Window.time", lambda **o: rs.Window.time(**o), "seconds", "1", TypeError),
    ("RateLimiter", rs.RateLimiter, "rate", 0, ValueError),
    ("RateLimiter", lambda **o: rs.RateLimiter(rate=1, **o), "per", 0, ValueError),
    ("RateLimiter", lambda **o: rs.RateLimiter(rate=1, **o), "max_wait", -1, ValueError),
    ("RateLimiter", lambda **o: rs.RateLimiter(rate=1, **o), "max_keys", 0, ValueError),
    ("Bulkhead", rs.Bulkhead, "max_concurrent", 0, ValueError),
    ("Bulkhead", rs.Bulkhead, "max_concurrent", 2.0, TypeError),
    ("Bulkhead", lambda **o: rs.Bulkhead(max_concurrent=1, **o), "queue_timeout", -1, ValueError),
    ("Cache", rs.Cache, "ttl", 0, ValueError),
    ("Cache", rs.Cache, "ttl", "60", TypeError),
    ("Cache", lambda **o: rs.Cache(ttl=1, **o), "max_size", 0, ValueError),
    ("Cache", lambda **o: rs.Cache(ttl=1, **o), "stale_ttl", -1, ValueError),
    ("Cache", lambda **o: rs.Cache(ttl=1, **o), "single_flight", 1, TypeError),
    ("Hedge", rs.Hedge, "delay", -1, ValueError),
    ("Hedge", lambda **o: rs.Hedge(delay=1, **o), "max_attempts", 0, ValueError),
    ("backoff.constant", lambda **o: rs.backoff.constant(**o), "seconds", -1, ValueError),
    ("backoff.exponential", rs.backoff.exponential, "initial", -1, ValueError),
    ("Store", _store, "op_timeout", 0, ValueError),
    ("Store", _store, "op_timeout", "1", TypeError),
    # middleware
    ("mw.timeout", lambda **o: mw.timeout(**o), "seconds", -1, ValueError),
    ("mw.retry", mw.retry, "attempts", 0, ValueError),
    ("mw.circuit_breaker", mw.circuit_breaker, "reset_timeout", -1, ValueError),
    ("mw.rate_limit", mw.rate_limit, "rate", -1, ValueError),
    ("mw.bulkhead", mw.bulkhead, "max_concurrent", 0, ValueError),
    ("mw.cache", mw.cache, "ttl", -1, ValueError),
    ("mw.hedge", mw.hedge, "delay", "1", TypeError),
    ("MetricsRegistry", mwo.MetricsRegistry, "max_buckets", 0, ValueError),
    ("MetricsRegistry", mwo.MetricsRegistry, "relative_accuracy", 2.0, ValueError),
    # kernel
    ("Service", lambda **o: kernel.Service(app=_app, **o), "drain_timeout", -1, ValueError),
    ("Service", lambda **o: kernel.Service(app=_app, **o), "drain_timeout", "1", TypeError),
    ("Service", lambda **o: kernel.Service(app=_app, **o), "shutdown_signals", 1, TypeError),
    ("Service", kernel.Service, "app", "app", TypeError),
    ("durable.engine", lambda **o: durable.engine("d", store=_memory(), **o), "max_attempts", 0,
     ValueError),
    ("durable.engine", lambda **o: durable.engine("d", store=_memory(), **o), "max_concurrent", 1.0,
     TypeError),
    ("durable.engine", lambda **o: durable.engine("d", store=_memory(), **o), "claim_ttl", 0,
     ValueError),
    ("exposure.remote", lambda **o: exposure.remote("r", base_url="http://x", **o), "timeout", 0,
     ValueError),
    ("exposure.http", lambda **o: exposure.http("h", allow_anonymous=True, **o), "body_limit", 0,
     ValueError),
    ("exposure.http", lambda **o: exposure.http("h", allow_anonymous=True, **o),
     "read_timeout", "1", TypeError),
    ("SentryConfig", lambda **o: kernel.SentryConfig(dsn="https://k@o.ingest.sentry.io/1", **o),
     "flush_timeout", -1, ValueError),
    ("SentryConfig", lambda **o: kernel.SentryConfig(dsn="https://k@o.ingest.sentry.io/1", **o),
     "max_breadcrumbs", "1", TypeError),
    ("LogConfig", kernel.LogConfig, "format", "xml", ValueError),
    ("LogConfig", kernel.LogConfig, "level", "LOUD", ValueError),
    ("Redaction", kernel.Redaction, "cards", 1, TypeError),
    ("TracingConfig", kernel.TracingConfig, "service_name", 3, TypeError),
    ("BearerAuth", exposure.BearerAuth, "tokens", 42, TypeError),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "make", "option", "value", "error"),
    BAD,
    ids=[f"{label}-{option}-{value!r}" for label, _, option, value, _ in BAD],
)
def test_a_bad_option_is_a_value_or_type_error_naming_it(
    label: str,
    make: Callable[..., object],
    option: str,
    value: object,
    error: type[Exception],
) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        make(**{option: value})
    assert type(info.value) is error, info.value  # exactly: not a DefinitionError
    assert option in str(info.value)


#: (label, constructor, duration option): each takes a timedelta as its seconds.
DURATIONS: list[tuple[str, Callable[..., Any], str, str]] = [
    ("Timeout", lambda **o: rs.Timeout(**o), "seconds", "seconds"),
    ("Retry", rs.Retry, "timeout", "timeout"),
    ("CircuitBreaker", rs.CircuitBreaker, "reset_timeout", "reset_timeout"),
    ("RateLimiter", lambda **o: rs.RateLimiter(rate=1, **o), "per", "per"),
    ("Bulkhead", lambda **o: rs.Bulkhead(max_concurrent=1, **o), "queue_timeout", "queue_timeout"),
    ("Cache", rs.Cache, "ttl", "ttl"),
    ("Hedge", rs.Hedge, "delay", "delay"),
    ("Window.time", lambda **o: rs.Window.time(**o), "seconds", "size"),
    ("Service", lambda **o: kernel.Service(app=_app, **o), "drain_timeout", "drain_timeout"),
    ("Store", _store, "op_timeout", "op_timeout"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "make", "option", "attribute"), DURATIONS, ids=[d[0] for d in DURATIONS]
)
def test_a_duration_may_be_a_timedelta(
    label: str, make: Callable[..., Any], option: str, attribute: str
) -> None:
    made = make(**{option: timedelta(milliseconds=1500)})
    assert getattr(made, attribute) == 1.5


async def test_kernel_run_and_health_take_timedeltas() -> None:
    async def answers(value: int) -> None:
        await trio.lowlevel.checkpoint()

    @kernel.resource("up", health=answers)
    async def up() -> int:
        return 1

    app = kernel.App("app", register=[up])
    async with kernel.run(app, drain_timeout=timedelta(seconds=1)) as rt:
        report = await rt.health(check_timeout=timedelta(seconds=2))
        assert report.status == "healthy"
    with pytest.raises(ValueError, match=r"kernel\.run: drain_timeout must be >= 0"):
        async with kernel.run(app, drain_timeout=timedelta(seconds=-1)):
            pass  # pragma: no cover
    with pytest.raises(TypeError, match=r"kernel\.run: drain_timeout must be a number"):
        async with kernel.run(app, drain_timeout="1"):  # type: ignore[arg-type]
            pass  # pragma: no cover


async def test_a_supervised_task_takes_a_timedelta() -> None:
    @kernel.resource("worker")
    async def worker(scope: kernel.Scope) -> None:
        scope.supervise(_noop, restart=rs.Retry(attempts=2), reset_after=timedelta(seconds=5))
        with pytest.raises(ValueError, match="reset_after must be > 0"):
            scope.supervise(_noop, restart=rs.Retry(attempts=2), reset_after=timedelta(0))

    async with kernel.run(kernel.App("app", register=[worker])):
        pass
