from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings

import kernel
import middleware as mw
from kernel import CheckResult, HealthReport, tags
from kernel._health import (
    MAX_ERROR_LENGTH,
    HealthTarget,
    Readiness,
    breakers_of,
    check_health,
    health_targets,
)
from resilience import CircuitBreaker


def sleeping(seconds: float) -> Callable[[Any], Awaitable[None]]:
    async def check(value: Any) -> None:
        await trio.sleep(seconds)

    return check


def failing(exc: Exception, after: float = 0.0) -> Callable[[Any], Awaitable[None]]:
    async def check(value: Any) -> None:
        await trio.sleep(after)
        raise exc

    return check


async def healthy(value: Any) -> None:
    pass


def open_breaker(name: str | None = None) -> CircuitBreaker:
    breaker = CircuitBreaker(name=name)
    breaker.isolate()
    return breaker


# --- running checks ---------------------------------------------------------------------


async def test_checks_run_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    targets = [HealthTarget("a", sleeping(1.0), None), HealthTarget("b", sleeping(1.0), None)]
    report = await check_health(targets, ready=True)
    assert trio.current_time() == 1.0
    assert report.status == "healthy"
    assert report.ready is True
    assert dict(report.checks) == {
        "a": CheckResult("healthy", 1000.0, None, False),
        "b": CheckResult("healthy", 1000.0, None, False),
    }
    assert report.circuits == {}


async def test_the_check_receives_the_value(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[Any] = []

    async def check(value: Any) -> None:
        seen.append(value)

    await check_health([HealthTarget("db", check, {"dsn": "x"})], ready=False)
    assert seen == [{"dsn": "x"}]


async def test_latency_is_exact_under_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    targets = [
        HealthTarget("fast", sleeping(0.25), None),
        HealthTarget("slow", failing(OSError("down"), after=0.5), None),
        HealthTarget("instant", healthy, None),
    ]
    report = await check_health(targets, ready=True)
    assert [r.latency_ms for r in report.checks.values()] == [250.0, 500.0, 0.0]
    assert trio.current_time() == 0.5


async def test_checks_are_listed_in_the_order_given(
    autojump_clock: trio.testing.MockClock,
) -> None:
    targets = [HealthTarget(id, sleeping(t), None) for id, t in [("z", 3), ("a", 1), ("m", 2)]]
    report = await check_health(targets, ready=True)
    assert list(report.checks) == ["z", "a", "m"]


async def test_a_check_past_its_timeout_is_unhealthy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    targets = [
        HealthTarget("stuck", sleeping(math.inf), None),
        HealthTarget("ok", sleeping(1.0), None),
    ]
    report = await check_health(targets, timeout=2.0, ready=True)
    assert trio.current_time() == 2.0
    assert report.checks["stuck"] == CheckResult("unhealthy", 2000.0, "timed out after 2 s", False)
    assert report.checks["ok"].status == "healthy"
    assert report.status == "degraded"


async def test_timeout_is_per_check_and_accepts_a_timedelta(
    autojump_clock: trio.testing.MockClock,
) -> None:
    targets = [HealthTarget(str(i), sleeping(math.inf), None) for i in range(3)]
    report = await check_health(targets, timeout=timedelta(seconds=1.5), ready=True)
    assert trio.current_time() == 1.5
    assert {r.error for r in report.checks.values()} == {"timed out after 1.5 s"}


async def test_default_timeout_is_five_seconds(autojump_clock: trio.testing.MockClock) -> None:
    report = await check_health([HealthTarget("x", sleeping(math.inf), None)], ready=True)
    assert report.checks["x"].error == "timed out after 5 s"
    assert trio.current_time() == 5.0


async def test_no_targets_is_healthy_and_a_checkpoint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    report = await check_health([], ready=False)
    assert report.status == "healthy"
    assert report.checks == {}
    assert report.ready is False
    with trio.CancelScope() as scope:
        scope.cancel()
        await check_health([], ready=True)
        pytest.fail("check_health must be a checkpoint")
    assert scope.cancelled_caught


# --- overall status ---------------------------------------------------------------------


async def test_a_failing_critical_check_makes_the_app_unhealthy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    targets = [
        HealthTarget("db", failing(ConnectionError("refused")), None, critical=True),
        HealthTarget("cache", healthy, None),
    ]
    report = await check_health(targets, ready=True)
    assert report.status == "unhealthy"
    assert report.checks["db"] == CheckResult(
        "unhealthy", 0.0, "ConnectionError: refused", critical=True
    )


async def test_a_failing_other_check_degrades_the_app(
    autojump_clock: trio.testing.MockClock,
) -> None:
    targets = [
        HealthTarget("db", healthy, None, critical=True),
        HealthTarget("cache", failing(TimeoutError("slow")), None),
    ]
    report = await check_health(targets, ready=True)
    assert report.status == "degraded"
    assert report.checks["db"].status == "healthy"


async def test_critical_failure_wins_over_degradation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    targets = [
        HealthTarget("cache", failing(ValueError("x")), None),
        HealthTarget("db", failing(ValueError("y")), None, critical=True),
    ]
    report = await check_health(targets, circuits=[open_breaker("api")], ready=True)
    assert report.status == "unhealthy"


async def test_circuits_not_closed_degrade_the_app(autojump_clock: trio.testing.MockClock) -> None:
    closed = CircuitBreaker(name="closed")
    assert (await check_health([], circuits=[closed], ready=True)).status == "healthy"

    report = await check_health([], circuits=[closed, open_breaker("isolated")], ready=True)
    assert report.status == "degraded"
    assert report.circuits == {"closed": "closed", "isolated": "open"}

    probing = CircuitBreaker(name="probing", failure_threshold=1, reset_timeout=1.0)
    with pytest.raises(OSError, match="boom"):
        await probing.call(failing(OSError("boom")), None)
    assert (await check_health([], circuits=[probing], ready=True)).circuits == {"probing": "open"}
    await trio.sleep(1.0)
    report = await check_health([], circuits=[probing], ready=True)
    assert report.circuits == {"probing": "half_open"}
    assert report.status == "degraded"


async def test_circuits_are_named_uniquely_and_listed_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = CircuitBreaker(name="api")
    others = [CircuitBreaker(name="api"), CircuitBreaker(), CircuitBreaker(), shared]
    report = await check_health([], circuits=[shared, *others], ready=True)
    assert list(report.circuits) == ["api", "api#2", "circuit", "circuit#2"]


@settings(max_examples=100, deadline=None)
@given(
    outcomes=st.lists(
        st.tuples(st.sampled_from(["ok", "error", "timeout"]), st.booleans()), max_size=6
    ),
    circuits=st.lists(st.sampled_from(["closed", "open"]), max_size=3),
    ready=st.booleans(),
)
def test_status_matches_the_rule(
    outcomes: list[tuple[str, bool]], circuits: list[str], ready: bool
) -> None:
    checks = {"ok": healthy, "error": failing(RuntimeError("no")), "timeout": sleeping(math.inf)}
    targets = [
        HealthTarget(f"r{i}", checks[outcome], None, critical=critical)
        for i, (outcome, critical) in enumerate(outcomes)
    ]

    async def main() -> HealthReport:
        breakers = [open_breaker() if state == "open" else CircuitBreaker() for state in circuits]
        return await check_health(targets, timeout=1.0, circuits=breakers, ready=ready)

    report = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    failed = [critical for outcome, critical in outcomes if outcome != "ok"]
    if any(failed):
        expected = "unhealthy"
    elif failed or "open" in circuits:
        expected = "degraded"
    else:
        expected = "healthy"
    assert report.status == expected
    assert report.ready is ready
    assert [r.status == "healthy" for r in report.checks.values()] == [
        outcome == "ok" for outcome, _ in outcomes
    ]


# --- errors -----------------------------------------------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (ValueError("bad\n  value\tthere"), "ValueError: bad value there"),
        (KeyError("k"), "KeyError: 'k'"),
        (RuntimeError(), "RuntimeError"),
        (Unprintable(), "Unprintable: <unprintable message>"),
    ],
)
async def test_errors_are_one_line_without_traceback(
    autojump_clock: trio.testing.MockClock, exc: Exception, error: str
) -> None:
    report = await check_health([HealthTarget("r", failing(exc), None)], ready=True)
    assert report.checks["r"].error == error


async def test_errors_raised_from_deep_inside_carry_no_traceback(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def check(value: Any) -> None:
        try:
            {"present": 1}["missing"]
        except KeyError as exc:
            raise ConnectionError("pool exhausted") from exc

    report = await check_health([HealthTarget("r", check, None)], ready=True)
    error = report.checks["r"].error
    assert error == "ConnectionError: pool exhausted"


async def test_long_errors_are_cut(autojump_clock: trio.testing.MockClock) -> None:
    report = await check_health([HealthTarget("r", failing(OSError("x" * 500)), None)], ready=True)
    error = report.checks["r"].error
    assert error is not None
    assert len(error) == MAX_ERROR_LENGTH
    assert error.startswith("OSError: xxx")
    assert error.endswith("x…")


# --- cancellation -----------------------------------------------------------------------


async def test_cancellation_propagates_and_makes_no_report(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished: list[str] = []

    async def check(value: Any) -> None:
        try:
            await trio.sleep(1.0)
        finally:
            finished.append(value)

    reports: list[HealthReport] = []
    with trio.move_on_after(0.5) as scope:
        reports.append(await check_health([HealthTarget("a", check, "a")], ready=True))
    assert scope.cancelled_caught
    assert reports == []
    assert finished == ["a"]
    assert trio.current_time() == 0.5


async def test_cancelled_at_entry_runs_no_check(autojump_clock: trio.testing.MockClock) -> None:
    ran: list[Any] = []

    async def check(value: Any) -> None:
        ran.append(value)

    with trio.CancelScope() as scope:
        scope.cancel()
        await check_health([HealthTarget("a", check, 1)], ready=True)
    assert scope.cancelled_caught
    assert ran == []


class Fatal(BaseException):
    pass


async def test_base_exceptions_from_a_check_propagate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def check(value: Any) -> None:
        raise Fatal

    targets = [HealthTarget("a", check, None), HealthTarget("b", sleeping(1.0), None)]
    with pytest.raises(BaseExceptionGroup) as info:
        await check_health(targets, ready=True)
    assert info.group_contains(Fatal)


# --- the report -------------------------------------------------------------------------


async def test_to_dict_is_json_with_the_documented_keys(
    autojump_clock: trio.testing.MockClock,
) -> None:
    targets = [
        HealthTarget("db", sleeping(0.5), object(), critical=True),
        HealthTarget("cache", failing(OSError("gone")), object()),
    ]
    report = await check_health(targets, circuits=[open_breaker("api")], ready=False)
    data = json.loads(json.dumps(report.to_dict()))
    assert data == {
        "status": "degraded",
        "ready": False,
        "timestamp": report.timestamp,
        "checks": {
            "db": {"status": "healthy", "latency_ms": 500.0, "error": None, "critical": True},
            "cache": {
                "status": "unhealthy",
                "latency_ms": 0.0,
                "error": "OSError: gone",
                "critical": False,
            },
        },
        "circuits": {"api": "open"},
    }


async def test_timestamp_is_iso_8601_utc(autojump_clock: trio.testing.MockClock) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    report = await check_health([], ready=True)
    after = datetime.now(UTC)
    assert report.timestamp.endswith("Z")
    stamp = datetime.fromisoformat(report.timestamp)
    assert stamp.utcoffset() == timedelta(0)
    assert before <= stamp <= after


async def test_the_report_is_immutable(autojump_clock: trio.testing.MockClock) -> None:
    report = await check_health([HealthTarget("a", healthy, None)], ready=True)
    with pytest.raises(TypeError):
        report.checks["b"] = report.checks["a"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        report.status = "unhealthy"  # type: ignore[misc]


# --- configuration errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "exc", "message"),
    [
        (0, ValueError, "check_health: timeout must be > 0, got 0"),
        (-1.0, ValueError, "check_health: timeout must be > 0, got -1.0"),
        (math.nan, ValueError, "check_health: timeout must not be NaN"),
        (timedelta(0), ValueError, "check_health: timeout must be > 0, got 0.0"),
        ("5", TypeError, "check_health: timeout must be a number of seconds or a timedelta"),
        (True, TypeError, "check_health: timeout must be a number of seconds or a timedelta"),
    ],
)
async def test_bad_timeout(value: Any, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc) as info:
        await check_health([], timeout=value, ready=True)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"targets": "db"}, TypeError, "check_health: targets must be a sequence of HealthTarget"),
        ({"targets": 3}, TypeError, "check_health: targets must be a sequence of HealthTarget"),
        ({"targets": [healthy]}, TypeError, "check_health: targets must hold HealthTarget"),
        (
            {"targets": [HealthTarget("a", healthy, 1), HealthTarget("a", healthy, 2)]},
            ValueError,
            "check_health: targets has the id 'a' twice",
        ),
        ({"ready": 1}, TypeError, "check_health: ready must be a bool, got 1"),
        ({"circuits": 3}, TypeError, "check_health: circuits must be an iterable"),
        ({"circuits": [object()]}, TypeError, "check_health: circuits must hold resilience."),
    ],
)
async def test_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], message: str) -> None:
    arguments: dict[str, Any] = {"targets": [], "ready": True, **kwargs}
    targets = arguments.pop("targets")
    with pytest.raises(exc) as info:
        await check_health(targets, **arguments)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("", healthy, None), {}, "HealthTarget: id must be a non-empty str, got ''"),
        ((1, healthy, None), {}, "HealthTarget: id must be a non-empty str, got 1"),
        (("a", "ping", None), {}, "HealthTarget: check must be an async callable"),
        (("a", healthy, None), {"critical": "yes"}, "HealthTarget: critical must be a bool"),
    ],
)
def test_bad_health_target(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError) as info:
        HealthTarget(*args, **kwargs)
    assert str(info.value).startswith(message)


# --- from a graph -----------------------------------------------------------------------


def make_app(pinged: list[str]) -> tuple[kernel.App, dict[str, kernel.Resource]]:
    async def ping(value: str) -> None:
        pinged.append(value)
        if value == "cache-value":
            raise ConnectionError("cache down")

    @kernel.resource("db", health=ping, tags=[tags.critical, tags.external_io])
    async def db() -> Any:
        yield "db-value"

    @kernel.resource("cache", health=ping, deps={"db": db})
    async def cache(db: str) -> str:
        return "cache-value"

    @kernel.resource("plain", tags=[tags.critical])
    async def plain() -> str:
        return "plain-value"

    inner = kernel.App("inner", register=[cache])
    resources = {"db": db, "cache": cache, "plain": plain}
    return kernel.App("shop", register=[db, plain, inner]), resources


async def test_targets_come_from_started_resources_with_a_health_check(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pinged: list[str] = []
    app, resources = make_app(pinged)
    async with kernel.run(app) as rt:
        values = {id: rt.resource(res) for id, res in resources.items()}
        values["inner"] = rt.resource(app.register[2])  # type: ignore[arg-type]
        targets = health_targets(rt.graph, values)
        assert [(t.id, t.value, t.critical) for t in targets] == [
            ("db", "db-value", True),
            ("cache", "cache-value", False),
        ]
        report = await check_health(targets, ready=True)
    assert sorted(pinged) == ["cache-value", "db-value"]
    assert report.status == "degraded"
    assert report.checks["cache"].error == "ConnectionError: cache down"


def test_resources_not_started_are_skipped() -> None:
    app, _ = make_app([])
    graph = kernel.dry_run(app)
    assert health_targets(graph, {}) == []
    assert [t.id for t in health_targets(graph, {"cache": None, "plain": 1})] == ["cache"]


def test_critical_is_matched_by_tag_id() -> None:
    lookalike = kernel.tag("kernel.critical")

    @kernel.resource("db", health=healthy, tags=[lookalike])
    async def db() -> int:
        return 1

    graph = kernel.dry_run(kernel.App("app", register=[db]))
    assert [t.critical for t in health_targets(graph, {"db": 1})] == [True]


def test_builtin_tags() -> None:
    assert tags.critical.id == "kernel.critical"
    assert tags.external_io.id == "kernel.external_io"
    assert tags.critical.config is None


# --- breakers of task runners -----------------------------------------------------------


def test_breakers_of_collects_each_breaker_once() -> None:
    shared = CircuitBreaker(name="shared")

    async def body() -> None:
        pass

    own = mw.apply(mw.circuit_breaker(failure_threshold=2))(body)
    first = mw.apply(mw.circuit_breaker(shared))(body)
    second = mw.apply(mw.timeout(1.0), mw.circuit_breaker(shared))(body)
    plain = mw.apply(mw.timeout(1.0))(body)

    async def impostor() -> None:
        pass

    impostor.breaker = "not a breaker"  # type: ignore[attr-defined]
    found = breakers_of([own, first, plain, second, impostor, body])
    assert found == [own.breaker, shared]  # type: ignore[attr-defined]
    assert found[1] is shared


# --- readiness --------------------------------------------------------------------------


def test_readiness_goes_ready_then_stopping_for_good() -> None:
    readiness = Readiness()
    assert (readiness.ready, readiness.stopping) == (False, False)
    readiness.mark_ready()
    assert (readiness.ready, readiness.stopping) == (True, False)
    readiness.mark_stopping()
    assert (readiness.ready, readiness.stopping) == (False, True)
    readiness.mark_ready()
    assert readiness.ready is False


def test_stopping_before_ready_is_never_ready() -> None:
    readiness = Readiness()
    readiness.mark_stopping()
    readiness.mark_ready()
    assert readiness.ready is False


async def test_runtime_health_reports_checks_circuits_and_readiness(autojump_clock) -> None:
    import middleware as mw

    async def ok(value: object) -> None:
        await trio.sleep(0.25)

    async def down(value: object) -> None:
        raise ConnectionError("refused")

    @kernel.resource("db", health=ok, tags=[kernel.tags.critical])
    async def db() -> str:
        return "db"

    @kernel.resource("mailer", health=down)
    async def mailer() -> str:
        return "smtp"

    @attrs.frozen
    class Ping:
        n: int

    @kernel.task(
        "ping", input=Ping, middleware=[mw.circuit_breaker(failure_threshold=1, name="pinger")]
    )
    async def ping(p: Ping) -> int:
        raise ConnectionError

    async with kernel.run(kernel.App("app", register=[db, mailer, ping])) as rt:
        assert rt.ready
        with pytest.raises(ConnectionError):
            await rt.run_task(ping, {"n": 1})
        report = await rt.health(check_timeout=1)
        assert report.status == "degraded"
        assert report.ready
        assert report.checks["db"].status == "healthy"
        assert report.checks["db"].latency_ms == 250.0
        assert report.checks["db"].critical
        assert report.checks["mailer"].error == "ConnectionError: refused"
        # The breaker of a task with input= is still found behind the validation wrapper.
        assert report.circuits == {"pinger": "open"}
        rt.shutdown()
        await trio.lowlevel.checkpoint()
        assert not rt.ready


async def test_check_errors_are_redacted_before_they_are_reported() -> None:
    async def down(value: object) -> None:
        raise ConnectionError("could not connect to postgres://app:s3cr3t@db:5432/orders")

    report = await check_health([HealthTarget("db", down, None)], ready=True)
    assert report.checks["db"].error == (
        "ConnectionError: could not connect to postgres://app:[REDACTED]@db:5432/orders"
    )
