"""The durable service as an app sees it: `Engine` (start, wait, signal, cancel, recover),
its options, and guarantees 5 (each step body runs once, an execution runs on one worker at
a time, a stalled worker loses its claim) and 6 (a corrupt row fails only its execution).

Engine clocks read ``T0 + trio.current_time()`` (see `wall_clock`), so times are exact.
Tests sharing one store between two engines stand for two processes; with SQLite each
engine has its own `SqliteStore` on one file, and the clock only jumps after 10 ms of real
idleness, so the store's worker threads finish before time moves on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import attrs
import pytest
import trio
import trio.testing

import kernel
from kernel.durable import (
    Branch,
    CorruptRecordError,
    DurableError,
    Engine,
    Execution,
    LeaseLostError,
    MemoryStore,
    Signal,
    SqliteStore,
    StepRecord,
    Store,
    UnknownExecutionError,
    UnknownWorkflowError,
    WaitTimeoutError,
    WorkflowCancelledError,
    WorkflowFailedError,
    _engine,
    engine,
    signal,
)
from tests.kernel.durable.corruption import corrupt
from tests.kernel.durable.helpers import audit_of, ended, recorded, running_engine, workflow

#: The engines' epoch: 2024-01-01T00:00:00Z, so engine times are exact floats.
T0 = 1_704_067_200.0
#: An owner that is no worker of this process (another host).
FOREIGN = "elsewhere:1:feed"


@pytest.fixture(autouse=True)
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines read the wall clock as ``T0 + trio.current_time()``: every engine of a test,
    whenever it starts, then shares one clock (as processes on one host do)."""
    monkeypatch.setattr(_engine, "time", SimpleNamespace(time=lambda: T0 + trio.current_time()))


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    """The store kind of a two-engine test."""
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock:
    """Autojump at once for the in-memory store; after 10 ms of real idleness for SQLite."""
    return trio.testing.MockClock(autojump_threshold=0 if kind == "memory" else 0.01)


@pytest.fixture
def threaded_clock() -> trio.testing.MockClock:
    """For SQLite-only tests: autojump after 10 ms of real idleness."""
    return trio.testing.MockClock(autojump_threshold=0.01)


@pytest.fixture
def stores(kind: str, tmp_path: Path) -> Callable[[], Store]:
    """A store per engine (or per seeding "process"), all on the same data."""
    shared = MemoryStore()
    path = tmp_path / "durable.sqlite3"
    return lambda: shared if kind == "memory" else SqliteStore(path)


async def seed(store: Store, *executions: Execution) -> None:
    """Write ``executions`` as another process would (opening and closing ``store``)."""
    await store.open()
    try:
        for execution in executions:
            await store.create_execution(execution)
    finally:
        await store.close()


async def settle(engine_: Engine, ids: list[str], *, limit: float = 600.0) -> list[Execution]:
    """Poll the store until every execution in ``ids`` has ended (fails after ``limit`` s)."""
    with trio.fail_after(limit):
        while True:
            executions = [await engine_.get_execution(xid) for xid in ids]
            if all(execution.terminal for execution in executions):
                return executions
            await trio.sleep(1)


def running_execution(
    execution_id: str, workflow_id: str, owner: str, lease_until: float
) -> Execution:
    return Execution(
        id=execution_id,
        workflow=workflow_id,
        input="null",
        status="running",
        owner=owner,
        lease_until=lease_until,
        created_at=T0,
        updated_at=T0,
    )


# ---------------------------------------------------------------------- workflows


@attrs.frozen
class Order:
    amount: int
    item: str = "book"


@attrs.frozen
class Receipt:
    total: int
    item: str


@attrs.frozen
class Approval:
    by: str


approved = signal("approved", payload=Approval)


async def double(value: int) -> int:
    await trio.lowlevel.checkpoint()
    return value * 2


@workflow("echo")
async def echo(value: Any, *, durable: Engine) -> Any:
    """Returns its input, through one step."""
    return await durable.context().step("echo", _identity, value)


async def _identity(value: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return value


@workflow("checkout", input=Order, result=Receipt)
async def checkout(order: Order, *, durable: Engine) -> Receipt:
    total = await durable.context().step("total", double, order.amount)
    return Receipt(total, order.item)


@kernel.task("plain")
async def plain(value: int) -> int:
    return value


@workflow("approval")
async def approval_flow(_: None, *, durable: Engine) -> str:
    approval = await durable.context().wait_for_signal(approved)
    return approval.by


# ---------------------------------------------------------------------- starting


async def test_start_returns_an_id_and_the_execution_runs(autojump_clock: trio.abc.Clock) -> None:
    async with running_engine(echo) as (_, e):
        xid = await e.start(echo, {"a": 1})
        assert isinstance(xid, str)
        assert xid
        assert (await e.get_execution(xid)).workflow == "echo"
        assert await e.wait(xid) == {"a": 1}
        by_id = await e.start("echo", [1, 2])
        assert by_id != xid
        assert await e.wait(by_id) == [1, 2]
        assert trio.current_time() == 0.0


class ReadCounting(MemoryStore):
    """A memory store whose changes wake nobody (a watched one wakes every waiter at every
    write, and each re-reads), noting the execution ids `get_execution` is asked for. A
    subclass, not a wrapper: Python 3.12+ checks a protocol's members statically, so a
    wrapper's ``__getattr__`` does not make it a `kernel.durable.Store`."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        return lambda: None

    async def get_execution(self, execution_id: str) -> Execution | None:
        self.reads.append(execution_id)
        return await super().get_execution(execution_id)


async def test_start_and_wait_waits_from_before_the_start_without_reading_it_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = ReadCounting()
    async with running_engine(echo, store=cast(Store, store)) as (_, e):
        xid, result = await e.start_and_wait(echo, {"a": 1})
        assert (result, store.reads) == ({"a": 1}, [])  # handed the ended execution
        same, again = await e.start_and_wait(echo, {"a": 2}, idempotency_key="k")
        assert again == {"a": 2}
        assert store.reads == [same]  # (with a key, the id is known only after the start)
        assert (await e.start_and_wait(echo, 3))[1] == 3
        assert (await e.get_execution(xid)).status == "completed"


async def test_start_refuses_what_is_not_a_registered_workflow() -> None:
    @workflow("unregistered")
    async def unregistered(_: None, *, durable: Engine) -> None:
        pass

    async with running_engine(echo, plain) as (_, e):
        for target in ("nope", plain, "plain", unregistered):
            with pytest.raises(UnknownWorkflowError, match="is not a workflow of this app"):
                await e.start(target)
        with pytest.raises(UnknownWorkflowError, match="'nope'"):
            await e.start_and_wait("nope")
        assert await e.store.list_executions() == []


async def test_start_checks_the_input_against_the_input_type() -> None:
    async with running_engine(checkout) as (_, e):
        with pytest.raises(kernel.ConfigError, match=r"input\.amount") as caught:
            await e.start(checkout, {"amount": "lots"})
        assert caught.value.owner == "workflow 'checkout'"
        with pytest.raises(kernel.ConfigError, match=r"input\.amount"):
            await e.start(checkout, {"item": "pen"})
        assert await e.store.list_executions() == []


async def test_the_input_is_stored_structured_and_the_result_read_back_into_its_type() -> None:
    async with running_engine(checkout) as (_, e):
        xid, receipt = await e.start_and_wait(checkout, {"amount": 21})
        assert receipt == Receipt(42, "book")
        execution = await e.get_execution(xid)
        assert execution.input == '{"amount":21,"item":"book"}'
        assert execution.result == '{"total":42,"item":"book"}'
        assert e.result_of(execution) == Receipt(42, "book")
        other = await e.start(checkout, Order(1, "pen"))
        assert await e.wait(other) == Receipt(2, "pen")


async def test_an_idempotency_key_starts_one_execution_whatever_the_calls() -> None:
    runs: list[int] = []

    @workflow("once")
    async def once(value: int, *, durable: Engine) -> int:
        runs.append(value)
        return value

    async with running_engine(once) as (_, e):
        first = await e.start(once, 1, idempotency_key="order-7")
        again = await e.start(once, 2, idempotency_key="order-7")
        assert again == first
        assert await e.wait(first) == 1
        assert await e.start_and_wait(once, 3, idempotency_key="order-7") == (first, 1)
        other = await e.start(once, 4, idempotency_key="order-8")
        assert other != first
        assert await e.wait(other) == 4
        assert runs == [1, 4]
        assert [x.idempotency_key for x in await e.store.list_executions()] == [
            "order-7",
            "order-8",
        ]
        # The repeated starts wrote nothing: one "pending", one "completed".
        assert [a.data for a in await audit_of(e, first)] == [
            {"to": "pending"},
            {"to": "completed", "attempt": 0},
        ]
        with pytest.raises(TypeError, match="idempotency_key must be a str"):
            await e.start(once, 5, idempotency_key=7)  # type: ignore[arg-type]


async def test_context_is_only_available_inside_a_run() -> None:
    async with running_engine(echo) as (_, e):
        with pytest.raises(DurableError, match="only available inside a workflow"):
            e.context()


# ---------------------------------------------------------------------- waiting


async def test_wait_on_a_failed_execution_raises_with_its_status_and_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    @workflow("broken")
    async def broken(_: None, *, durable: Engine) -> None:
        raise ValueError("boom")

    async with running_engine(broken, max_attempts=1) as (_, e):
        xid = await e.start(broken)
        with pytest.raises(WorkflowFailedError) as caught:
            await e.wait(xid)
        assert (caught.value.execution_id, caught.value.status) == (xid, "failed")
        assert caught.value.error == "ValueError: boom"
        assert str(caught.value) == f"execution {xid!r} failed: ValueError: boom"
        assert trio.current_time() == 0.0
        assert (await e.get_execution(xid)).attempt == 1


async def test_max_attempts_runs_a_failing_body_that_often_waiting_1_2_4_s(
    autojump_clock: trio.abc.Clock,
) -> None:
    tries: list[float] = []

    @workflow("flaky")
    async def flaky(_: None, *, durable: Engine) -> str:
        tries.append(trio.current_time())
        if len(tries) < 4:
            raise RuntimeError(f"try {len(tries)}")
        return "finally"

    async with running_engine(flaky, max_attempts=4) as (_, e):
        assert await e.start_and_wait(flaky) == (await _only_id(e), "finally")
        assert tries == [0.0, 1.0, 3.0, 7.0]
        execution = await e.get_execution(await _only_id(e))
        assert execution.attempt == 3
        assert execution.error is None  # cleared by the successful run
        changes = [a.data for a in await audit_of(e, execution.id, "status_changed")]
        assert changes[1] == {"to": "pending", "attempt": 1, "error": "RuntimeError: try 1"}

    tries.clear()
    async with running_engine(flaky, max_attempts=2) as (_, e):
        xid = await e.start(flaky)
        with pytest.raises(WorkflowFailedError, match="RuntimeError: try 2"):
            await e.wait(xid)
        assert tries == [7.0, 8.0]
        assert (await e.get_execution(xid)).attempt == 2


async def _only_id(e: Engine) -> str:
    [execution] = await e.store.list_executions()
    return execution.id


async def test_wait_on_compensation_failed_raises_with_that_status() -> None:
    async def undo(_: int) -> None:
        raise OSError("refund refused")

    @workflow("saga")
    async def saga(_: None, *, durable: Engine) -> None:
        ctx = durable.context()
        await ctx.step("charge").up(double, 5).down(undo)
        await ctx.rollback()

    async with running_engine(saga) as (_, e):
        xid = await e.start(saga)
        with pytest.raises(WorkflowFailedError, match="compensation failed") as caught:
            await e.wait(xid)
        assert caught.value.status == "compensation_failed"
        assert caught.value.error is not None
        assert "refund refused" in caught.value.error
        assert (await e.get_execution(xid)).attempt == 0  # not retried


async def test_wait_timeout_gives_up_at_exactly_that_time(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with running_engine(approval_flow) as (_, e):
        xid = await e.start(approval_flow)
        with pytest.raises(WaitTimeoutError, match=r"did not end within 2\.5 s") as caught:
            await e.wait(xid, timeout=2.5)
        assert isinstance(caught.value, TimeoutError)
        assert trio.current_time() == 2.5
        assert (await e.get_execution(xid)).status == "waiting"
        with pytest.raises(WaitTimeoutError):
            await e.start_and_wait(approval_flow, timeout=1)
        assert trio.current_time() == 3.5


async def test_wait_or_get_on_an_unknown_id_raises_unknown_execution() -> None:
    async with running_engine(echo) as (_, e):
        with pytest.raises(UnknownExecutionError, match="no execution has id 'nope'") as caught:
            await e.wait("nope")
        assert isinstance(caught.value, KeyError)
        with pytest.raises(UnknownExecutionError):
            await e.get_execution("nope")


# ---------------------------------------------------------------------- signals


async def test_signal_checks_its_payload_and_delivers_it_typed() -> None:
    async with running_engine(approval_flow) as (_, e):
        xid = await e.start(approval_flow)
        with pytest.raises(kernel.ConfigError, match=r"payload\.by"):
            await e.signal(xid, approved, {"who": "ann"})
        with pytest.raises(TypeError, match=r"expected a kernel\.durable\.signal"):
            await e.signal(xid, "approved", {"by": "ann"})  # type: ignore[arg-type]
        await e.signal(xid, approved, {"by": "ann"})
        assert await e.wait(xid) == "ann"


async def test_a_signal_without_payload_type_carries_any_json() -> None:
    go: Signal[Any] = signal("go")

    @workflow("untyped")
    async def untyped(_: None, *, durable: Engine) -> Any:
        return await durable.context().wait_for_signal(go)

    async with running_engine(untyped) as (_, e):
        xid = await e.start(untyped)
        await e.signal(xid, go, {"any": [1, "json"]})
        assert await e.wait(xid) == {"any": [1, "json"]}
        other = await e.start(untyped)
        await e.signal(other, go)
        assert await e.wait(other) is None


async def test_signal_to_an_unknown_or_ended_execution_raises() -> None:
    async with running_engine(echo) as (_, e):
        with pytest.raises(UnknownExecutionError, match="'nope'"):
            await e.signal("nope", approved, Approval("ann"))
        xid, _ = await e.start_and_wait(echo, 1)
        with pytest.raises(DurableError, match=r"has ended \(completed\); signal 'approved'"):
            await e.signal(xid, approved, Approval("ann"))


# ---------------------------------------------------------------------- cancelling


async def test_cancel_a_sleeping_execution_and_it_never_runs_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    steps: list[str] = []

    async def mark(name: str) -> str:
        steps.append(name)
        await trio.lowlevel.checkpoint()
        return name

    @workflow("nap")
    async def nap(_: None, *, durable: Engine) -> None:
        ctx = durable.context()
        await ctx.step("before", mark, "before")
        await ctx.sleep(100)
        await ctx.step("after", mark, "after")

    async with running_engine(nap) as (_, e):
        xid = await e.start(nap)
        await trio.sleep(10)
        assert (await e.get_execution(xid)).status == "sleeping"
        cancelled = await e.cancel(xid)
        assert (cancelled.status, cancelled.wake_at) == ("cancelled", None)
        with pytest.raises(WorkflowCancelledError, match=f"{xid!r} was cancelled"):
            await e.wait(xid)
        await trio.sleep(1000)
        assert steps == ["before"]
        assert (await e.get_execution(xid)).status == "cancelled"
        assert (await audit_of(e, xid, "status_changed"))[-1].data == {"to": "cancelled"}


async def test_cancel_a_running_execution_stops_its_run(autojump_clock: trio.abc.Clock) -> None:
    entered = trio.Event()
    gate = trio.Event()
    seen: list[str] = []

    async def blocked() -> None:
        entered.set()
        try:
            await gate.wait()
        except trio.Cancelled:
            seen.append("cancelled")
            raise
        seen.append("finished")  # pragma: no cover - the run is cancelled before

    async def later() -> None:  # pragma: no cover - never reached
        seen.append("later")

    @workflow("stuck")
    async def stuck(_: None, *, durable: Engine) -> None:
        ctx = durable.context()
        await ctx.step("blocked", blocked)
        await ctx.step("later", later)

    async with running_engine(stuck) as (_, e):
        xid = await e.start(stuck)
        await entered.wait()
        assert xid in e.running_executions()
        assert (await e.cancel(xid)).status == "cancelled"
        with pytest.raises(WorkflowCancelledError):
            await e.wait(xid)
        await trio.sleep(1)
        gate.set()
        await trio.sleep(100)
        assert seen == ["cancelled"]
        assert e.running_executions() == frozenset()
        execution = await e.get_execution(xid)
        assert (execution.status, execution.owner, execution.lease_until) == (
            "cancelled",
            None,
            None,
        )
        assert await recorded(e, xid) == {}
        assert trio.current_time() == 101.0


async def test_a_cancel_from_another_process_stops_the_run_at_its_next_renewal(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = MemoryStore()
    stopped: list[float] = []

    async def blocked() -> bool:
        try:
            await trio.sleep_forever()
        finally:
            stopped.append(trio.current_time())

    @workflow("remote")
    async def remote(_: None, *, durable: Engine) -> bool:
        return await durable.context().step("blocked", blocked)

    async with (
        running_engine(remote, store=store, claim_ttl=30) as (_, worker),
        running_engine(remote, store=store, worker=False) as (_, front),
    ):
        xid = await front.start(remote)
        worker.poke()  # (a shared MemoryStore does not wake the other engine by itself)
        await trio.sleep(1)
        assert xid in worker.running_executions()
        assert (await front.cancel(xid)).status == "cancelled"
        with pytest.raises(WorkflowCancelledError):
            await front.wait(xid)
        await trio.sleep(60)
        assert stopped == [10.0]  # the renewal at claim_ttl / 3 found the claim gone
        assert worker.running_executions() == frozenset()
        assert (await front.get_execution(xid)).status == "cancelled"


async def test_cancel_an_ended_execution_leaves_it_unchanged() -> None:
    async with running_engine(echo) as (_, e):
        xid, _ = await e.start_and_wait(echo, 3)
        before = await e.get_execution(xid)
        audit = await audit_of(e, xid)
        assert await e.cancel(xid) == before
        assert await e.get_execution(xid) == before
        assert await audit_of(e, xid) == audit
        assert await e.wait(xid) == 3
        with pytest.raises(UnknownExecutionError):
            await e.cancel("nope")


# ---------------------------------------------------------------------- workers


async def test_an_engine_without_worker_starts_but_runs_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = MemoryStore()
    async with running_engine(checkout, store=store, worker=False) as (_, front):
        assert front.worker is None
        xid = await front.start(checkout, {"amount": 4})
        await trio.sleep(60)
        assert (await front.get_execution(xid)).status == "pending"
    async with running_engine(checkout, store=store) as (_, back):
        assert await back.wait(xid) == Receipt(8, "book")
        assert trio.current_time() == 60.0


async def test_a_worker_in_another_process_runs_what_a_front_engine_starts(
    tmp_path: Path, threaded_clock: trio.testing.MockClock
) -> None:
    # Two SqliteStores on one file: a front process, and a worker process that would poll
    # only every hour. Each store's watch thread sees the other's writes (the file's change
    # counter) within milliseconds of real time, during which the mock clock stands still
    # (it jumps only after half a second of real idleness here).
    threaded_clock.autojump_threshold = 0.5
    path = tmp_path / "durable.sqlite3"
    ran_at: list[float] = []

    @workflow("polled")
    async def polled(value: int, *, durable: Engine) -> int:
        ran_at.append(trio.current_time())
        return value + 1

    async with (
        running_engine(polled, store=SqliteStore(path), polling_interval=3600) as (_, back),
        running_engine(polled, store=SqliteStore(path), worker=False, polling_interval=3600) as (
            _,
            front,
        ),
    ):
        assert back.worker is not None
        assert front.worker is None
        await trio.sleep(1)  # both engines are up and idle
        xid = await front.start(polled, 1)
        assert await front.wait(xid) == 2
        assert ran_at == [1.0]  # woken by the watch, not by a poll
        assert trio.current_time() == 1.0  # and so was the front's wait


# ---------------------------------------------------------------------- guarantee 5


async def test_two_engines_run_each_step_once_and_an_execution_on_one_worker_at_a_time(
    kind: str, clock: trio.testing.MockClock, stores: Callable[[], Store]
) -> None:
    inside: set[str] = set()
    overlaps: list[str] = []
    bodies: Counter[tuple[str, str]] = Counter()
    by_worker: Counter[str] = Counter()

    async def body(execution_id: str, step: str, worker: str) -> int:
        bodies[execution_id, step] += 1
        by_worker[worker] += 1
        await trio.sleep(1)
        return 1

    @workflow("g5")
    async def g5(_: int, *, durable: Engine) -> int:
        ctx = durable.context()
        xid = ctx.execution_id
        if xid in inside:
            overlaps.append(xid)  # pragma: no cover - the failure being tested for
        inside.add(xid)
        try:
            first = await ctx.step("a", body, xid, "a", durable.worker_id)
            await ctx.sleep(5)
            second = await ctx.step("b", body, xid, "b", durable.worker_id)
        finally:
            inside.discard(xid)
        return first + second

    options: dict[str, Any] = {"max_concurrent": 3, "polling_interval": 1}
    async with running_engine(g5, store=stores(), **options) as (_, a):
        ids = [await a.start(g5, n) for n in range(20)]
        async with running_engine(g5, store=stores(), **options) as (_, b):
            executions = await settle(b, ids)
    assert [(x.status, x.result) for x in executions] == [("completed", "2")] * 20
    assert bodies == {(xid, step): 1 for xid in ids for step in "ab"}
    assert overlaps == []
    assert by_worker.keys() == {a.worker_id, b.worker_id}  # both took part
    assert sum(by_worker.values()) == 40


async def test_a_stalled_worker_loses_its_execution_after_claim_ttl(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    gate = trio.Event()
    workers: list[str] = []

    async def work(worker: str) -> str:
        workers.append(worker)
        if len(workers) == 1:
            await gate.wait()  # the first worker stalls here
        return worker

    @workflow("stall")
    async def stall(_: None, *, durable: Engine) -> str:
        return await durable.context().step("work", work, durable.worker_id)

    async def never_renew(execution_id: str) -> None:
        await trio.sleep_forever()

    # max_concurrent=1: with its one run stuck, the first engine's loop claims nothing more
    # (not even its own expired execution back).
    async with running_engine(stall, store=store, claim_ttl=30, max_concurrent=1) as (_, a):
        assert a.worker is not None
        monkeypatch.setattr(a.worker, "_renew", never_renew)
        xid = await a.start(stall)
        await trio.sleep(1)
        assert (await a.get_execution(xid)).owner == a.worker_id
        async with running_engine(stall, store=store, claim_ttl=30) as (_, b):
            assert await b.wait(xid) == b.worker_id
            assert trio.current_time() == pytest.approx(30.0, abs=0.01)
            gate.set()  # the stale run finishes its step: its record is refused
            await trio.sleep(1)
            assert a.running_executions() == frozenset()
        assert workers == [a.worker_id, b.worker_id]
        assert await recorded(a, xid) == {"work": b.worker_id}
        assert len(await audit_of(a, xid, "step_completed")) == 1
        execution = await a.get_execution(xid)
        assert (execution.status, execution.owner) == ("completed", None)
        with pytest.raises(LeaseLostError):
            await store.record_step(a.worker_id, StepRecord(xid, "late", 1, "1", T0))
        assert await recorded(a, xid) == {"work": b.worker_id}


async def test_a_worker_whose_lease_lapsed_takes_it_back_without_running_it_twice(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = trio.Event()
    bodies: list[float] = []

    async def work() -> str:
        bodies.append(trio.current_time())
        await gate.wait()
        return "done"

    @workflow("lapse")
    async def lapse(_: None, *, durable: Engine) -> str:
        return await durable.context().step("work", work)

    async def never_renew(execution_id: str) -> None:
        await trio.sleep_forever()

    async with running_engine(lapse, claim_ttl=30, max_concurrent=2) as (_, e):
        assert e.worker is not None
        monkeypatch.setattr(e.worker, "_renew", never_renew)
        xid = await e.start(lapse)
        await trio.sleep(45)
        execution = await e.get_execution(xid)
        # Its loop claimed the expired execution again at 30 s: a new lease, same run.
        assert execution.owner == e.worker_id
        assert execution.lease_until == pytest.approx(T0 + 60, abs=0.01)
        gate.set()
        assert await e.wait(xid) == "done"
        assert bodies == [0.0]


async def test_an_expired_foreign_lease_is_claimed_once_it_has_passed(
    kind: str, clock: trio.testing.MockClock, stores: Callable[[], Store]
) -> None:
    await seed(stores(), running_execution("x", "echo", FOREIGN, lease_until=T0 + 30))
    async with running_engine(echo, store=stores(), claim_ttl=30) as (_, e):
        await trio.sleep(29)
        assert (await e.get_execution("x")).owner == FOREIGN
        assert await e.wait("x") is None
        # Claimed (and completed) just after the lease's end, 30 s after the seeding (with
        # SQLite, the clock may move on while a write is in its thread).
        ended = (await e.get_execution("x")).updated_at - T0
        if kind == "memory":
            assert ended == pytest.approx(30.0, abs=0.01)
        else:
            assert 30.0 <= ended <= 31.0
        with pytest.raises(LeaseLostError):
            await e.store.record_step(FOREIGN, StepRecord("x", "stale", 1, '"no"', T0 + 31))
        assert await recorded(e, "x") == {"echo": None}


async def test_a_lease_is_renewed_every_third_of_claim_ttl(
    autojump_clock: trio.abc.Clock,
) -> None:
    gate = trio.Event()

    async def wait() -> bool:
        await gate.wait()
        return True

    @workflow("long")
    async def long(_: None, *, durable: Engine) -> bool:
        return await durable.context().step("wait", wait)

    async with running_engine(long, claim_ttl=9) as (_, e):
        xid = await e.start(long)
        leases = []
        for _ in range(3):
            await trio.sleep(3.5)
            leases.append((await e.get_execution(xid)).lease_until)
        assert leases == [T0 + 12, T0 + 15, T0 + 18]
        gate.set()
        assert await e.wait(xid) is True


async def test_one_renewal_loop_keeps_the_leases_of_every_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    gate = trio.Event()

    async def wait() -> bool:
        await gate.wait()
        return True

    @workflow("long")
    async def long(_: None, *, durable: Engine) -> bool:
        return await durable.context().step("wait", wait)

    async with running_engine(long, claim_ttl=9) as (_, e):
        first = await e.start(long)
        await trio.sleep(2)
        second = await e.start(long)  # joins the loop ticking at 3, 6, 9 since the first
        await trio.sleep(4.5)
        leases = [(await e.get_execution(x)).lease_until for x in (first, second)]
        assert leases == [T0 + 15, T0 + 15]
        gate.set()
        assert [await e.wait(x) for x in (first, second)] == [True, True]
        await trio.sleep(100)  # nothing runs: the loop idles, renewing nothing
        assert (await e.get_execution(first)).owner is None


# ---------------------------------------------------------------------- recovery


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        check=True,
        text=True,
    )
    return int(done.stdout)


@pytest.mark.slow
async def test_recover_takes_back_at_once_what_a_dead_process_was_running(
    autojump_clock: trio.abc.Clock, dead_pid: int
) -> None:
    host = socket.gethostname()
    dead = f"{host}:{dead_pid}:a1"
    alive = f"{host}:{os.getppid()}:b2"
    store = MemoryStore()
    await seed(
        store,
        running_execution("dead", "echo", dead, lease_until=T0 + 600),
        running_execution("alive", "echo", alive, lease_until=T0 + 600),
    )
    async with running_engine(echo, store=store) as (_, e):
        assert await e.wait("dead") is None
        assert trio.current_time() == 0.0  # no lease wait
        [recovered, *_] = await audit_of(e, "dead", "status_changed")
        assert recovered.data == {"to": "pending", "recovered_from": dead}
        live = await e.get_execution("alive")
        assert (live.status, live.owner) == ("running", alive)
        assert await e.recover() == ["alive"]
        assert (await e.get_execution("alive")).owner == alive


@pytest.mark.slow
async def test_without_recover_on_startup_recover_is_called_by_hand(
    autojump_clock: trio.abc.Clock, dead_pid: int
) -> None:
    dead = f"{socket.gethostname()}:{dead_pid}:a1"
    store = MemoryStore()
    await seed(store, running_execution("dead", "echo", dead, lease_until=T0 + 600))
    options: dict[str, Any] = {"recover_on_startup": False, "audit": False}
    async with running_engine(echo, store=store, **options) as (_, e):
        await trio.sleep(10)
        assert (await e.get_execution("dead")).owner == dead
        assert await e.recover() == ["dead"]
        assert await e.wait("dead") is None
        assert trio.current_time() == 10.0
        assert await audit_of(e, "dead") == []


@pytest.mark.parametrize(
    ("owner", "gone"),
    [
        ("otherhost:123:x", False),
        ("{host}:notapid:x", False),
        ("{host}:{own}:x", False),
        ("{host}:{parent}:x", False),
    ],
)
def test_only_a_dead_process_of_this_host_counts_as_gone(owner: str, gone: bool) -> None:
    text = owner.format(host=socket.gethostname(), own=os.getpid(), parent=os.getppid())
    assert _engine._process_gone(text) is gone


def test_a_process_we_may_not_signal_is_not_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int, sig: int) -> None:
        raise PermissionError(pid)

    monkeypatch.setattr(os, "kill", refuse)
    assert _engine._process_gone(f"{socket.gethostname()}:1:x") is False


async def test_recover_skips_what_another_worker_took_meanwhile(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Raced(MemoryStore):
        async def release(self, execution_id: str, worker: str, **fields: Any) -> Execution:
            # Another worker claims the execution between recover's scan and its release.
            await self.claim("rival:1:x", now=T0 + 700, lease_until=T0 + 800, limit=1)
            return await super().release(execution_id, worker, **fields)

    store = Raced()
    gone = f"{socket.gethostname()}:999999999:x"
    await seed(store, running_execution("x", "echo", gone, lease_until=T0 + 600))
    async with running_engine(echo, store=store, recover_on_startup=False, worker=False) as (
        _,
        e,
    ):
        assert await e.recover() == ["x"]
        assert (await e.get_execution("x")).owner == "rival:1:x"


async def test_a_shutdown_mid_run_hands_the_execution_back(autojump_clock: trio.abc.Clock) -> None:
    store = MemoryStore()
    gate = trio.Event()
    runtimes: list[kernel.Runtime] = []

    @kernel.task("helper")
    async def helper() -> int:
        return 7

    async def wait() -> bool:
        await gate.wait()
        return True

    @workflow("draining")
    async def draining(_: None, *, durable: Engine) -> int:
        await durable.context().step("gate", wait)
        # A task call once intake has stopped raises ShuttingDown: the run is handed back.
        return int(await runtimes[-1].run_task(helper))

    async with running_engine(draining, helper, store=store) as (rt, e):
        runtimes.append(rt)
        xid = await e.start(draining)
        await trio.sleep(1)
        rt.shutdown()
        gate.set()
        await trio.sleep(3600)  # cancelled once the run has left (the drain)
    assert trio.current_time() == 1.0
    execution = await store.get_execution(xid)
    assert execution is not None
    assert (execution.status, execution.owner, execution.attempt) == ("pending", None, 0)
    assert execution.error is None
    async with running_engine(draining, helper, store=store) as (rt, e):
        runtimes.append(rt)
        assert await e.wait(xid) == 7
        assert await recorded(e, xid) == {"gate": True}


async def test_dispose_mid_step_hands_the_execution_back(autojump_clock: trio.abc.Clock) -> None:
    store = MemoryStore()
    entered = trio.Event()
    runs: list[float] = []

    async def slow() -> str:
        runs.append(trio.current_time())
        if len(runs) == 1:
            entered.set()
            await trio.sleep_forever()
        return "done"

    @workflow("handback")
    async def handback(_: None, *, durable: Engine) -> str:
        return await durable.context().step("slow", slow)

    async with running_engine(handback, store=store, claim_ttl=600) as (_, e):
        xid = await e.start(handback)
        await entered.wait()
        await trio.sleep(5)
    execution = await store.get_execution(xid)
    assert execution is not None
    assert (execution.status, execution.owner, execution.lease_until) == ("pending", None, None)
    async with running_engine(handback, store=store, claim_ttl=600) as (_, e):
        assert await e.wait(xid) == "done"
    assert runs == [0.0, 5.0]  # claimed again at once, not after the 600 s lease


# ---------------------------------------------------------------------- guarantee 6


async def test_corrupt_input_fails_only_its_own_execution(
    kind: str, clock: trio.testing.MockClock, stores: Callable[[], Store]
) -> None:
    bad = Execution("bad", "echo", "{not json", created_at=T0, updated_at=T0)
    await seed(stores(), bad)
    async with running_engine(echo, store=stores()) as (_, e):
        assert await e.start_and_wait(echo, "fine") == (await _other(e, "bad"), "fine")
        with pytest.raises(WorkflowFailedError, match="CorruptRecordError") as caught:
            await e.wait("bad")
        assert caught.value.error is not None
        assert "execution 'bad' input cannot be read back" in caught.value.error
        assert (await e.get_execution("bad")).attempt == 0  # failed at once, not retried


async def _other(e: Engine, bad: str) -> str:
    """The id of the one execution other than ``bad``."""
    [other] = [x.id for x in await e.store.list_executions() if x.id != bad]
    return other


async def test_a_corrupt_step_record_fails_only_its_own_execution(
    kind: str, clock: trio.testing.MockClock, stores: Callable[[], Store]
) -> None:
    seeder = stores()  # another process ran the step, recorded garbage, and let go
    await seeder.open()
    try:
        await seeder.create_execution(Execution("bad", "echo", '"x"', created_at=T0))
        await seeder.claim(FOREIGN, now=T0, lease_until=T0 + 10, limit=1)
        await seeder.record_step(FOREIGN, StepRecord("bad", "echo", 0, "{oops", T0))
        await seeder.release("bad", FOREIGN, status="pending", now=T0)
    finally:
        await seeder.close()
    async with running_engine(echo, store=stores()) as (_, e):
        assert await e.start_and_wait(echo, "fine") == (await _other(e, "bad"), "fine")
        with pytest.raises(WorkflowFailedError) as caught:
            await e.wait("bad")
        assert caught.value.error is not None
        assert caught.value.error.startswith("CorruptRecordError: step 'echo' result cannot")


@workflow("one.op")
async def one_op(kind: str, *, durable: Engine) -> Any:
    """One durable operation, with step id ``op``, of the kind its input names."""
    ctx = durable.context()
    if kind == "sleep":
        return await ctx.sleep(1, step_id="op")
    if kind == "signal":
        return await ctx.wait_for_signal(approved, step_id="op")
    if kind == "deadline":
        return (await ctx.wait_for_signal(approved, step_id="op", timeout=5)).kind
    return await ctx.switch("op", kind, [], Branch("any", _identity))


@pytest.mark.parametrize(
    ("kind_of_op", "step_id", "recorded_text", "what"),
    [
        ("sleep", "op", '{"wake_at":"abc"}', "sleep 'op'"),
        ("sleep", "op", "[1]", "sleep 'op'"),
        ("signal", "op", "5", "signal wait 'op'"),
        ("signal", "op", '{"kind":"signal"}', "signal wait 'op'"),
        ("signal", "op", '{"kind":"maybe"}', "signal wait 'op'"),
        ("deadline", "op:deadline", '"noon"', "deadline of 'op'"),
        ("deadline", "op:deadline", "Infinity", "deadline of 'op'"),
        ("switch", "op", '{"branch":"any"}', "switch 'op' result"),
    ],
)
async def test_a_recorded_operation_that_cannot_be_read_back_fails_its_execution_at_once(
    kind: str,
    clock: trio.testing.MockClock,
    stores: Callable[[], Store],
    kind_of_op: str,
    step_id: str,
    recorded_text: str,
    what: str,
) -> None:
    seeder = stores()  # another process recorded the operation, then let go
    await seeder.open()
    try:
        text = json.dumps(kind_of_op)
        await seeder.create_execution(Execution("bad", "one.op", text, created_at=T0))
        await seeder.claim(FOREIGN, now=T0, lease_until=T0 + 10, limit=1)
        position = None if step_id.endswith(":deadline") else 0
        await seeder.record_step(FOREIGN, StepRecord("bad", step_id, position, recorded_text, T0))
        await seeder.release("bad", FOREIGN, status="pending", now=T0)
    finally:
        await seeder.close()
    async with running_engine(one_op, echo, store=stores()) as (_, e):
        assert (await e.start_and_wait(echo, "fine"))[1] == "fine"
        with pytest.raises(WorkflowFailedError) as caught:
            await e.wait("bad", timeout=3600)
        assert caught.value.error is not None
        assert caught.value.error.startswith(f"CorruptRecordError: {what} cannot be read back")
        assert (await e.get_execution("bad")).attempt == 0  # at once, not retried


async def test_an_execution_of_an_unregistered_workflow_fails_naming_it(
    kind: str, clock: trio.testing.MockClock, stores: Callable[[], Store]
) -> None:
    await seed(stores(), Execution("gone", "retired.flow", "null", created_at=T0, updated_at=T0))
    async with running_engine(echo, store=stores()) as (_, e):
        assert (await e.start_and_wait(echo, 1))[1] == 1
        with pytest.raises(WorkflowFailedError) as caught:
            await e.wait("gone")
        assert caught.value.error == (
            "CorruptRecordError: execution 'gone': workflow 'retired.flow' is not registered "
            "in this app"
        )
        assert e.result_of(await e.get_execution(await _other(e, "gone"))) == 1


async def failed_unreadable(e: Engine, execution_id: str, column: str) -> str:
    """Wait for ``execution_id`` to fail as unreadable, naming ``column``; its error."""
    with pytest.raises(WorkflowFailedError) as caught:
        await e.wait(execution_id, timeout=3600)  # (never stuck without a word)
    error = caught.value.error
    assert error is not None
    assert error.startswith(
        f"CorruptRecordError: execution {execution_id!r} cannot be read back: {column} "
    ), error
    return error


async def seed_unreadable(
    store: Store, execution_id: str, column: str, value: Any, **fields: Any
) -> None:
    """An ``echo`` execution left by another process, then ``column`` set to ``value``."""
    await seed(
        store, Execution(execution_id, "echo", '"x"', created_at=T0, updated_at=T0, **fields)
    )
    await store.open()
    try:
        await corrupt(store, "executions", execution_id, column, value)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("column", "value", "fields"),
    [
        ("wake_at", "abc", {"status": "sleeping", "wake_at": T0 + 5}),
        ("lease_until", "abc", {"status": "running", "owner": FOREIGN, "lease_until": T0 + 5}),
        ("status", "bogus", {}),
        ("attempt", "abc", {"status": "sleeping", "wake_at": T0 + 5}),
        ("created_at", "abc", {"status": "waiting", "waiting_for": "approved"}),
    ],
    ids=["wake_at", "lease_until", "status", "attempt", "created_at"],
)
async def test_a_corrupt_row_fails_alone_and_the_worker_keeps_running_across_restarts(
    kind: str,
    clock: trio.testing.MockClock,
    stores: Callable[[], Store],
    column: str,
    value: Any,
    fields: dict[str, Any],
) -> None:
    await seed_unreadable(stores(), "bad1", column, value, **fields)
    async with running_engine(echo, store=stores()) as (_, e):  # recovers past it at startup
        assert (await e.start_and_wait(echo, "one"))[1] == "one"
        await failed_unreadable(e, "bad1", column)
    await seed_unreadable(stores(), "bad2", column, value, **fields)  # while nothing runs
    async with running_engine(echo, store=stores()) as (_, e):
        assert (await e.start_and_wait(echo, "two"))[1] == "two"
        error = await failed_unreadable(e, "bad2", column)
        assert (await e.get_execution("bad1")).status == "failed"
        [changed] = await audit_of(e, "bad2", "status_changed")
        assert changed.data == {"to": "failed", "attempt": 0, "error": error}
        assert await e.recover() == []


async def _held(entered: trio.Event, release: trio.Event) -> str:
    entered.set()
    await release.wait()
    return "held"


async def test_a_row_that_goes_bad_during_its_run_stops_the_run_and_fails_alone(
    kind: str, clock: trio.testing.MockClock, stores: Callable[[], Store]
) -> None:
    entered, release = trio.Event(), trio.Event()
    finished: list[str] = []

    @workflow("hold")
    async def hold(_: None, *, durable: Engine) -> None:
        finished.append(await durable.context().step("held", _held, entered, release))

    async with running_engine(hold, echo, store=stores()) as (_, e):
        held = await e.start(hold)
        await entered.wait()
        await corrupt(e.store, "executions", held, "created_at", "abc")
        # The next claim (for this start) fails it and stops its run; the others run.
        assert (await e.start_and_wait(echo, "fine"))[1] == "fine"
        await failed_unreadable(e, held, "created_at")
        release.set()
        await trio.sleep(1)
        assert finished == []
        assert await recorded(e, held) == {}


async def test_a_run_whose_row_went_bad_cannot_release_it_and_the_next_claim_fails_it(
    kind: str, clock: trio.testing.MockClock, stores: Callable[[], Store]
) -> None:
    entered, release = trio.Event(), trio.Event()

    @workflow("hold")
    async def hold(_: None, *, durable: Engine) -> str:
        return await durable.context().step("held", _held, entered, release)

    # (No claim meanwhile: the worker polls rarely and is left idle before the corruption.)
    async with running_engine(hold, echo, store=stores(), polling_interval=600) as (_, e):
        held = await e.start(hold)
        await entered.wait()
        await trio.sleep(1)
        await corrupt(e.store, "executions", held, "created_at", "abc")
        release.set()  # the run ends: its release is refused, the claim it asks for fails it
        failed = await ended(e, held)
        assert failed.status == "failed"
        assert failed.error is not None
        assert "created_at holds 'abc'" in failed.error
        assert (await e.start_and_wait(echo, "fine"))[1] == "fine"


@attrs.define(eq=False)
class _SpoiledOnRelease(MemoryStore):
    """A MemoryStore whose row of ``spoiled`` turns unreadable as it is released (as if
    edited between `recover`'s listing and its release)."""

    spoiled: str

    async def release(self, execution_id: str, worker: str, **changes: Any) -> Execution:
        if execution_id == self.spoiled:
            raise CorruptRecordError(f"execution {execution_id!r} cannot be read back")
        return await super().release(execution_id, worker, **changes)


async def test_recover_gets_past_a_row_that_goes_bad_while_it_recovers(
    autojump_clock: trio.abc.Clock, dead_pid: int
) -> None:
    dead = f"{socket.gethostname()}:{dead_pid}:0"
    store = _SpoiledOnRelease("spoiled")
    await seed(
        store,
        running_execution("spoiled", "echo", dead, T0 + 600),
        running_execution("fine", "echo", dead, T0 + 600),
    )
    async with running_engine(echo, store=store) as (_, e):  # recover_on_startup
        assert await e.wait("fine") is None
        assert (await e.get_execution("spoiled")).status == "running"  # left to its lease


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("worker", "yes", TypeError),
        ("polling_interval", 0, ValueError),
        ("polling_interval", True, TypeError),
        ("polling_interval", "1", TypeError),
        ("recover_on_startup", 1, TypeError),
        ("max_attempts", 0, ValueError),
        ("max_attempts", 2.0, TypeError),
        ("claim_ttl", -1.0, ValueError),
        ("claim_ttl", timedelta(seconds=-1), ValueError),
        ("audit", None, TypeError),
        ("max_concurrent", 0, ValueError),
        ("max_concurrent", False, TypeError),
    ],
)
def test_each_bad_option_is_a_value_or_type_error_naming_it(
    option: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"engine: {option} must be") as info:
        engine("durable", store=MemoryStore(), **{option: value})
    assert type(info.value) is error  # not a DefinitionError: the declaration is well formed


async def test_durations_may_be_timedeltas() -> None:
    durations = {"claim_ttl": timedelta(seconds=12), "polling_interval": timedelta(seconds=0.25)}
    async with running_engine(echo, **durations) as (_, e):
        _, result = await e.start_and_wait(echo, 7)
        assert result == 7


def test_the_store_must_be_a_store() -> None:
    with pytest.raises(kernel.DefinitionError, match="store must be a MemoryStore"):
        engine("durable", store=object())  # type: ignore[arg-type]


async def test_without_audit_no_timeline_is_kept() -> None:
    async with running_engine(echo, audit=False) as (_, e):
        xid, _ = await e.start_and_wait(echo, 1)
        assert await audit_of(e, xid) == []


async def test_concurrency_bounds_the_runs_at_once(autojump_clock: trio.abc.Clock) -> None:
    active: list[int] = []
    peak: list[int] = [0]

    async def hold() -> int:
        active.append(1)
        peak[0] = max(peak[0], len(active))
        await trio.sleep(10)
        return active.pop()

    @workflow("held")
    async def held(_: int, *, durable: Engine) -> int:
        return await durable.context().step("hold", hold)

    async with running_engine(held, max_concurrent=2) as (_, e):
        ids = [await e.start(held, n) for n in range(5)]
        for xid in ids:
            await e.wait(xid)
        assert peak == [2]
        assert trio.current_time() == 30.0  # 5 runs of 10 s, 2 at a time


# ---------------------------------------------------------------------- the resource


async def test_health_reports_the_engine_resource_healthy() -> None:
    async with running_engine(echo) as (rt, _):
        report = await rt.health()
        assert report.checks["durable"].status == "healthy"
        assert report.checks["durable"].error is None


async def test_health_reports_a_store_that_does_not_answer(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "durable.sqlite3")
    async with running_engine(echo, store=store, worker=False) as (rt, _):
        await store.close()
        report = await rt.health()
        assert report.checks["durable"].status == "unhealthy"
        await store.open()


async def test_an_engine_whose_store_fails_at_startup_does_not_start() -> None:
    class Broken(MemoryStore):
        closed = False

        async def list_executions(self, **filters: Any) -> list[Execution]:
            raise OSError("disk on fire")

        async def close(self) -> None:
            self.closed = True
            await super().close()

    store = Broken()
    with pytest.raises(kernel.ResourceInitError) as caught:
        async with running_engine(echo, store=store):
            pass  # pragma: no cover - never started
    assert isinstance(caught.value.__cause__, OSError)
    assert store.closed


async def test_workflows_lists_the_tagged_tasks_by_id() -> None:
    async with running_engine(echo, plain, checkout, approval_flow) as (_, e):
        assert [task.id for task in e.workflows()] == ["approval", "checkout", "echo"]
        assert e.workflow_task("plain") is None
        assert e.workflow_task("echo") is echo


def test_concurrency_is_the_deprecated_name_of_max_concurrent() -> None:
    with pytest.warns(DeprecationWarning, match="use max_concurrent="):
        declared = engine("durable", store=MemoryStore(), concurrency=2)
    assert isinstance(declared, kernel.Resource)
    with (
        pytest.warns(DeprecationWarning, match="max_concurrent="),
        pytest.raises(ValueError, match="max_concurrent"),
    ):
        engine("durable", store=MemoryStore(), concurrency=0)
