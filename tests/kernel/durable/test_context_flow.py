"""`Context` flow control on a running engine: switch, compensation (``.down`` and
`rollback`), notes and the audit timeline, and `Engine.describe`.

Each test runs a real engine over a `MemoryStore` under the autojump MockClock; the lists
the bodies append to prove what ran, and how often.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import kernel
from kernel.durable import Branch, Engine, FlowNode, FlowShape, Signal, WorkflowFailedError, signal
from tests.kernel.durable.helpers import audit_of, recorded, running_engine, workflow

Clock = trio.testing.MockClock


@attrs.frozen
class Money:
    amount: int
    currency: str


# ---------------------------------------------------------------------- switch


def _branches(matched: list[str], ran: list[str]) -> tuple[list[Branch[Money]], Branch[Money]]:
    """Branches ``small`` (< 10) and ``medium`` (< 100), default ``large``; each logs its
    matcher calls to ``matched`` and its runs to ``ran``."""

    def matcher(name: str, limit: int) -> Callable[[Any], bool]:
        def match(value: Any) -> bool:
            matched.append(name)
            return bool(value < limit)

        return match

    def runner(name: str) -> Callable[[Any], Awaitable[Money]]:
        async def run(value: Any) -> Money:
            ran.append(name)
            return Money(value, name)

        return run

    return (
        [
            Branch("small", runner("small"), matcher("small", 10)),
            Branch("medium", runner("medium"), matcher("medium", 100)),
        ],
        Branch("large", runner("large")),
    )


@pytest.mark.parametrize(
    ("value", "branch", "evaluated"),
    [
        (5, "small", ["small"]),
        (50, "medium", ["small", "medium"]),
        (500, "large", ["small", "medium"]),
    ],
)
async def test_switch_runs_the_first_matching_branch_once_and_replays_its_result(
    autojump_clock: Clock, value: int, branch: str, evaluated: list[str]
) -> None:
    matched: list[str] = []
    ran: list[str] = []
    results: list[Money] = []
    branches, default = _branches(matched, ran)

    @workflow("wf")
    async def wf(amount: int, *, durable: Engine) -> Money:
        ctx = durable.context()
        result = await ctx.switch("size", amount, branches, default, returns=Money)
        results.append(result)
        await ctx.sleep(60)
        return result

    async with running_engine(wf) as (_, engine):
        execution_id = await engine.start(wf, value)
        await engine.wait(execution_id)
        steps = await recorded(engine, execution_id)
        [evaluation] = await audit_of(engine, execution_id, "switch_evaluated")

    assert matched == evaluated  # first match wins; the replay evaluates no matcher
    assert ran == [branch]
    assert results == [Money(value, branch), Money(value, branch)]
    assert steps["size"] == {"branch": branch, "result": {"amount": value, "currency": branch}}
    assert evaluation.step_id == "size"
    assert evaluation.data["branch"] == branch


async def test_switch_without_a_match_or_default_fails_the_execution(autojump_clock: Clock) -> None:
    matched: list[str] = []
    ran: list[str] = []
    branches, _ = _branches(matched, ran)

    @workflow("wf")
    async def wf(amount: int, *, durable: Engine) -> Money:
        return await durable.context().switch("size", amount, branches)

    async with running_engine(wf, max_attempts=1) as (_, engine):
        execution_id = await engine.start(wf, 500)
        with pytest.raises(WorkflowFailedError) as failed:
            await engine.wait(execution_id)
        steps = await recorded(engine, execution_id)

    assert failed.value.error == (
        "DurableError: switch 'size': no branch matched 500 and there is no default"
    )
    assert ran == []
    assert steps == {}


async def test_a_branch_cannot_use_durable_operations_and_fails_at_once(
    autojump_clock: Clock,
) -> None:
    async def nested(value: Any) -> int:
        await kernel_context.get().step("inside", _forty_two)
        return 0

    @workflow("wf")
    async def wf(amount: int, *, durable: Engine) -> int:
        kernel_context.set(durable.context())
        return await durable.context().switch("route", amount, [], Branch("only", nested))

    async with running_engine(wf) as (_, engine):
        execution_id = await engine.start(wf, 1)
        with pytest.raises(WorkflowFailedError) as failed:
            await engine.wait(execution_id)
        execution = await engine.get_execution(execution_id)

    assert failed.value.error is not None
    assert "branch of switch 'route' runs once" in failed.value.error
    assert execution.attempt == 0  # a misuse is not retried
    assert trio.current_time() == 0


async def _forty_two() -> int:
    return 42


kernel_context: contextvars.ContextVar[Any] = contextvars.ContextVar("kernel_context")


unregistered = kernel.event("flow.unregistered")


@attrs.frozen
class Shipped:
    n: int


shipped_typed = kernel.event("flow.shipped", payload=Shipped)


@pytest.mark.parametrize(
    ("event", "payload", "message"),
    [
        (unregistered, None, "is not an event registered in this app"),
        (shipped_typed, {"n": "one"}, "payload.n: expected int, got str"),
    ],
)
async def test_an_emit_mistake_fails_the_execution_at_once_and_marks_nothing(
    autojump_clock: Clock, event: kernel.Event, payload: Any, message: str
) -> None:
    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> None:
        await durable.context().emit(event, payload)

    async with running_engine(wf, shipped_typed) as (_, engine):
        execution_id = await engine.start(wf)
        with pytest.raises(WorkflowFailedError) as failed:
            await engine.wait(execution_id)
        steps = await recorded(engine, execution_id)

    assert failed.value.error is not None
    assert message in failed.value.error
    assert steps == {}
    assert trio.current_time() == 0  # no retry back-off: failed on the first attempt


# ---------------------------------------------------------------------- compensation


async def test_rollback_runs_compensations_newest_first_once_across_replays(
    autojump_clock: Clock,
) -> None:
    done: list[str] = []
    undone: list[tuple[str, Any]] = []
    attempts: list[int] = []

    async def do(name: str) -> Any:
        done.append(name)
        return {"id": name}

    def undo(name: str) -> Callable[[Any], Awaitable[None]]:
        async def compensate(value: Any) -> None:
            undone.append((name, value))

        return compensate

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        attempts.append(ctx.attempt)
        await ctx.step("reserve").up(do, "reserve").down(undo("reserve"))
        await ctx.step("log", do, "log")
        await ctx.step("charge").up(do, "charge").down(undo("charge"))
        await ctx.rollback()
        if ctx.attempt == 0:
            raise RuntimeError("crash after the rollback")
        await ctx.sleep(60)
        await ctx.rollback()  # everything is undone already: nothing to do
        return "rolled back"

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        steps = await recorded(engine, execution_id)

    assert result == "rolled back"
    assert attempts == [0, 1, 1]  # crash, retry (sleeps), wake-up replay
    assert done == ["reserve", "log", "charge"]
    assert undone == [("charge", {"id": "charge"}), ("reserve", {"id": "reserve"})]
    assert list(steps) == [
        "reserve",
        "log",
        "charge",
        "rollback:charge",
        "rollback:reserve",
        "__sleep:1",
    ]
    assert trio.current_time() == 61.0


async def test_a_failing_compensation_ends_the_execution_compensation_failed(
    autojump_clock: Clock,
) -> None:
    released: list[Any] = []
    runs: list[int] = []

    async def do(name: str) -> str:
        return name

    async def release(value: Any) -> None:
        released.append(value)

    async def refund(value: Any) -> None:
        raise ValueError("refund refused")

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> None:
        ctx = durable.context()
        runs.append(ctx.attempt)
        await ctx.step("reserve").up(do, "reserve").down(release)
        await ctx.step("charge").up(do, "charge").down(refund)
        await ctx.rollback()

    async with running_engine(wf, max_attempts=3) as (_, engine):
        execution_id = await engine.start(wf)
        with pytest.raises(WorkflowFailedError) as failed:
            await engine.wait(execution_id)
        execution = await engine.get_execution(execution_id)
        steps = await recorded(engine, execution_id)

    assert (execution.status, execution.attempt) == ("compensation_failed", 0)
    assert failed.value.status == "compensation_failed"
    assert execution.error == (
        f"CompensationFailedError: execution {execution_id!r}: compensation of step "
        f"'charge' failed: ValueError: refund refused"
    )
    assert runs == [0]
    assert released == []  # the rollback stopped at the failing compensation
    assert list(steps) == ["reserve", "charge"]


async def test_rollback_with_nothing_to_undo_does_nothing(autojump_clock: Clock) -> None:
    async def do() -> str:
        return "done"

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> str:
        ctx = durable.context()
        await ctx.rollback()
        result = await ctx.step("plain", do)
        await ctx.rollback()
        return result

    async with running_engine(wf) as (_, engine):
        execution_id, result = await engine.start_and_wait(wf)
        steps = await recorded(engine, execution_id)

    assert result == "done"
    assert steps == {"plain": "done"}


# ---------------------------------------------------------------------- notes and audit


async def test_notes_are_audited_once_and_not_repeated_on_replay(autojump_clock: Clock) -> None:
    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> None:
        ctx = durable.context()
        await ctx.note("charged", {"amount": 5})
        await ctx.sleep(60)
        await ctx.note("shipped")

    async with running_engine(wf) as (_, engine):
        execution_id, _ = await engine.start_and_wait(wf)
        notes = await audit_of(engine, execution_id, "note")

    assert [(note.step_id, dict(note.data)) for note in notes] == [
        ("__note:1", {"message": "charged", "meta": {"amount": 5}}),
        ("__note:2", {"message": "shipped", "meta": {}}),
    ]
    assert notes[1].at - notes[0].at == pytest.approx(60.0)


async def test_an_engine_without_audit_writes_no_audit_entry(autojump_clock: Clock) -> None:
    go: Signal[Any] = signal("go")

    async def do() -> str:
        return "done"

    async def take(value: Any) -> Any:
        return value

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> Any:
        ctx = durable.context()
        await ctx.step("a", do)
        if ctx.attempt == 0:
            raise RuntimeError("once")  # a retried attempt changes the status too
        await ctx.sleep(5)
        payload = await ctx.wait_for_signal(go)
        await ctx.note("noted", {"n": 1})
        return await ctx.switch("pick", payload, [], default=Branch("any", take))

    async with running_engine(wf, audit=False) as (_, engine):
        execution_id = await engine.start(wf)
        await trio.sleep(10)
        await engine.signal(execution_id, go, "payload")
        result = await engine.wait(execution_id)
        entries = await audit_of(engine, execution_id)
        steps = await recorded(engine, execution_id)

    assert result == "payload"
    assert entries == []
    # Without an audit a note records nothing either; the other operations do.
    assert list(steps) == ["a", "__sleep:1", "__signal:go:1", "pick"]


# ---------------------------------------------------------------------- describe


async def test_describe_lists_every_operation_in_order_without_running_anything(
    autojump_clock: Clock,
) -> None:
    calls: list[str] = []
    heard: list[object] = []
    go: Signal[Any] = signal("go")
    shipped = kernel.event("shipped")

    @kernel.hook("listen", on=shipped)
    async def listen(emission: kernel.Emission) -> None:
        heard.append(emission.payload)

    async def body(name: str) -> str:
        calls.append(name)
        return name

    async def undo(value: Any) -> None:
        calls.append("undo")

    async def branch(value: Any) -> str:
        calls.append("branch")
        return "branch"

    @workflow("wf")
    async def wf(order: dict[str, int], *, durable: Engine) -> str:
        ctx = durable.context()
        await ctx.step("reserve").up(body, "reserve").down(undo)
        await ctx.step("charge", body, "charge", retries=2)
        await ctx.sleep(3600)
        await ctx.wait_for_signal(go, timeout=600)
        await ctx.emit(shipped, {"n": 1})
        few = Branch("few", branch, lambda n: n < 3)
        await ctx.switch("route", order["n"], [few], default=Branch("many", branch))
        await ctx.note("done")
        await ctx.rollback()
        return "finished"

    async with running_engine(wf, shipped, listen) as (_, engine):
        shape = await engine.describe(wf, {"n": 1})
        executions = await engine.store.list_executions()

    assert shape == FlowShape(
        "wf",
        (
            FlowNode("step", "reserve", {"compensated": True}),
            FlowNode("step", "charge", {"compensated": False}),
            FlowNode("sleep", "__sleep:1", {"seconds": 3600}),
            FlowNode("wait_for_signal", "__signal:go:1", {"signal": "go", "timeout": 600}),
            FlowNode("emit", "__emit:shipped:1", {"event": "shipped"}),
            FlowNode("switch", "route", {"branches": ["few"], "default": "many"}),
            FlowNode("note", "__note:1", {"message": "done"}),
        ),
        None,
    )
    assert calls == []
    assert heard == []
    assert executions == []
    assert trio.current_time() == 0.0


async def test_describe_uses_the_tag_defaults_unless_given_an_input(autojump_clock: Clock) -> None:
    async def body(n: int) -> int:
        return n

    @workflow("batch", defaults={"n": 2})
    async def batch(order: dict[str, int], *, durable: Engine) -> None:
        ctx = durable.context()
        for i in range(order["n"]):
            await ctx.step(f"item{i}", body, i)

    async with running_engine(batch) as (_, engine):
        by_default = await engine.describe(batch)
        by_id = await engine.describe("batch")
        given = await engine.describe(batch, {"n": 3})

    assert [node.step_id for node in by_default.nodes] == ["item0", "item1"]
    assert by_id == by_default
    assert [node.step_id for node in given.nodes] == ["item0", "item1", "item2"]


async def test_describe_stops_where_the_body_needs_a_real_step_result(
    autojump_clock: Clock,
) -> None:
    async def quote() -> dict[str, int]:
        return {"amount": 5}

    async def charge(amount: int) -> int:
        return amount

    @workflow("wf")
    async def wf(_: None, *, durable: Engine) -> int:
        ctx = durable.context()
        offer = await ctx.step("quote", quote)
        return await ctx.step("charge", charge, offer["amount"])

    async with running_engine(wf) as (_, engine):
        shape = await engine.describe(wf)

    assert shape.stopped == "TypeError: 'NoneType' object is not subscriptable"
    assert shape.nodes == (FlowNode("step", "quote", {"compensated": False}),)
