"""A hypothesis state machine: each store against a small reference model of the contract.

Two workers claim, renew, release, record steps and consume signals (mostly on executions
they own, sometimes on ones they do not), while time advances, signals arrive and
executions are cancelled. The model is a few dicts written from the contract in
``_store.py`` (not `MemoryStore`). The machine runs in a worker thread (hypothesis is
synchronous) and calls the store in the test's trio run through ``trio.from_thread.run``;
each example builds, opens and closes a fresh store.

Steps are steered towards the interesting cases (a mutation run showed uniform choices
wasting most steps): a few executions at a time, few cancels, time that stands still while
something is runnable, waits and consumes on signal ids that have signals.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from kernel.durable import Execution, LeaseLostError, Status, StepRecord, Store
from tests.kernel.durable.conftest import make_store

T = TypeVar("T")

WORKERS = ("w1", "w2")
SIGNALS = st.sampled_from(["a", "a", "b"])
STEPS = st.sampled_from(["s1", "s2", "s3"])
KEYS = st.none() | st.sampled_from(["k1", "k2"])
LEASES = st.sampled_from([1.0, 4.0])
# Dyadic times keep every value exact in binary floating point (and in every database).
OFFSETS = st.sampled_from([-1.0, 0.0, 0.0, 0.5, 2.0, 8.0])  # 0: due at once, a boundary
RELEASE_STATUSES: list[Status] = [
    "pending",
    "sleeping",
    "sleeping",
    "waiting",
    "waiting",
    "waiting",
    "completed",
    "failed",
    "compensation_failed",
    "cancelled",
]
TERMINAL = frozenset({"completed", "failed", "compensation_failed", "cancelled"})


@attrs.define
class Record:
    """What the model knows of one execution."""

    updated_at: float
    status: str = "pending"
    owner: str | None = None
    lease_until: float | None = None
    wake_at: float | None = None
    waiting_for: str | None = None
    attempt: int = 0
    result: str | None = None


@attrs.define
class Signal:
    signal_id: str
    payload: int
    consumed: bool = False


@attrs.define
class Model:
    """The contract, for one caller at a time."""

    executions: dict[str, Record] = attrs.Factory(dict)
    keys: dict[str, str] = attrs.Factory(dict)
    steps: dict[str, dict[str, str]] = attrs.Factory(dict)  # id -> step id -> result, in order
    signals: dict[str, list[Signal]] = attrs.Factory(dict)  # id -> signals, oldest first

    def active(self) -> int:
        return sum(record.status not in TERMINAL for record in self.executions.values())

    def any_runnable(self, now: float) -> bool:
        return any(self.runnable(execution_id, now) for execution_id in self.executions)

    def any_running_or_waiting(self) -> bool:
        return any(r.status in ("running", "waiting") for r in self.executions.values())

    def any_running(self) -> bool:
        return any(record.status == "running" for record in self.executions.values())

    def owns(self, execution_id: str, worker: str) -> bool:
        record = self.executions.get(execution_id)
        return record is not None and record.status == "running" and record.owner == worker

    def oldest_signal(self, execution_id: str, signal_id: str | None) -> Signal | None:
        for signal in self.signals.get(execution_id, []):
            if signal.signal_id == signal_id and not signal.consumed:
                return signal
        return None

    def runnable(self, execution_id: str, now: float) -> bool:
        record = self.executions[execution_id]
        if record.status in ("pending", "sleeping"):
            return record.wake_at is None or record.wake_at <= now
        if record.status == "waiting":
            timed_out = record.wake_at is not None and record.wake_at <= now
            return timed_out or self.oldest_signal(execution_id, record.waiting_for) is not None
        if record.status == "running":
            return record.lease_until is not None and record.lease_until < now
        return False

    def due(self, execution_id: str, now: float) -> float:
        """Since when a runnable execution has been runnable (earliest is claimed first)."""
        record = self.executions[execution_id]
        if record.status == "running":
            assert record.lease_until is not None
            return record.lease_until
        if record.status == "waiting":  # by its timeout, else by a signal: now
            return now if record.wake_at is None else min(record.wake_at, now)
        # Pending (or sleeping) with no wake_at: runnable since it last changed.
        return record.updated_at if record.wake_at is None else record.wake_at


class Stale(Exception):
    """A fenced write was refused, as the model expected."""


class StoreMachine(RuleBasedStateMachine):
    """Subclassed per store kind with MAKE_STORE set."""

    MAKE_STORE: Callable[[], Store]

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.now = 100.0
        self.created = itertools.count()
        self.payloads = itertools.count()
        self.consumed_payloads: set[int] = set()
        self.terminal: dict[str, Execution] = {}  # each as it was when it ended
        self.cancels = 0
        self.store = self.MAKE_STORE()
        self.call(self.store.open)

    def teardown(self) -> None:
        self.call(self.store.close)

    @staticmethod
    def call(afn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return await afn(*args, **kwargs)

        return trio.from_thread.run(run)

    def pick(self, data: st.DataObject) -> tuple[str, str, bool]:
        """(execution id, worker, whether the model says that worker owns it): mostly a
        running execution and its owner; sometimes the other worker (a stale one, whose
        lease expired and was taken over) or any execution at all."""
        running = sorted(i for i, r in self.model.executions.items() if r.status == "running")
        if data.draw(st.integers(0, 3), label="owned") > 0:
            execution_id = data.draw(st.sampled_from(running), label="execution")
            owner = self.model.executions[execution_id].owner
            stale = data.draw(st.integers(0, 4), label="stale") == 0
            worker = next(w for w in WORKERS if (w == owner) != stale)
        else:
            execution_id = data.draw(st.sampled_from(sorted(self.model.executions)))
            worker = data.draw(st.sampled_from(WORKERS), label="worker")
        return execution_id, worker, self.model.owns(execution_id, worker)

    def fenced(self, owned: bool, afn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
        """Call a fenced write: it must raise LeaseLostError exactly when not ``owned``."""
        if owned:
            return self.call(afn, *args, **kw)
        with pytest.raises(LeaseLostError):
            self.call(afn, *args, **kw)
        raise Stale

    def ended(self, execution: Execution) -> None:
        if execution.status in TERMINAL:
            self.terminal[execution.id] = execution

    def check_steps(self) -> None:
        """Each execution's steps, each recorded once, in the order recorded."""
        for execution_id in self.model.executions:
            steps = self.call(self.store.list_step_results, execution_id)
            expected = self.model.steps.get(execution_id, {})
            assert [(s.step_id, s.result) for s in steps] == list(expected.items())

    # ------------------------------------------------------------------ rules

    @initialize()
    def first(self) -> None:
        self.create(None)

    @precondition(lambda self: self.model.active() < 3)  # a few, so that they interact
    @rule(key=KEYS)
    def create(self, key: str | None) -> None:
        execution_id = f"e{next(self.created):03}"
        made = Execution(
            execution_id, "wf", "{}", idempotency_key=key, created_at=self.now, updated_at=self.now
        )
        got = self.call(self.store.create_execution, made)
        if key is not None and key in self.model.keys:
            assert got.id == self.model.keys[key]
            return
        assert got == made
        self.model.executions[execution_id] = Record(updated_at=self.now)
        if key is not None:
            self.model.keys[key] = execution_id

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3), lease=LEASES)
    def claim(self, worker: str, limit: int, lease: float) -> None:
        model, now = self.model, self.now
        runnable = {i: model.due(i, now) for i in model.executions if model.runnable(i, now)}
        taken = self.call(self.store.claim, worker, now=now, lease_until=now + lease, limit=limit)
        ids = [execution.id for execution in taken]
        assert len(set(ids)) == len(ids)
        assert set(ids) <= set(runnable)
        assert len(ids) == min(limit, len(runnable))
        dues = [runnable[execution_id] for execution_id in ids]
        assert dues == sorted(dues), "earliest due first"
        left = [due for execution_id, due in runnable.items() if execution_id not in ids]
        assert max(dues, default=0.0) <= min(left, default=float("inf")), "earliest due first"
        for execution in taken:
            record = model.executions[execution.id]
            assert (execution.status, execution.owner, execution.lease_until) == (
                "running",
                worker,
                now + lease,
            )
            assert (execution.wake_at, execution.waiting_for) == (None, None)
            assert (execution.attempt, execution.result) == (record.attempt, record.result)
            record.status, record.owner, record.lease_until = "running", worker, now + lease
            record.wake_at = record.waiting_for = None

    @precondition(lambda self: self.model.any_running())
    @rule(data=st.data(), lease=LEASES)
    def renew(self, data: st.DataObject, lease: float) -> None:
        execution_id, worker, owned = self.pick(data)
        try:
            self.fenced(owned, self.store.renew, execution_id, worker, lease_until=self.now + lease)
        except Stale:
            return
        self.model.executions[execution_id].lease_until = self.now + lease

    @precondition(lambda self: self.model.any_running())
    @rule(
        data=st.data(),
        status=st.sampled_from(RELEASE_STATUSES),
        wake=st.none() | OFFSETS,
        attempt=st.none() | st.integers(1, 3),
    )
    def release(
        self,
        data: st.DataObject,
        status: Status,
        wake: float | None,
        attempt: int | None,
    ) -> None:
        execution_id, worker, owned = self.pick(data)
        waiting_for = None
        if status == "waiting":  # mostly on an id it has had signals for (waits again on it)
            seen = sorted({s.signal_id for s in self.model.signals.get(execution_id, [])})
            waiting_for = data.draw(st.sampled_from(seen) | SIGNALS if seen else SIGNALS)
        wake_at = None if wake is None else self.now + wake
        result = json.dumps(f"result@{self.now}")
        try:
            released = self.fenced(
                owned,
                self.store.release,
                execution_id,
                worker,
                status=status,
                now=self.now,
                result=result,
                wake_at=wake_at,
                waiting_for=waiting_for,
                attempt=attempt,
            )
        except Stale:
            return
        record = self.model.executions[execution_id]
        record.status, record.owner, record.lease_until = status, None, None
        record.wake_at, record.waiting_for, record.result = wake_at, waiting_for, result
        record.attempt = record.attempt if attempt is None else attempt
        record.updated_at = self.now
        assert (released.id, released.status, released.owner, released.lease_until) == (
            execution_id,
            status,
            None,
            None,
        )
        assert (released.wake_at, released.waiting_for, released.result) == (
            wake_at,
            waiting_for,
            result,
        )
        assert released.attempt == record.attempt
        self.ended(released)

    @precondition(lambda self: self.model.any_running())
    @rule(data=st.data(), step_id=STEPS)
    def record_step(self, data: st.DataObject, step_id: str) -> None:
        execution_id, worker, owned = self.pick(data)
        result = json.dumps(f"{step_id}@{self.now}")
        step = StepRecord(execution_id, step_id, 0, result, self.now)
        try:
            self.fenced(owned, self.store.record_step, worker, step)
        except Stale:
            pass
        else:  # the first record of a step id wins
            self.model.steps.setdefault(execution_id, {}).setdefault(step_id, result)
        self.check_steps()

    @precondition(lambda self: self.model.any_running_or_waiting())
    @rule(data=st.data(), signal_id=SIGNALS)
    def send_signal(self, data: st.DataObject, signal_id: str) -> None:
        execution_id = data.draw(st.sampled_from([*sorted(self.model.executions), "unknown"]))
        payload = next(self.payloads)
        sent = self.call(
            self.store.send_signal, execution_id, signal_id, str(payload), now=self.now
        )
        assert sent == (execution_id in self.model.executions)
        if sent:
            self.model.signals.setdefault(execution_id, []).append(Signal(signal_id, payload))

    @precondition(lambda self: self.model.any_running())
    @rule(data=st.data(), step_id=STEPS)
    def consume_signal(self, data: st.DataObject, step_id: str) -> None:
        execution_id, worker, owned = self.pick(data)
        # Mostly a signal id that has something buffered, so that waits get consumed.
        buffered = sorted(
            {s.signal_id for s in self.model.signals.get(execution_id, []) if not s.consumed}
        )
        signal_id = data.draw(st.sampled_from(buffered) | SIGNALS if buffered else SIGNALS)
        try:
            text = self.fenced(
                owned,
                self.store.consume_signal,
                worker,
                execution_id,
                signal_id,
                step_id=step_id,
                position=0,
                now=self.now,
            )
        except Stale:
            return
        oldest = self.model.oldest_signal(execution_id, signal_id)
        if oldest is None:
            assert text is None
        else:
            assert text is not None
            assert json.loads(text) == {"kind": "signal", "payload": oldest.payload}
            assert oldest.payload not in self.consumed_payloads, "a signal consumed twice"
            self.consumed_payloads.add(oldest.payload)
            oldest.consumed = True
            self.model.steps.setdefault(execution_id, {}).setdefault(step_id, text)
        self.check_steps()

    # A few cancels per run, so that executions live long enough to meet each other.
    @precondition(lambda self: self.cancels < 2)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        execution_id = data.draw(st.sampled_from([*sorted(self.model.executions), "unknown"]))
        self.cancels += 1
        got = self.call(self.store.request_cancel, execution_id, now=self.now)
        record = self.model.executions.get(execution_id)
        if record is None:
            assert got is None
            return
        assert got is not None
        if record.status in TERMINAL:
            assert got == self.terminal[execution_id]
            return
        assert (got.status, got.owner, got.lease_until) == ("cancelled", None, None)
        record.status, record.owner, record.lease_until = "cancelled", None, None
        # Whether a cancel also clears wake_at and waiting_for is the store's choice.
        record.wake_at, record.waiting_for = got.wake_at, got.waiting_for
        self.ended(got)

    # Time stands still while something is runnable, so that the boundaries (a wake_at or a
    # lease_until equal to now) meet claims.
    @precondition(lambda self: not self.model.any_runnable(self.now))
    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 10.0]))
    def advance_time(self, seconds: float) -> None:
        self.now += seconds

    # ------------------------------------------------------------------ invariants

    @invariant()
    def agrees_with_the_model(self) -> None:
        stored = {e.id: e for e in self.call(self.store.list_executions)}
        assert set(stored) == set(self.model.executions)
        for execution_id, record in self.model.executions.items():
            execution = stored[execution_id]
            assert (execution.status, execution.wake_at, execution.waiting_for) == (
                record.status,
                record.wake_at,
                record.waiting_for,
            )
            assert (execution.attempt, execution.result) == (record.attempt, record.result)
            # A running execution has exactly one owner (the model's); others have none.
            assert (execution.owner, execution.lease_until) == (record.owner, record.lease_until)
        for execution_id, ended in self.terminal.items():
            assert stored[execution_id] == ended, "a terminal execution changed"


SETTINGS = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
async def test_store_agrees_with_the_model(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "postgres":
        request.getfixturevalue("postgres_dsn")  # here, in the test's thread (or skip)
    examples = itertools.count()

    def make() -> Store:
        directory = tmp_path / f"example-{next(examples)}"
        directory.mkdir()
        return make_store(kind, directory, request)

    machine = type(f"StoreMachine_{kind}", (StoreMachine,), {"MAKE_STORE": staticmethod(make)})
    await trio.to_thread.run_sync(
        functools.partial(run_state_machine_as_test, machine, settings=SETTINGS)
    )
