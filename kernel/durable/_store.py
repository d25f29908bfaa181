"""The store protocol: everything the durable engine asks of persistence.

Three implementations ship: `MemoryStore` (tests, one process), `SqliteStore` (embedded
default, one file, several processes) and `PostgresStore` (many workers on many machines).
One conformance suite (``tests/kernel/durable/test_store_conformance.py``) runs against
each of them.

Contract, common to every method:

- Every method is a trio checkpoint; cancellation propagates and leaves no partial write
  (each write is one transaction).
- The writes that change an execution (`create_execution`, `record_step`, `release`) take
  an optional ``audit`` entry, appended in the same transaction: a step's result and its
  timeline line, or an execution's end and its ``status_changed`` line, are stored
  together or not at all, in one trip to the store.
- *Fenced* writes take the ``worker`` that claimed the execution: they succeed only while
  the execution is ``running`` and owned by that worker, and raise `LeaseLostError`
  otherwise (the lease expired and another worker claimed it, or it was cancelled). A
  stale worker can therefore never record anything.
- Times are epoch seconds passed in by the engine (``now``); stores never read a clock, so
  the engine's clock (a MockClock in tests) rules.
- *Unreadable rows* (guarantee 6): what is read back is checked, column by column, against
  its record (`kernel.durable._rows`): text where a time belongs, a non-finite time, a
  negative attempt, an unknown status, a ``running`` execution without owner or lease, a
  ``waiting`` one nothing can wake, a schedule without a valid cadence... A method that
  returns one record raises `CorruptRecordError` naming the record and each such column;
  listings leave unreadable rows out; `next_due` ignores their times; `claim` fails
  unreadable active executions where they stand; `list_schedules` pauses unreadable
  schedules. One bad row never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol, runtime_checkable

from kernel.durable._records import (
    AuditEntry,
    Execution,
    Schedule,
    Status,
    StepRecord,
    StoreStats,
)

__all__ = ["LocalStore", "Store", "WatchedStore"]


@runtime_checkable
class Store(Protocol):
    """Persistence for durable executions (see the module docstring for the contract)."""

    #: True when every writer lives in this process and the store is a `LocalStore` (it has
    #: ``watch``): engines then wake on its writes and on timers, and never poll. A
    #: `WatchedStore` that is not local wakes engines on other processes' writes too, and
    #: they still poll every ``polling_interval``, in case a notification was missed.
    local: bool

    async def open(self) -> None:
        """Connect and create the schema if missing (idempotent). Called by the engine."""

    async def close(self) -> None:
        """Release connections and threads. Called by the engine on dispose."""

    # ------------------------------------------------------------------ executions

    async def create_execution(
        self, execution: Execution, *, audit: AuditEntry | None = None
    ) -> Execution:
        """Insert ``execution`` (and ``audit``, in the same transaction) and return it.

        When ``execution.idempotency_key`` is already used by another execution, insert
        nothing (no audit either) and return that execution (atomically: two concurrent
        calls with one key create one execution). An ``id`` already used raises ValueError.
        """

    async def get_execution(self, execution_id: str) -> Execution | None:
        """The execution, or None when no execution has that id."""

    async def list_executions(
        self, *, statuses: Collection[Status] | None = None, workflow: str | None = None
    ) -> list[Execution]:
        """Executions (filtered by status and workflow id), oldest ``created_at`` first;
        unreadable ones are left out."""

    async def claim(
        self, worker: str, *, now: float, lease_until: float, limit: int
    ) -> list[Execution]:
        """Take up to ``limit`` runnable executions for ``worker``; return them as updated.

        Runnable: ``pending`` or ``sleeping`` with ``wake_at`` None or ``<= now``;
        ``waiting`` with ``wake_at <= now`` (its timeout) or with an unconsumed signal for
        ``waiting_for``; ``running`` with ``lease_until < now`` (its worker died). Claimed
        executions become ``running`` with ``owner=worker``, ``lease_until``, ``wake_at``
        and ``waiting_for`` cleared. Earliest due first. Two concurrent claims (in any
        processes) never return the same execution.

        Unreadable active executions (whatever their lease) and executions of an unknown
        status are taken first, and failed where they stand in the same transaction:
        ``failed``, ``error`` the `CorruptRecordError` (``"CorruptRecordError: execution
        '<id>' cannot be read back: <column> holds ..."``), the columns that did not fit
        reset so the row reads back, owner and lease cleared. They are returned (terminal)
        among the claimed, for the worker to report, and count against ``limit``.
        """

    async def renew(self, execution_id: str, worker: str, *, lease_until: float) -> None:
        """Extend ``worker``'s lease (fenced: raises `LeaseLostError` when not the owner)."""

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
        """Fenced: leave ``running`` for ``status``, clearing owner and lease (and append
        ``audit`` in the same transaction).

        Sets ``result``, ``error``, ``wake_at``, ``waiting_for`` as given (None clears)
        and ``attempt`` when not None; returns the execution as updated. With
        ``status="waiting"``, a signal for ``waiting_for`` already buffered makes it
        runnable at once (`claim` sees it), so no signal is ever missed. Raises
        `CorruptRecordError` when the row cannot be read back (a claim fails it, if it is
        still active).
        """

    async def request_cancel(self, execution_id: str, *, now: float) -> Execution | None:
        """An active execution becomes ``cancelled`` (owner and lease cleared, so the running
        worker's next fenced write raises `LeaseLostError`); a terminal one is returned
        unchanged; None when unknown."""

    async def next_due(self) -> float | None:
        """The earliest time something becomes runnable by time alone: a ``wake_at`` of an
        active execution, the ``lease_until`` of a running one, the ``next_run_at`` of an
        unpaused schedule. None when there is none. A time that cannot be read back is no
        answer: the result is always a finite float or None."""

    async def stats(self, *, now: float) -> StoreStats:
        """Counts for the engine's metrics at ``now`` (see `StoreStats`). Reads every
        execution row's status: a call for a scrape interval, not for every round."""

    # ------------------------------------------------------------------ steps

    async def record_step(
        self, worker: str, step: StepRecord, *, audit: AuditEntry | None = None
    ) -> None:
        """Fenced: record a completed step (and append ``audit``, in the same transaction).
        The first record of a step id wins; recording the same id again records nothing
        (the audit entry is still appended)."""

    async def list_step_results(self, execution_id: str) -> list[StepRecord]:
        """The execution's recorded steps, in the order they were recorded (one that cannot
        be read back raises `CorruptRecordError`: its run fails)."""

    # ------------------------------------------------------------------ signals

    async def send_signal(
        self, execution_id: str, signal_id: str, payload: str, *, now: float
    ) -> bool:
        """Buffer a signal (JSON ``payload``) for the execution; False when it is unknown.

        Signals with one id are consumed oldest first, each by exactly one wait.
        """

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
        """Fenced: take the oldest unconsumed ``signal_id`` signal and, in the same
        transaction, record step ``step_id`` at ``position`` whose result is
        ``{"kind": "signal", "payload": <payload>}``; return that result's JSON text.
        None (and no write) when no such signal is buffered; `CorruptRecordError` (and no
        write) when its payload is not JSON text."""

    # ------------------------------------------------------------------ audit

    async def append_audit(self, entry: AuditEntry) -> None:
        """Append to the execution's timeline (``seq`` assigned by the store). Not fenced."""

    async def list_audit_entries(self, execution_id: str) -> list[AuditEntry]:
        """The execution's timeline, in ``seq`` order (1, 2, ...)."""

    # ------------------------------------------------------------------ schedules

    async def put_schedule(self, schedule: Schedule) -> Schedule:
        """Insert or replace the schedule with this id; return it."""

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        """The schedule, or None."""

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id. An unreadable one is left out and, unless it is paused
        already, paused where it stands (and logged, once): its ticks stop, loudly."""

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove the schedule; False when there was none."""

    async def fire_schedule(
        self, schedule_id: str, *, due: float, next_run_at: float, execution: Execution
    ) -> bool:
        """Atomically, if the schedule exists, is not paused and its ``next_run_at`` is
        still ``due``: create ``execution`` (honouring its idempotency key), set
        ``next_run_at`` and ``last_execution_id``; return True. Otherwise (another worker
        fired this tick, or it was paused or changed) write nothing and return False."""


@runtime_checkable
class WatchedStore(Store, Protocol):
    """A store that tells this process about writes (`MemoryStore`: its own, at once;
    `SqliteStore`: other processes', within a few milliseconds)."""

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (in the trio thread, never from inside a store call) after
        writes that can make an execution runnable or ended; return the function that
        stops watching. Needs an open store and a running trio loop."""


@runtime_checkable
class LocalStore(WatchedStore, Protocol):
    """A store whose writers all live in this process (`MemoryStore`): ``local`` is True,
    and ``watch`` reports every write."""
