"""`MemoryStore`: the store protocol in a dict, for tests and single-process experiments.

Its records are checked as they are read back, as the other stores' rows are
(`kernel.durable._rows`): a test that corrupts them through the internals sees what a
corrupt file or database does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection

import attrs
import trio

from kernel.durable._errors import CorruptRecordError, LeaseLostError
from kernel.durable._records import (
    STATUSES,
    TERMINAL,
    AuditEntry,
    Execution,
    Schedule,
    Status,
    StepRecord,
    StoreStats,
    cancelled,
    claimed_by,
    released,
)
from kernel.durable._rows import (
    failed_in_place,
    read_execution,
    read_schedule,
    read_step,
    report_paused,
    split_schedules,
)

__all__ = ["MemoryStore"]


@attrs.define(eq=False)
class _Signal:
    signal_id: str
    payload: str
    sent_at: float
    consumed: bool = False


def _due(execution: Execution) -> float | None:
    """When ``execution`` becomes claimable by time alone (None: not by time).

    A pending execution with no ``wake_at`` has been due since it last changed.
    """
    if execution.status == "running":
        return execution.lease_until
    if execution.status in ("pending", "sleeping"):
        return execution.wake_at if execution.wake_at is not None else execution.updated_at
    if execution.status == "waiting":
        return execution.wake_at
    return None


def _sort_due(execution: Execution, now: float) -> float:
    due = _due(execution)
    return now if due is None else due


def _read(execution: Execution) -> Execution:
    """``execution`` checked as a stored row is (raises `CorruptRecordError`)."""
    return read_execution(attrs.astuple(execution, recurse=False))


def _ended(execution: Execution) -> bool:
    """Terminal: never claimed nor due, so never checked by a claim (as in SQL)."""
    status: object = execution.status  # (any value, when the record was tampered with)
    return isinstance(status, str) and status in TERMINAL


@attrs.define(eq=False)
class MemoryStore:
    """Everything in this process's memory: lost when it exits. Every method is atomic
    (no checkpoint between its reads and writes). See `kernel.durable.Store`."""

    local: bool = attrs.field(default=True, init=False)
    _executions: dict[str, Execution] = attrs.field(factory=dict, init=False)
    _keys: dict[str, str] = attrs.field(factory=dict, init=False)
    _steps: dict[str, dict[str, StepRecord]] = attrs.field(factory=dict, init=False)
    _signals: dict[str, list[_Signal]] = attrs.field(factory=dict, init=False)
    _audit: dict[str, list[AuditEntry]] = attrs.field(factory=dict, init=False)
    _schedules: dict[str, Schedule] = attrs.field(factory=dict, init=False)
    _watchers: list[Callable[[], None]] = attrs.field(factory=list, init=False)

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after each write that can make an execution runnable or
        ended (engines sharing this store wake on it instead of polling); returns the
        function that stops watching."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    def _changed(self) -> None:
        for callback in list(self._watchers):
            callback()

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ executions

    def _create(self, execution: Execution) -> Execution:
        key = execution.idempotency_key
        if key is not None and key in self._keys:
            return self._executions[self._keys[key]]
        if execution.id in self._executions:
            raise ValueError(f"execution id {execution.id!r} is already used")
        _read(execution)  # one that would not read back is not stored (as in SQL)
        self._executions[execution.id] = execution
        if key is not None:
            self._keys[key] = execution.id
        return execution

    async def create_execution(
        self, execution: Execution, *, audit: AuditEntry | None = None
    ) -> Execution:
        await trio.lowlevel.checkpoint()
        created = self._create(execution)
        if audit is not None and created is execution:
            self._append(audit)
        self._changed()
        return _read(created)

    async def get_execution(self, execution_id: str) -> Execution | None:
        await trio.lowlevel.checkpoint()
        execution = self._executions.get(execution_id)
        return None if execution is None else _read(execution)

    async def list_executions(
        self, *, statuses: Collection[Status] | None = None, workflow: str | None = None
    ) -> list[Execution]:
        await trio.lowlevel.checkpoint()
        readable = []
        for stored in self._executions.values():
            with contextlib.suppress(CorruptRecordError):  # left out (see Store)
                readable.append(_read(stored))
        return sorted(
            (
                execution
                for execution in readable
                if (statuses is None or execution.status in statuses)
                and (workflow is None or execution.workflow == workflow)
            ),
            key=lambda execution: (execution.created_at, execution.id),
        )

    def _runnable(self, execution: Execution, now: float) -> bool:
        if execution.status == "running":
            return execution.lease_until is not None and execution.lease_until < now
        if execution.status == "waiting" and any(
            signal.signal_id == execution.waiting_for and not signal.consumed
            for signal in self._signals.get(execution.id, ())
        ):
            return True
        due = _due(execution)
        return due is not None and due <= now

    async def claim(
        self, worker: str, *, now: float, lease_until: float, limit: int
    ) -> list[Execution]:
        await trio.lowlevel.checkpoint()
        unreadable: list[Execution] = []
        readable: list[Execution] = []
        for key, stored in self._executions.items():
            if _ended(stored):
                continue
            try:
                readable.append(_read(stored))
            except CorruptRecordError as exc:
                values = attrs.astuple(stored, recurse=False)
                unreadable.append(failed_in_place(values, exc, execution_id=key, now=now))
        claimed = unreadable[:limit]
        for failed in claimed:
            self._executions[failed.id] = failed
        runnable = sorted(
            (e for e in readable if self._runnable(e, now)),
            key=lambda e: (_sort_due(e, now), e.created_at, e.id),
        )
        for execution in runnable[: max(limit - len(claimed), 0)]:
            updated = claimed_by(execution, worker, lease_until=lease_until, now=now)
            self._executions[execution.id] = updated
            claimed.append(updated)
        if unreadable:
            self._changed()
        return claimed

    def _owned(self, execution_id: str, worker: str) -> Execution:
        execution = self._executions.get(execution_id)
        if execution is None or execution.status != "running" or execution.owner != worker:
            raise LeaseLostError(f"worker {worker!r} no longer owns execution {execution_id!r}")
        return execution

    async def renew(self, execution_id: str, worker: str, *, lease_until: float) -> None:
        await trio.lowlevel.checkpoint()
        execution = self._owned(execution_id, worker)
        self._executions[execution_id] = attrs.evolve(execution, lease_until=lease_until)

    async def release(
        self,
        execution_id: str,
        worker: str,
        *,
        status: Status,
        now: float,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        waiting_for: str | None = None,
        attempt: int | None = None,
        audit: AuditEntry | None = None,
    ) -> Execution:
        await trio.lowlevel.checkpoint()
        execution = self._owned(execution_id, worker)
        updated = released(
            execution,
            status=status,
            now=now,
            result=result,
            error=error,
            wake_at=wake_at,
            waiting_for=waiting_for,
            attempt=attempt,
        )
        _read(updated)  # an unreadable row stays as it was (a rolled back transaction)
        self._executions[execution_id] = updated
        if audit is not None:
            self._append(audit)
        self._changed()
        return updated

    async def request_cancel(self, execution_id: str, *, now: float) -> Execution | None:
        await trio.lowlevel.checkpoint()
        stored = self._executions.get(execution_id)
        if stored is None:
            return None
        execution = _read(stored)
        if execution.terminal:
            return execution
        updated = cancelled(execution, now=now)
        self._executions[execution_id] = updated
        self._changed()
        return updated

    async def next_due(self) -> float | None:
        await trio.lowlevel.checkpoint()
        times: list[float] = []
        for execution in self._executions.values():
            if not _ended(execution):
                with contextlib.suppress(CorruptRecordError):  # no answer (see Store)
                    due = _due(_read(execution))
                    if due is not None:
                        times.append(due)
        for schedule in self._schedules.values():
            with contextlib.suppress(CorruptRecordError):
                readable = read_schedule(attrs.astuple(schedule, recurse=False))
                if not readable.paused:
                    times.append(readable.next_run_at)
        return min(times, default=None)

    async def stats(self, *, now: float) -> StoreStats:
        await trio.lowlevel.checkpoint()
        by_status: dict[Status, int] = {}
        due: list[float] = []
        for stored in self._executions.values():
            status: object = stored.status
            if not isinstance(status, str) or status not in STATUSES:
                continue
            by_status[stored.status] = by_status.get(stored.status, 0) + 1
            if _ended(stored):
                continue
            with contextlib.suppress(CorruptRecordError):  # (a claim fails it)
                execution = _read(stored)
                if self._runnable(execution, now):
                    due.append(self._due_since(execution, now))
        return StoreStats(by_status, len(due), min(due, default=None))

    def _due_since(self, execution: Execution, now: float) -> float:
        """When runnable ``execution`` became so (see `StoreStats.oldest_due`)."""
        if execution.status == "waiting" and (execution.wake_at is None or execution.wake_at > now):
            return min(
                signal.sent_at
                for signal in self._signals.get(execution.id, ())
                if signal.signal_id == execution.waiting_for and not signal.consumed
            )
        due = _due(execution)
        return now if due is None else due

    # ------------------------------------------------------------------ steps

    async def record_step(
        self, worker: str, step: StepRecord, *, audit: AuditEntry | None = None
    ) -> None:
        await trio.lowlevel.checkpoint()
        self._owned(step.execution_id, worker)
        self._steps.setdefault(step.execution_id, {}).setdefault(step.step_id, step)
        if audit is not None:
            self._append(audit)

    async def list_step_results(self, execution_id: str) -> list[StepRecord]:
        await trio.lowlevel.checkpoint()
        return [
            read_step(attrs.astuple(step, recurse=False))
            for step in self._steps.get(execution_id, {}).values()
        ]

    # ------------------------------------------------------------------ signals

    async def send_signal(
        self, execution_id: str, signal_id: str, payload: str, *, now: float
    ) -> bool:
        await trio.lowlevel.checkpoint()
        if execution_id not in self._executions:
            return False
        self._signals.setdefault(execution_id, []).append(_Signal(signal_id, payload, now))
        self._changed()
        return True

    async def consume_signal(
        self,
        worker: str,
        execution_id: str,
        signal_id: str,
        *,
        step_id: str,
        position: int,
        now: float,
    ) -> str | None:
        await trio.lowlevel.checkpoint()
        self._owned(execution_id, worker)
        for signal in self._signals.get(execution_id, ()):
            if signal.signal_id == signal_id and not signal.consumed:
                try:
                    if type(signal.payload) is not str:
                        kind = type(signal.payload).__name__
                        raise ValueError(f"the payload is of type {kind}, not text")
                    payload = json.loads(signal.payload)
                except ValueError as exc:
                    raise CorruptRecordError(
                        f"signal {signal_id!r} of execution {execution_id!r} cannot be read "
                        f"back: {exc}"
                    ) from exc
                signal.consumed = True
                result = json.dumps({"kind": "signal", "payload": payload})
                step = StepRecord(execution_id, step_id, position, result, now)
                self._steps.setdefault(execution_id, {}).setdefault(step_id, step)
                return result
        return None

    # ------------------------------------------------------------------ audit

    def _append(self, entry: AuditEntry) -> None:
        entries = self._audit.setdefault(entry.execution_id, [])
        entries.append(attrs.evolve(entry, seq=len(entries) + 1))

    async def append_audit(self, entry: AuditEntry) -> None:
        await trio.lowlevel.checkpoint()
        self._append(entry)

    async def list_audit_entries(self, execution_id: str) -> list[AuditEntry]:
        await trio.lowlevel.checkpoint()
        return list(self._audit.get(execution_id, ()))

    # ------------------------------------------------------------------ schedules

    async def put_schedule(self, schedule: Schedule) -> Schedule:
        await trio.lowlevel.checkpoint()
        self._schedules[schedule.id] = schedule
        self._changed()
        return schedule

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        await trio.lowlevel.checkpoint()
        schedule = self._schedules.get(schedule_id)
        return None if schedule is None else read_schedule(attrs.astuple(schedule, recurse=False))

    async def list_schedules(self) -> list[Schedule]:
        await trio.lowlevel.checkpoint()
        rows = [
            (key, *attrs.astuple(self._schedules[key], recurse=False))
            for key in sorted(self._schedules)
        ]
        schedules, to_pause = split_schedules(rows)
        for row, error in to_pause:
            self._schedules[row[0]] = attrs.evolve(self._schedules[row[0]], paused=True)
            report_paused(error)
        return schedules

    async def delete_schedule(self, schedule_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self._schedules.pop(schedule_id, None) is not None

    async def fire_schedule(
        self, schedule_id: str, *, due: float, next_run_at: float, execution: Execution
    ) -> bool:
        await trio.lowlevel.checkpoint()
        schedule = self._schedules.get(schedule_id)
        if schedule is None or schedule.paused or schedule.next_run_at != due:
            return False
        created = self._create(execution)
        self._schedules[schedule_id] = attrs.evolve(
            schedule,
            next_run_at=next_run_at,
            last_execution_id=created.id,
            updated_at=execution.created_at,
        )
        self._changed()
        return True
