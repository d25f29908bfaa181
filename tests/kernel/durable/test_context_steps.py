"""`Context` steps on a running engine: memoization, retries and timeouts, failed attempts,
unstorable results, replay checks, and the context itself (where it exists, what it says).

Each test runs a real engine over a `MemoryStore` under the autojump MockClock; the lists
the step bodies append to prove what ran, and how often.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import resilience as rs
from kernel.durable import DurableError, Engine, WorkflowFailedError
from tests.kernel.durable.helpers import audit_of, recorded, running_engine, workflow

Clock = trio.testing.MockClock


@attrs.frozen
class Money:
    amount: int
    currency: str


# ---------------------------------------------------------------------- memoization


async def test_steps_run_once_and_replays_return_the_recorded_values(autojump_clock: Clock) -> None:
    calls: list[str] = []
    runs: list[dict[str, Any]] = []
    original = Money(5, "EUR")

    async def price() -> Money:
        calls.append("price")
        return original

    async def quote(amount: int) -> Any:
        calls.append("quote")
        return {"amount": amount, "currency": "USD"}

    async def basket() -> Any:
        calls.append("basket")
        return {"items": ("a", "b"), "total": None}

    async def numbers() -> Any:
        calls.append("numbers")
        return [1, "two", 3.5, True]

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> Any:
        ctx = durable.context()
        seen = {
            "price": await ctx.step("price", price),
            "quote": await ctx.step("quote", quote, 7, returns=Money),
            "basket": await ctx.step("basket", basket),
            "numbers": await ctx.step("numbers", numbers),
        }
        runs.append(seen)
        await ctx.sleep(60)
        return seen

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        steps = await recorded(engine, execution_id)
        completed = await audit_of(engine, execution_id, "step_completed")

    assert calls == ["price", "quote", "basket", "numbers"]  # each body once
    first, replay = runs
    assert (
        first
        == replay
        == {
            "price": Money(5, "EUR"),
            "quote": Money(7, "USD"),
            "basket": {"items": ["a", "b"], "total": None},
            "numbers": [1, "two", 3.5, True],
        }
    )
    # The first run already gets the value read back from JSON, not the object returned.
    assert first["price"] is not original
    assert isinstance(replay["quote"], Money)
    assert steps["price"] == {"amount": 5, "currency": "EUR"}
    assert result["quote"] == {"amount": 7, "currency": "USD"}
    assert [entry.step_id for entry in completed] == ["price", "quote", "basket", "numbers"]


async def test_an_annotation_that_cannot_be_resolved_reads_back_plain_json(
    autojump_clock: Clock,
) -> None:
    @attrs.frozen
    class Local:  # not a module global: the string annotation "Local" cannot be resolved
        n: int

    async def make() -> Local:
        return Local(1)

    values: list[object] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> None:
        ctx = durable.context()
        values.append(await ctx.step("plain", make))
        values.append(await ctx.step("typed", make, returns=Local))

    async with running_engine(wf) as (_, engine):
        await engine.start_and_wait(wf)

    assert values == [{"n": 1}, Local(1)]


async def test_a_step_annotated_to_return_none_returns_none(autojump_clock: Clock) -> None:
    calls: list[str] = []

    async def send() -> None:
        calls.append("send")

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> object:
        return await durable.context().step("send", send)

    async with running_engine(wf, max_attempts=1) as (_, engine):
        execution_id = await engine.start(wf)
        with contextlib.suppress(WorkflowFailedError):
            await engine.wait(execution_id)
        execution = await engine.get_execution(execution_id)

    assert calls == ["send"]
    assert (execution.status, execution.error, execution.result) == ("completed", None, "null")


# ---------------------------------------------------------------------- retries and timeouts


async def test_step_retries_a_failing_body_within_the_same_run(autojump_clock: Clock) -> None:
    tries: list[float] = []
    attempts: list[int] = []

    async def flaky() -> str:
        tries.append(trio.current_time())
        if len(tries) < 3:
            raise ConnectionError(f"try {len(tries)}")
        return "ok"

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        attempts.append(ctx.attempt)
        return await ctx.step("call", flaky, retries=2)

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        execution = await engine.get_execution(execution_id)
        steps = await recorded(engine, execution_id)

    assert result == "ok"
    assert len(tries) == 3
    assert attempts == [0]  # one run of the body: the retries happen inside the step
    assert execution.attempt == 0
    assert steps == {"call": "ok"}
    # Exponential backoff with full jitter: at most 0.1 s, then at most 0.2 s.
    assert 0.0 <= tries[1] <= 0.1
    assert tries[1] <= tries[2] <= tries[1] + 0.2


async def test_exhausted_step_retries_fail_the_body_which_the_engine_retries(
    autojump_clock: Clock,
) -> None:
    tries: list[float] = []
    attempts: list[int] = []

    async def down() -> str:
        tries.append(trio.current_time())
        raise ConnectionError("down")

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        attempts.append(ctx.attempt)
        return await ctx.step("call", down, retries=1)

    async with running_engine(wf, max_attempts=2) as (_, engine):
        execution_id = await engine.start(wf)
        with pytest.raises(WorkflowFailedError) as failed:
            await engine.wait(execution_id)
        execution = await engine.get_execution(execution_id)
        steps = await recorded(engine, execution_id)

    assert attempts == [0, 1]
    assert len(tries) == 4  # two tries in each of the two attempts
    assert execution.status == "failed"
    assert execution.attempt == 2
    assert execution.error == failed.value.error == "ConnectionError: down"
    assert steps == {}


async def test_step_timeout_cancels_a_slow_try_with_timeout_exceeded(autojump_clock: Clock) -> None:
    finished: list[float] = []
    caught: list[tuple[float, str]] = []

    async def slow() -> str:
        await trio.sleep(10)
        finished.append(trio.current_time())
        return "slow"

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        try:
            await ctx.step("slow", slow, timeout=5)
        except rs.TimeoutExceeded as exc:
            caught.append((trio.current_time(), str(exc)))
        return "gave up"

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        steps = await recorded(engine, execution_id)

    assert result == "gave up"
    assert caught == [(5.0, "call did not finish within 5 s")]
    assert finished == []  # the body was cancelled, not left running
    assert steps == {}


async def test_step_timeout_bounds_each_try_of_a_retried_step(autojump_clock: Clock) -> None:
    durations = [10.0, 1.0]
    started: list[float] = []

    async def sometimes_slow() -> float:
        started.append(trio.current_time())
        seconds = durations[len(started) - 1]
        await trio.sleep(seconds)
        return seconds

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> float:
        return await durable.context().step("call", sometimes_slow, retries=1, timeout=5)

    async with running_engine(wf) as (_, engine):
        _, result = await engine.start_and_wait(wf)

    assert result == 1.0
    assert started[0] == 0.0
    assert 5.0 <= started[1] <= 5.1  # cut at 5 s, then a backoff of at most 0.1 s
    assert trio.current_time() == started[1] + 1.0


async def test_misused_steps_raise_durable_error_and_take_no_position(
    autojump_clock: Clock,
) -> None:
    errors: dict[str, str] = {}

    async def noop() -> str:
        return "ok"

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        await ctx.step("once", noop)
        cases: dict[str, Callable[[], Awaitable[object]]] = {
            "retries=-1": lambda: ctx.step("r", noop, retries=-1),
            "retries=True": lambda: ctx.step("r", noop, retries=True),
            "retries=1.5": lambda: ctx.step("r", noop, retries=1.5),  # type: ignore[call-overload]
            "timeout=0": lambda: ctx.step("t", noop, timeout=0),
            "timeout=-2.0": lambda: ctx.step("t", noop, timeout=-2.0),
            "timeout='5'": lambda: ctx.step("t", noop, timeout="5"),  # type: ignore[call-overload]
            "no body": lambda: ctx.step("bare", retries=1),
            "empty id": lambda: ctx.step("", noop),
            "twice": lambda: ctx.step("once", noop),
        }
        for label, make in cases.items():
            try:
                await make()
            except (DurableError, TypeError, ValueError) as exc:
                errors[label] = f"{type(exc).__name__}: {exc}"
        await ctx.step("after", noop)
        return "done"

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        records = await engine.store.list_step_results(execution_id)

    assert result == "done"
    assert errors == {
        "retries=-1": "ValueError: step 'r': retries must be >= 0, got -1",
        "retries=True": "TypeError: step 'r': retries must be an int, got True",
        "retries=1.5": "TypeError: step 'r': retries must be an int, got 1.5",
        "timeout=0": "ValueError: step 't': timeout must be > 0, got 0",
        "timeout=-2.0": "ValueError: step 't': timeout must be > 0, got -2.0",
        "timeout='5'": "TypeError: step 't': timeout must be a number of seconds or a timedelta, "
        "got '5'",
        "no body": "DurableError: step 'bare': no body; use ctx.step(id, fn) or .up(fn)",
        "empty id": "DurableError: a step id must be a non-empty str, got ''",
        "twice": f"DurableError: execution {execution_id!r}: step id 'once' is used twice; "
        f"each durable operation needs its own id",
    }
    assert [(r.step_id, r.position) for r in records] == [("once", 0), ("after", 1)]


# ---------------------------------------------------------------------- failed attempts


async def test_a_failed_body_reruns_only_unrecorded_steps_after_1_then_2_seconds(
    autojump_clock: Clock,
) -> None:
    first_calls: list[float] = []
    flaky_calls: list[float] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> list[int]:
        ctx = durable.context()

        async def first() -> int:
            first_calls.append(trio.current_time())
            return 1

        async def flaky() -> int:
            flaky_calls.append(trio.current_time())
            if ctx.attempt < 2:
                raise RuntimeError(f"attempt {ctx.attempt}")
            return 2

        return [await ctx.step("first", first), await ctx.step("flaky", flaky)]

    async with running_engine(wf) as (_, engine):  # max_attempts=3
        execution_id = await engine.start(wf)
        await trio.sleep(0.5)
        between = await engine.get_execution(execution_id)
        steps_between = await recorded(engine, execution_id)
        expected_wake = engine.now() + 0.5
        result = await engine.wait(execution_id)
        execution = await engine.get_execution(execution_id)

    assert between.status == "pending"
    assert between.attempt == 1
    assert between.error == "RuntimeError: attempt 0"
    assert between.wake_at == pytest.approx(expected_wake, abs=1e-6)
    assert steps_between == {"first": 1}  # the failed step left no record
    assert first_calls == [0.0]
    assert flaky_calls == [0.0, 1.0, 3.0]
    assert result == [1, 2]
    assert (execution.status, execution.attempt, execution.error) == ("completed", 2, None)


async def test_a_body_failing_max_attempts_times_ends_failed_with_its_error(
    autojump_clock: Clock,
) -> None:
    runs: list[float] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> None:
        ctx = durable.context()
        runs.append(trio.current_time())
        raise RuntimeError(f"broken on attempt {ctx.attempt}")

    async with running_engine(wf, max_attempts=3) as (_, engine):
        execution_id = await engine.start(wf)
        with pytest.raises(WorkflowFailedError) as failed:
            await engine.wait(execution_id)
        execution = await engine.get_execution(execution_id)
        statuses = await audit_of(engine, execution_id, "status_changed")

    assert runs == [0.0, 1.0, 3.0]
    assert execution.status == "failed"
    assert execution.attempt == 3
    assert execution.error == "RuntimeError: broken on attempt 2"
    assert failed.value.status == "failed"
    assert failed.value.error == execution.error
    assert [(entry.data["to"], entry.data.get("attempt")) for entry in statuses] == [
        ("pending", None),
        ("pending", 1),
        ("pending", 2),
        ("failed", 3),
    ]


# ---------------------------------------------------------------------- unstorable values


async def test_an_unstorable_step_result_fails_the_execution_at_once(autojump_clock: Clock) -> None:
    runs: list[int] = []
    calls: list[str] = []

    async def fine() -> str:
        calls.append("fine")
        return "fine"

    async def bad() -> object:
        calls.append("bad")
        return object()

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> object:
        ctx = durable.context()
        runs.append(ctx.attempt)
        await ctx.step("fine", fine)
        return await ctx.step("bad", bad)

    async with running_engine(wf, max_attempts=3) as (_, engine):
        execution_id = await engine.start(wf)
        with pytest.raises(WorkflowFailedError):
            await engine.wait(execution_id)
        execution = await engine.get_execution(execution_id)
        steps = await recorded(engine, execution_id)

    assert (execution.status, execution.attempt) == ("failed", 0)
    assert execution.error is not None
    assert execution.error.startswith(
        "SerializationError: step 'bad' result cannot be stored as JSON"
    )
    assert runs == [0]
    assert calls == ["fine", "bad"]
    assert steps == {"fine": "fine"}
    assert trio.current_time() == 0.0  # no retry back-off


async def test_an_unstorable_workflow_result_fails_the_execution_at_once(
    autojump_clock: Clock,
) -> None:
    runs: list[int] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> object:
        runs.append(durable.context().attempt)
        return {"when": object()}

    async with running_engine(wf, max_attempts=3) as (_, engine):
        execution_id = await engine.start(wf)
        with pytest.raises(WorkflowFailedError) as failed:
            await engine.wait(execution_id)

    assert runs == [0]
    assert failed.value.error is not None
    assert failed.value.error.startswith(
        "SerializationError: workflow 'wf' result cannot be stored as JSON"
    )


# ---------------------------------------------------------------------- replay checks


@pytest.mark.parametrize(
    ("changed", "got"),
    [(["b", "a"], "b"), (["new", "a", "b"], "new")],
    ids=["reordered", "inserted"],
)
async def test_a_replay_reaching_another_step_id_fails_the_execution(
    autojump_clock: Clock, changed: list[str], got: str
) -> None:
    order = ["a", "b"]
    ran: list[str] = []
    runs: list[int] = []

    async def body(step_id: str) -> str:
        ran.append(step_id)
        return step_id

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        runs.append(ctx.attempt)
        for step_id in order:
            await ctx.step(step_id, body, step_id)
        await ctx.sleep(60)
        return "done"

    async with running_engine(wf, max_attempts=3) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(1)
        assert (await engine.get_execution(execution_id)).status == "sleeping"
        order[:] = changed  # the code changes under the sleeping execution
        with pytest.raises(WorkflowFailedError):
            await engine.wait(execution_id)
        execution = await engine.get_execution(execution_id)

    assert (execution.status, execution.attempt) == ("failed", 0)  # never retried
    assert execution.error == (
        f"NonDeterminismError: execution {execution_id!r}: non-deterministic replay at "
        f"position 0: recorded step 'a', but the workflow now reaches step {got!r}"
    )
    assert ran == ["a", "b"]
    assert runs == [0, 0]
    assert trio.current_time() == 60.0


# ---------------------------------------------------------------------- the context itself


async def test_context_outside_a_workflow_run_raises_durable_error(autojump_clock: Clock) -> None:
    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        return durable.context().execution_id

    async with running_engine(wf) as (runtime, engine):
        with pytest.raises(DurableError, match=r"context\(\) is only available inside a workflow"):
            engine.context()
        with pytest.raises(DurableError, match=r"start it with engine.start\(...\), not by call"):
            await runtime.run_task(wf, None)


async def test_execution_id_and_attempt_describe_the_current_run(autojump_clock: Clock) -> None:
    seen: list[tuple[str, int]] = []

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        seen.append((ctx.execution_id, ctx.attempt))
        if ctx.attempt < 2:
            raise RuntimeError("not yet")
        return ctx.execution_id

    async with running_engine(wf) as (_, engine):
        first, first_result = await engine.start_and_wait(wf)
        second, second_result = await engine.start_and_wait(wf)

    assert first != second
    assert (first_result, second_result) == (first, second)
    assert seen == [(first, 0), (first, 1), (first, 2), (second, 0), (second, 1), (second, 2)]
