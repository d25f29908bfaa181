from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

import kernel
import resilience as rs
from kernel import run
from resilience import Retry
from resilience.backoff import constant, exponential


class Boom(Exception):
    pass


class Script:
    """A supervised body: run ``k`` follows ``steps[k]`` = (seconds, exception or None to
    return); past the last step, a run lasts forever. Records start times and raised errors."""

    def __init__(self, *steps: tuple[float, Exception | None]) -> None:
        self.steps = steps
        self.starts: list[float] = []
        self.raised: list[Exception] = []
        self.args: list[tuple[object, ...]] = []

    async def __call__(self, *args: object) -> None:
        self.starts.append(trio.current_time())
        self.args.append(args)
        if len(self.starts) > len(self.steps):
            await trio.sleep_forever()
        seconds, error = self.steps[len(self.starts) - 1]
        await trio.sleep(seconds)
        if error is not None:
            self.raised.append(error)
            raise error


def crashing(times: int, after: float = 0.0) -> Script:
    return Script(*[(after, Boom(f"crash {k}")) for k in range(1, times + 1)])


def worker(log: list[str], fn: Any, *args: Any, **options: Any) -> kernel.Resource:
    """A resource "worker" supervising ``fn(*args)``; logs when it is disposed."""

    @kernel.resource("worker")
    async def res(scope: kernel.Scope) -> Any:
        scope.supervise(fn, *args, **options)
        yield None
        log.append(f"dispose worker at {trio.current_time():g}")

    return res


def leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for inner in group.exceptions for leaf in leaves(inner)]
    return [group]


async def run_until_crash(log: list[str], fn: Any, **options: Any) -> list[BaseException]:
    """Run an app supervising ``fn`` until the supervision gives up; the errors raised."""
    with pytest.raises(ExceptionGroup) as info:
        async with run(kernel.App("app", register=[worker(log, fn, **options)])):
            await trio.sleep(10_000)
    return leaves(info.value)


@pytest.fixture
def records() -> Iterator[list[Any]]:
    """The loguru records of the supervisor (source "worker")."""
    seen: list[Any] = []
    sink = logger.add(
        lambda m: seen.append(m.record),
        level="DEBUG",
        filter=lambda r: r["extra"].get("source") == "worker",
    )
    yield seen
    logger.remove(sink)


# ---------------------------------------------------------------- restart policy


async def test_constant_wait_restarts_at_2_and_4_then_the_third_crash_propagates(
    autojump_clock,
) -> None:
    log: list[str] = []
    script = crashing(10)
    errors = await run_until_crash(log, script, restart=Retry(attempts=3, wait=constant(2)))
    assert script.starts == [0, 2, 4]
    assert errors == [script.raised[2]]  # the original, last exception, unchanged
    assert str(errors[0]) == "crash 3"
    assert trio.current_time() == 4
    assert log == ["dispose worker at 4"]


async def test_exponential_waits(autojump_clock) -> None:
    script = crashing(10, after=1)
    policy = Retry(attempts=5, wait=exponential(initial=1, maximum=5, jitter=None))
    errors = await run_until_crash([], script, restart=policy)
    # Runs last 1 s; waits 1, 2, 4, then 5 (the maximum).
    assert script.starts == [0, 2, 5, 10, 16]
    assert errors == [script.raised[4]]
    assert trio.current_time() == 17


async def test_a_task_that_recovers_keeps_running(autojump_clock) -> None:
    log: list[str] = []
    script = Script((0, Boom("a")), (0, Boom("b")))  # then runs forever
    app = kernel.App("app", register=[worker(log, script, restart=Retry(wait=constant(1)))])
    async with run(app):
        await trio.sleep(100)
    assert script.starts == [0, 1, 2]
    assert trio.current_time() == 100
    assert log == ["dispose worker at 100"]


async def test_on_not_matching_propagates_at_once(autojump_clock) -> None:
    script = Script((1, OSError("net")), (1, KeyError("bug")))
    errors = await run_until_crash(
        [], script, restart=Retry(attempts=5, on=OSError, wait=constant(3))
    )
    assert script.starts == [0, 4]
    assert errors == [script.raised[1]]
    assert trio.current_time() == 5


async def test_retry_after_and_stop_come_from_the_retry(autojump_clock) -> None:
    import tenacity

    script = crashing(10)
    policy = Retry(
        attempts=None,
        wait=constant(100),
        retry_after=lambda exc: 0.5,
        stop=tenacity.stop_after_attempt(4),
    )
    await run_until_crash([], script, restart=policy)
    assert script.starts == [0, 0.5, 1, 1.5]


async def test_fast_mode_applies_to_restarts(autojump_clock) -> None:
    script = crashing(10)
    with rs.testing.fast():
        await run_until_crash([], script, restart=Retry(attempts=3, wait=constant(60)))
    assert script.starts == [0, 0, 0]


async def test_restarts_are_reported_as_the_retry_events(autojump_clock, events) -> None:
    script = crashing(10)
    await run_until_crash([], script, restart=Retry(attempts=2, wait=constant(2), name="pump"))
    assert [(e.kind, e.source, e.time, dict(e.data)) for e in events] == [
        ("retry.attempt", "pump", 0, {"attempt": 1, "delay": 2, "error": script.raised[0]}),
        ("retry.gave_up", "pump", 2, {"attempts": 2, "error": script.raised[1]}),
    ]


async def test_never_propagates_the_first_crash(autojump_clock, records) -> None:
    log: list[str] = []
    script = crashing(10, after=1)
    errors = await run_until_crash(log, script)  # restart="never" is the default
    assert script.starts == [0]
    assert errors == [script.raised[0]]
    assert trio.current_time() == 1
    assert log == ["dispose worker at 1"]
    assert [(r["level"].name, r["extra"]["attempt"]) for r in records] == [
        ("WARNING", 1),
        ("ERROR", 1),
    ]
    assert "giving up" in records[-1]["message"]


async def test_a_normal_return_ends_the_supervision(autojump_clock, records) -> None:
    log: list[str] = []
    script = Script((0, Boom("once")), (3, None))
    policy = Retry(wait=constant(1))
    app = kernel.App("app", register=[worker(log, script, name="pump", restart=policy)])
    async with run(app):
        await trio.sleep(50)
    assert script.starts == [0, 1]
    assert log == ["dispose worker at 50"]
    assert records[-1]["level"].name == "INFO"
    assert records[-1]["message"] == "supervised task 'pump' returned; it is not restarted"


async def test_arguments_and_trio_task_name(autojump_clock) -> None:
    names: list[str] = []

    async def pump(a: int, b: str) -> None:
        names.append(f"{trio.lowlevel.current_task().name} {a} {b}")

    async with run(kernel.App("app", register=[worker([], pump, 1, "x", name="the pump")])):
        await trio.sleep(1)
    assert names == ["the pump 1 x"]


# ---------------------------------------------------------------- cancellation


async def test_dispose_cancels_a_running_task_before_the_disposer(autojump_clock, records) -> None:
    log: list[str] = []

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            log.append(f"task stopped at {trio.current_time():g}")

    app = kernel.App("app", register=[worker(log, forever, restart=Retry(wait=constant(1)))])
    async with run(app):
        await trio.sleep(5)
    assert log == ["task stopped at 5", "dispose worker at 5"]
    assert records == []  # cancellation is not a crash


async def test_dispose_while_waiting_to_restart_exits_at_once(autojump_clock, records) -> None:
    log: list[str] = []
    script = crashing(10, after=1)
    app = kernel.App("app", register=[worker(log, script, restart=Retry(wait=constant(100)))])
    async with run(app):
        await trio.sleep(5)
    assert trio.current_time() == 5
    assert script.starts == [0]
    assert log == ["dispose worker at 5"]
    assert [r["level"].name for r in records] == ["WARNING"]  # the crash; no restart, no give-up


async def test_a_cancelled_runtime_stops_a_backoff_without_counting_it(autojump_clock) -> None:
    log: list[str] = []
    script = crashing(10)
    app = kernel.App("app", register=[worker(log, script, restart=Retry(wait=constant(10)))])
    with trio.move_on_after(3) as cancel:
        async with run(app):
            await trio.sleep_forever()
    assert cancel.cancelled_caught
    assert script.starts == [0]
    assert log == ["dispose worker at 3"]


# ---------------------------------------------------------------- logs


async def test_each_crash_restart_and_the_end_are_logged_with_the_resource_id(
    autojump_clock, records
) -> None:
    script = crashing(10)
    await run_until_crash([], script, name="pump", restart=Retry(attempts=3, wait=constant(2)))
    assert [
        (r["level"].name, r["extra"]["source"], r["extra"]["task"], r["extra"]["attempt"])
        for r in records
    ] == [
        ("WARNING", "worker", "pump", 1),
        ("INFO", "worker", "pump", 2),
        ("WARNING", "worker", "pump", 2),
        ("INFO", "worker", "pump", 3),
        ("WARNING", "worker", "pump", 3),
        ("ERROR", "worker", "pump", 3),
    ]
    assert [r["message"] for r in records] == [
        "supervised task 'pump' crashed (attempt 1): Boom('crash 1')",
        "restarting supervised task 'pump' (attempt 2) after 2 s",
        "supervised task 'pump' crashed (attempt 2): Boom('crash 2')",
        "restarting supervised task 'pump' (attempt 3) after 2 s",
        "supervised task 'pump' crashed (attempt 3): Boom('crash 3')",
        "supervised task 'pump' crashed, giving up after 3 attempt(s): Boom('crash 3')",
    ]
    assert [r["extra"]["delay"] for r in records if r["level"].name == "INFO"] == [2, 2]
    crashes = [r for r in records if r["level"].name == "WARNING"]
    # The records carry each crash redacted, as text: a live exception would hold its frames.
    assert [(r["exception"].type, r["exception"].value.message) for r in crashes] == [
        (type(exc), str(exc)) for exc in script.raised
    ]
    assert records[-1]["extra"]["error"] == repr(script.raised[-1])


async def test_the_default_name_is_the_qualname(autojump_clock, records) -> None:
    async def pump() -> None:
        raise Boom("x")

    await run_until_crash([], pump)
    assert records[0]["extra"]["task"] == pump.__qualname__
    assert "test_the_default_name_is_the_qualname.<locals>.pump" in records[0]["message"]


# ---------------------------------------------------------------- reset_after


async def test_a_healthy_run_resets_the_attempt_count(autojump_clock, records) -> None:
    script = Script(
        (0, Boom("1")),
        (0, Boom("2")),
        (10, Boom("3 after a healthy run")),
        (0, Boom("4")),
        (4.5, Boom("5 short of reset_after")),
    )
    policy = Retry(attempts=3, wait=constant(1))
    errors = await run_until_crash([], script, restart=policy, reset_after=5)
    assert script.starts == [0, 1, 2, 13, 14]
    assert errors == [script.raised[4]]
    assert trio.current_time() == 18.5
    crashes = [r["extra"]["attempt"] for r in records if r["level"].name == "WARNING"]
    assert crashes == [1, 2, 1, 2, 3]


async def test_a_run_of_exactly_reset_after_is_healthy(autojump_clock) -> None:
    script = Script((2, Boom("a")), (2, Boom("b")), (2, Boom("c")))
    policy = Retry(attempts=2, wait=constant(1))
    app = kernel.App(
        "app", register=[worker([], script, restart=policy, reset_after=timedelta(seconds=2))]
    )
    async with run(app):
        await trio.sleep(20)
    # Every run was healthy, so every crash was an attempt 1, which attempts=2 restarts.
    assert script.starts == [0, 3, 6, 9]


async def test_without_reset_after_crashes_accumulate(autojump_clock) -> None:
    script = Script((0, Boom("1")), (0, Boom("2")), (100, Boom("3")))
    errors = await run_until_crash([], script, restart=Retry(attempts=3, wait=constant(1)))
    assert script.starts == [0, 1, 2]
    assert errors == [script.raised[2]]


async def test_the_retry_timeout_counts_from_the_start_of_the_streak(autojump_clock) -> None:
    # Without reset_after: a crash after 10 s of life is past the 3 s budget.
    script = Script((10, Boom("late")))
    policy = Retry(attempts=None, timeout=3, wait=constant(1))
    errors = await run_until_crash([], script, restart=policy)
    assert errors == [script.raised[0]]
    assert trio.current_time() == 10


async def test_with_reset_after_the_timeout_counts_from_the_healthy_crash(autojump_clock) -> None:
    script = Script((10, Boom("late")), (0, Boom("a")), (0, Boom("b")), (0, Boom("c")))
    policy = Retry(attempts=None, timeout=2.5, wait=constant(1))
    errors = await run_until_crash([], script, restart=policy, reset_after=5)
    # The streak opens at 10: restarts at 11 and 12; a third would end at 13, past 12.5.
    assert script.starts == [0, 11, 12]
    assert errors == [script.raised[2]]
    assert trio.current_time() == 12


@attrs.frozen
class Step:
    seconds: int
    crashes: bool


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.builds(Step, st.integers(0, 6), st.booleans()), max_size=8),
    attempts=st.integers(1, 4),
    wait=st.integers(0, 3),
    reset_after=st.none() | st.integers(1, 5),
)
def test_restart_times_match_a_reference_model(
    steps: list[Step], attempts: int, wait: int, reset_after: int | None
) -> None:
    # The model: starts, and the time it gives up (None: still running at the end).
    expected: list[float] = []
    gave_up: float | None = None
    now, attempt = 0, 0
    for step in steps:
        expected.append(now)
        attempt += 1
        now += step.seconds
        if not step.crashes:
            break
        if reset_after is not None and step.seconds >= reset_after:
            attempt = 1
        if attempt >= attempts:
            gave_up = now
            break
        now += wait
    else:
        expected.append(now)  # past the script, a run lasts forever

    script = Script(*[(s.seconds, Boom("x") if s.crashes else None) for s in steps])
    options: dict[str, Any] = {"restart": Retry(attempts=attempts, wait=constant(wait))}
    if reset_after is not None:
        options["reset_after"] = reset_after
    outcome: list[float | None] = []
    errors: list[BaseException] = []

    async def main() -> None:
        app = kernel.App("app", register=[worker([], script, **options)])
        try:
            async with run(app):
                await trio.sleep(1000)
        except ExceptionGroup as group:
            errors.extend(leaves(group))
            outcome.append(trio.current_time())
        else:
            outcome.append(None)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert script.starts == expected
    assert outcome == [gave_up]
    assert errors == ([] if gave_up is None else [script.raised[-1]])


# ---------------------------------------------------------------- arguments


async def noop() -> None:
    pass


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"restart": "always"}, TypeError, "restart must be an rs.Retry or 'never', got 'always'"),
        ({"restart": None}, TypeError, "restart must be an rs.Retry or 'never', got None"),
        ({"name": 3}, TypeError, "name must be a str or None, got 3"),
        ({"restart": Retry(), "reset_after": 0}, ValueError, "reset_after must be > 0, got 0"),
        ({"restart": Retry(), "reset_after": -1.0}, ValueError, "reset_after must be > 0"),
        (
            {"restart": Retry(), "reset_after": float("nan")},
            ValueError,
            "reset_after must not be NaN",
        ),
        ({"restart": Retry(), "reset_after": True}, TypeError, "reset_after must be a number"),
        ({"restart": Retry(), "reset_after": "5"}, TypeError, "reset_after must be a number"),
        ({"reset_after": 5}, ValueError, "reset_after needs restart=rs.Retry"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_starts(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    async with trio.open_nursery() as nursery:
        scope = kernel.Scope("worker", nursery)
        with pytest.raises(error, match="^" + re.escape(f"Scope.supervise: {message}")):
            scope.supervise(noop, **options)
        assert nursery.child_tasks == frozenset()


async def test_fn_must_be_callable() -> None:
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match=r"^Scope\.supervise: fn must be an async callable"):
            kernel.Scope("worker", nursery).supervise(42)  # type: ignore[arg-type]


async def test_a_callable_without_qualname_is_named_by_its_repr(autojump_clock, records) -> None:
    import functools

    async def pump(x: int) -> None:
        raise Boom(str(x))

    partial = functools.partial(pump, 7)
    await run_until_crash([], partial)
    assert records[0]["extra"]["task"] == repr(partial)


def test_scope_stays_a_frozen_attrs_class() -> None:
    assert [field.name for field in attrs.fields(kernel.Scope)] == ["id", "nursery", "runtime"]
    scope = kernel.Scope("worker", None)  # type: ignore[arg-type]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        scope.id = "other"  # type: ignore[misc]
