"""`Context` waits and events on a running engine: durable sleeps, signal waits (with and
without a timeout, across restarts) and emits.

Each test runs a real engine over a `MemoryStore` under the autojump MockClock, so a
day-long sleep takes no real time and its end is an exact ``trio.current_time()``.

Engines of one trio run share one epoch, so an engine restarted in a test continues the
first one's clock exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from loguru import logger

import kernel
from kernel.durable import DurableError, Engine, MemoryStore, Signal, SignalResult, signal
from tests.kernel.durable.helpers import (
    audit_of,
    recorded,
    running_engine,
    workflow,
)

Clock = trio.testing.MockClock

approved: Signal[Any] = signal("approved")


@attrs.frozen
class Approval:
    by: str
    level: int


approval = signal("approval", payload=Approval)


# ---------------------------------------------------------------------- sleep


async def test_sleep_stores_its_wake_time_and_ends_the_run_until_then(
    autojump_clock: Clock,
) -> None:
    runs: list[float] = []
    woke: list[float] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        runs.append(trio.current_time())
        await ctx.sleep(86400)
        woke.append(trio.current_time())
        return "awake"

    async with running_engine(wf) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(1)
        expected_wake = engine.now() - 1 + 86400
        sleeping = await engine.get_execution(execution_id)
        steps = await recorded(engine, execution_id)
        result = await engine.wait(execution_id)
        [started] = await audit_of(engine, execution_id, "sleep_started")

    assert (sleeping.status, sleeping.owner) == ("sleeping", None)
    assert sleeping.wake_at == pytest.approx(expected_wake, abs=1e-6)
    assert steps == {"__sleep:1": {"wake_at": sleeping.wake_at}}
    assert started.data == {"seconds": 86400, "wake_at": sleeping.wake_at}
    assert result == "awake"
    assert runs == [0.0, 86400.0]
    assert woke == [86400.0]


async def test_sleep_and_signal_timeout_take_a_timedelta(autojump_clock: Clock) -> None:
    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> tuple[float, str]:
        ctx = durable.context()
        await ctx.sleep(timedelta(hours=1))
        waited = await ctx.wait_for_signal(approved, timeout=timedelta(minutes=1))
        return trio.current_time(), waited.kind

    async with running_engine(wf) as (_, engine):
        _, result = await engine.start_and_wait(wf)

    assert tuple(result) == (3660.0, "timeout")


async def test_sleep_of_zero_seconds_does_not_suspend(autojump_clock: Clock) -> None:
    runs: list[float] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> float:
        ctx = durable.context()
        runs.append(trio.current_time())
        await ctx.sleep(0)
        await ctx.sleep(0.0, step_id="again")
        return trio.current_time()

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        steps = await recorded(engine, execution_id)
        statuses = await audit_of(engine, execution_id, "status_changed")

    assert result == 0.0
    assert runs == [0.0]
    assert list(steps) == ["__sleep:1", "again"]
    assert [entry.data["to"] for entry in statuses] == ["pending", "completed"]


async def test_sleep_rejects_a_negative_or_non_numeric_duration(autojump_clock: Clock) -> None:
    errors: list[str] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        for seconds in (-1, True, "5"):
            try:
                await ctx.sleep(seconds)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return "done"

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        steps = await recorded(engine, execution_id)

    assert result == "done"
    assert errors == [
        "ValueError: sleep: seconds must be >= 0, got -1",
        "TypeError: sleep: seconds must be a number of seconds or a timedelta, got True",
        "TypeError: sleep: seconds must be a number of seconds or a timedelta, got '5'",
    ]
    assert steps == {}


async def test_sleeps_are_numbered_in_order_unless_given_an_id(autojump_clock: Clock) -> None:
    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> float:
        ctx = durable.context()
        await ctx.sleep(30)
        await ctx.sleep(40, step_id="nap")
        await ctx.sleep(50)
        return trio.current_time()

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        records = await engine.store.list_step_results(execution_id)

    assert result == 120.0
    assert [(r.step_id, r.position) for r in records] == [
        ("__sleep:1", 0),
        ("nap", 1),
        ("__sleep:2", 2),
    ]


async def test_a_restarted_engine_waits_only_the_rest_of_a_sleep(autojump_clock: Clock) -> None:
    store = MemoryStore()
    runs: list[float] = []
    woke: list[float] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        runs.append(trio.current_time())
        await ctx.sleep(86400)
        woke.append(trio.current_time())
        return "awake"

    async with running_engine(wf, store=store) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(3600)
    assert (await store.get_execution(execution_id)).status == "sleeping"  # type: ignore[union-attr]
    await trio.sleep(3600)  # no engine at all for an hour

    async with running_engine(wf, store=store) as (_, engine):
        result = await engine.wait(execution_id)

    assert result == "awake"
    assert runs == [0.0, 86400.0]
    assert woke == [86400.0]


# ---------------------------------------------------------------------- signals


async def test_wait_for_signal_suspends_until_the_signal_and_returns_its_payload(
    autojump_clock: Clock,
) -> None:
    runs: list[float] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> Any:
        ctx = durable.context()
        runs.append(trio.current_time())
        payload = await ctx.wait_for_signal(approved)
        return {"payload": payload, "at": trio.current_time()}

    async with running_engine(wf) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(10)
        waiting = await engine.get_execution(execution_id)
        await engine.signal(execution_id, approved, {"ok": True})
        result = await engine.wait(execution_id)
        steps = await recorded(engine, execution_id)
        entries = await audit_of(engine, execution_id)

    assert (waiting.status, waiting.waiting_for, waiting.wake_at) == ("waiting", "approved", None)
    assert result == {"payload": {"ok": True}, "at": 10.0}
    assert runs == [0.0, 10.0]
    assert steps == {"__signal:approved:1": {"kind": "signal", "payload": {"ok": True}}}
    assert [
        (entry.kind, entry.step_id) for entry in entries if entry.kind.startswith("signal")
    ] == [
        ("signal_waiting", "__signal:approved:1"),
        ("signal_delivered", "__signal:approved:1"),
    ]


async def test_a_signal_sent_before_the_wait_is_buffered_for_it(autojump_clock: Clock) -> None:
    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> Any:
        ctx = durable.context()
        await ctx.sleep(100)
        payload = await ctx.wait_for_signal(approved)
        return [payload, trio.current_time()]

    async with running_engine(wf) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(1)
        assert (await engine.get_execution(execution_id)).status == "sleeping"
        await engine.signal(execution_id, approved, "early")
        result = await engine.wait(execution_id)
        kinds = [entry.kind for entry in await audit_of(engine, execution_id)]
        statuses = await audit_of(engine, execution_id, "status_changed")

    assert result == ["early", 100.0]
    assert "signal_waiting" not in kinds  # taken at once: the run never waited
    assert "waiting" not in [entry.data["to"] for entry in statuses]


async def test_two_waits_take_buffered_signals_oldest_first(autojump_clock: Clock) -> None:
    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> Any:
        ctx = durable.context()
        await ctx.sleep(10)
        first = await ctx.wait_for_signal(approved)
        second = await ctx.wait_for_signal(approved)
        return [first, second]

    async with running_engine(wf) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(1)
        await engine.signal(execution_id, approved, "one")
        await engine.signal(execution_id, approved, "two")
        result = await engine.wait(execution_id)

    assert result == ["one", "two"]
    assert trio.current_time() == 10.0


async def test_each_signal_is_delivered_to_exactly_one_wait(autojump_clock: Clock) -> None:
    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> Any:
        ctx = durable.context()
        await ctx.sleep(10)
        first = await ctx.wait_for_signal(approved)
        second = await ctx.wait_for_signal(approved)
        return [first, second, trio.current_time()]

    async with running_engine(wf) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(1)
        await engine.signal(execution_id, approved, "one")
        await trio.sleep(19)
        waiting = await engine.get_execution(execution_id)  # the second wait got nothing
        steps_between = await recorded(engine, execution_id)
        await engine.signal(execution_id, approved, "two")
        result = await engine.wait(execution_id)
        steps = await recorded(engine, execution_id)

    assert (waiting.status, waiting.waiting_for) == ("waiting", "approved")
    assert list(steps_between) == ["__sleep:1", "__signal:approved:1"]
    assert result == ["one", "two", 20.0]
    assert steps["__signal:approved:1"] == {"kind": "signal", "payload": "one"}
    assert steps["__signal:approved:2"] == {"kind": "signal", "payload": "two"}


async def test_a_typed_signal_is_checked_when_sent_and_structured_when_received(
    autojump_clock: Clock,
) -> None:
    received: list[tuple[Approval, SignalResult[Approval]]] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> int:
        ctx = durable.context()
        first = await ctx.wait_for_signal(approval)
        timed = await ctx.wait_for_signal(approval, timeout=60)
        received.append((first, timed))
        await ctx.sleep(5)
        return first.level

    async with running_engine(wf) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(1)
        with pytest.raises(kernel.ConfigError, match=r"payload\.level: required field missing"):
            await engine.signal(execution_id, approval, {"by": "ann"})
        with pytest.raises(kernel.ConfigError, match=r"payload\.level: expected int, got str"):
            await engine.signal(execution_id, approval, {"by": "ann", "level": "high"})
        rejected = await engine.get_execution(execution_id)
        await engine.signal(execution_id, approval, {"by": "ann", "level": 2})
        await engine.signal(execution_id, approval, Approval("bob", 3))
        result = await engine.wait(execution_id)

    assert (rejected.status, rejected.waiting_for) == ("waiting", "approval")
    assert result == 2
    expected = (Approval("ann", 2), SignalResult("signal", Approval("bob", 3)))
    assert received == [expected, expected]  # the replay after the sleep structures again
    first, timed = received[-1]
    assert isinstance(first, Approval)
    assert isinstance(timed.payload, Approval)


async def test_a_typed_signal_wait_can_time_out(autojump_clock: Clock) -> None:
    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        outcome = await durable.context().wait_for_signal(approval, timeout=5)
        return f"{outcome.kind}: {outcome.payload}"

    async with running_engine(wf, max_attempts=1) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(10)
        execution = await engine.get_execution(execution_id)

    assert (execution.status, execution.error) == ("completed", None)
    assert engine.result_of(execution) == "timeout: None"


async def test_wait_for_signal_rejects_what_is_not_a_signal_or_a_duration(
    autojump_clock: Clock,
) -> None:
    errors: list[str] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        try:
            await ctx.wait_for_signal("approved")  # type: ignore[call-overload]
        except DurableError as exc:
            errors.append(str(exc))
        timeouts: tuple[float, ...] = (-1, True)
        for timeout in timeouts:
            try:
                await ctx.wait_for_signal(approved, timeout=timeout)
            except (TypeError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return "done"

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        steps = await recorded(engine, execution_id)

    assert result == "done"
    assert errors == [
        "wait_for_signal: expected a kernel.durable.signal, got 'approved'",
        "ValueError: wait_for_signal: timeout must be >= 0, got -1",
        "TypeError: wait_for_signal: timeout must be a number of seconds or a timedelta, got True",
    ]
    assert steps == {}


# ---------------------------------------------------------------------- signal timeouts


@workflow("timed")
async def timed(_: None, *, durable: Engine) -> str:
    """Wait up to 300 s for `approved`; log each run's outcome and time in `OUTCOMES`."""
    ctx = durable.context()
    outcome = await ctx.wait_for_signal(approved, timeout=300)
    OUTCOMES.append((outcome, trio.current_time()))
    await ctx.sleep(10)  # a replay reads the outcome back
    return outcome.kind


OUTCOMES: list[tuple[SignalResult[Any], float]] = []


@pytest.fixture
def outcomes() -> Iterator[list[tuple[SignalResult[Any], float]]]:
    """The outcomes `timed` saw during the test."""
    OUTCOMES.clear()
    yield OUTCOMES
    OUTCOMES.clear()


async def test_wait_for_signal_times_out_at_exactly_the_deadline(
    autojump_clock: Clock, outcomes: list[tuple[SignalResult[Any], float]]
) -> None:
    async with running_engine(timed) as (_, engine):
        execution_id = await engine.start(timed)
        await trio.sleep(1)
        expected_deadline = engine.now() - 1 + 300
        waiting = await engine.get_execution(execution_id)
        result = await engine.wait(execution_id)
        records = await engine.store.list_step_results(execution_id)
        [waited] = await audit_of(engine, execution_id, "signal_waiting")

    assert (waiting.status, waiting.waiting_for) == ("waiting", "approved")
    assert waiting.wake_at == pytest.approx(expected_deadline, abs=1e-6)
    assert waited.data == {"signal": "approved", "deadline": waiting.wake_at}
    assert result == "timeout"
    timeout: SignalResult[Any] = SignalResult("timeout")
    assert outcomes == [(timeout, 300.0), (timeout, 310.0)]
    assert [(r.step_id, r.position, json.loads(r.result)) for r in records] == [
        ("__signal:approved:1:deadline", None, waiting.wake_at),  # not a position: bookkeeping
        ("__signal:approved:1", 0, {"kind": "timeout"}),
        ("__sleep:1", 1, {"wake_at": pytest.approx(expected_deadline + 10, abs=1e-6)}),
    ]


async def test_a_signal_before_the_deadline_wins(
    autojump_clock: Clock, outcomes: list[tuple[SignalResult[Any], float]]
) -> None:
    async with running_engine(timed) as (_, engine):
        execution_id = await engine.start(timed)
        await trio.sleep(50)
        await engine.signal(execution_id, approved, {"ok": True})
        result = await engine.wait(execution_id)

    assert result == "signal"
    received = SignalResult("signal", {"ok": True})
    assert outcomes == [(received, 50.0), (received, 60.0)]


async def test_a_signal_deadline_survives_a_restart(
    autojump_clock: Clock, outcomes: list[tuple[SignalResult[Any], float]]
) -> None:
    store = MemoryStore()
    async with running_engine(timed, store=store) as (_, engine):
        execution_id = await engine.start(timed)
        await trio.sleep(100)
    assert (await store.get_execution(execution_id)).status == "waiting"  # type: ignore[union-attr]

    async with running_engine(timed, store=store) as (_, engine):
        result = await engine.wait(execution_id)

    assert result == "timeout"
    [(outcome, at), _] = outcomes
    assert outcome == SignalResult("timeout")
    assert at == 300.0  # not 100 + 300: the deadline was kept


# ---------------------------------------------------------------------- emit

shipped = kernel.event("shipped")


@pytest.fixture
def warnings() -> Iterator[list[Any]]:
    """The loguru records the engine (source "durable") logs at WARNING and above."""
    seen: list[Any] = []
    sink = logger.add(
        lambda message: seen.append(message.record),
        level="WARNING",
        filter=lambda record: record["extra"].get("source") == "durable",
    )
    yield seen
    logger.remove(sink)


async def test_emit_runs_the_hooks_once_even_across_replays(autojump_clock: Clock) -> None:
    heard: list[object] = []
    runs: list[float] = []

    @kernel.hook("listen", on=shipped)
    async def listen(emission: kernel.Emission) -> None:
        heard.append(emission.payload)

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        runs.append(trio.current_time())
        await ctx.emit(shipped, {"n": 1})
        await ctx.sleep(60)
        await ctx.emit(shipped, {"n": 2}, step_id="again")
        return "ok"

    async with running_engine(wf, shipped, listen) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        steps = await recorded(engine, execution_id)

    assert result == "ok"
    assert runs == [0.0, 60.0]
    assert heard == [{"n": 1}, {"n": 2}]
    assert list(steps) == ["__emit:shipped:1", "__sleep:1", "again"]


async def test_a_failing_hook_is_logged_not_raised(
    autojump_clock: Clock, warnings: list[Any]
) -> None:
    @kernel.hook("broken", on=shipped)
    async def broken(emission: kernel.Emission) -> None:
        raise ValueError("hook broke")

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        await durable.context().emit(shipped, {"n": 1})
        return "ok"

    async with running_engine(wf, shipped, broken) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        execution = await engine.get_execution(execution_id)
        steps = await recorded(engine, execution_id)

    assert result == "ok"
    assert execution.attempt == 0
    assert steps == {"__emit:shipped:1": None}
    [record] = warnings
    assert record["message"] == "durable emit of 'shipped' failed"
    assert record["exception"].type is ValueError
