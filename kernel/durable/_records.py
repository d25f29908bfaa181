"""What a durable store keeps: executions, step results, signals, audit entries, schedules.

Records are frozen attrs classes. Values the workflow chose (inputs, step results, signal
payloads, workflow results) are kept as JSON text, written and read by the engine with
cattrs; the store never interprets them. Times are seconds since the epoch (floats).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs

__all__ = [
    "ACTIVE",
    "AUDIT_KINDS",
    "STATUSES",
    "TERMINAL",
    "AuditEntry",
    "AuditKind",
    "Execution",
    "Schedule",
    "Status",
    "StepRecord",
    "StoreStats",
    "cancelled",
    "claimed_by",
    "released",
]

Status: TypeAlias = Literal[
    "pending",
    "running",
    "sleeping",
    "waiting",
    "completed",
    "failed",
    "compensation_failed",
    "cancelled",
]
#: Every status, in lifecycle order.
STATUSES: Final[tuple[Status, ...]] = (
    "pending",
    "running",
    "sleeping",
    "waiting",
    "completed",
    "failed",
    "compensation_failed",
    "cancelled",
)
#: Statuses an execution never leaves.
TERMINAL: Final[frozenset[Status]] = frozenset(
    {"completed", "failed", "compensation_failed", "cancelled"}
)
#: Statuses of an execution that has not ended yet.
ACTIVE: Final[frozenset[Status]] = frozenset(STATUSES) - TERMINAL

AuditKind: TypeAlias = Literal[
    "step_completed",
    "signal_waiting",
    "signal_delivered",
    "sleep_started",
    "status_changed",
    "switch_evaluated",
    "note",
]
AUDIT_KINDS: Final[tuple[AuditKind, ...]] = (
    "step_completed",
    "signal_waiting",
    "signal_delivered",
    "sleep_started",
    "status_changed",
    "switch_evaluated",
    "note",
)


@attrs.frozen
class Execution:
    """One run of a workflow, from `start` to a terminal status.

    - ``workflow``: the task id. ``input``/``result``: JSON text. ``error``: what failed.
    - ``attempt``: how many runs of the body failed so far (it is retried up to the
      engine's ``max_attempts``).
    - ``wake_at``: not runnable before this time (a sleep, a signal timeout, a retry
      back-off, a scheduled start); ``None``: runnable now (pending) or never by time.
    - ``waiting_for``: the signal id a ``waiting`` execution waits for.
    - ``owner``/``lease_until``: the worker running it and until when its claim holds.
    """

    id: str
    workflow: str
    input: str
    status: Status = "pending"
    result: str | None = None
    error: str | None = None
    attempt: int = 0
    wake_at: float | None = None
    waiting_for: str | None = None
    idempotency_key: str | None = None
    owner: str | None = None
    lease_until: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def terminal(self) -> bool:
        """Whether the execution has ended (completed, failed, compensation_failed, cancelled)."""
        return self.status in TERMINAL


def claimed_by(execution: Execution, worker: str, *, lease_until: float, now: float) -> Execution:
    """``execution`` as a claim by ``worker`` leaves it (see `kernel.durable.Store.claim`)."""
    return attrs.evolve(
        execution,
        status="running",
        owner=worker,
        lease_until=lease_until,
        wake_at=None,
        waiting_for=None,
        updated_at=now,
    )


def released(
    execution: Execution,
    *,
    status: Status,
    now: float,
    result: str | None = None,
    error: str | None = None,
    wake_at: float | None = None,
    waiting_for: str | None = None,
    attempt: int | None = None,
) -> Execution:
    """``execution`` as a release leaves it (see `kernel.durable.Store.release`): the given
    columns replace what they held (None clears), ``attempt`` only when not None, owner
    and lease cleared."""
    return attrs.evolve(
        execution,
        status=status,
        result=result,
        error=error,
        wake_at=wake_at,
        waiting_for=waiting_for,
        attempt=execution.attempt if attempt is None else attempt,
        owner=None,
        lease_until=None,
        updated_at=now,
    )


def cancelled(execution: Execution, *, now: float) -> Execution:
    """``execution`` as a cancellation leaves an active one (see
    `kernel.durable.Store.request_cancel`): nothing runs it, nothing wakes it."""
    return attrs.evolve(
        execution,
        status="cancelled",
        owner=None,
        lease_until=None,
        wake_at=None,
        waiting_for=None,
        updated_at=now,
    )


@attrs.frozen
class StepRecord:
    """The recorded outcome of one durable operation of an execution.

    ``position`` is the operation's rank in the workflow's order of durable operations
    (0, 1, 2, ...), checked on replay; ``None`` for internal bookkeeping (a signal wait's
    deadline). ``result`` is JSON text.
    """

    execution_id: str
    step_id: str
    position: int | None
    result: str
    completed_at: float


@attrs.frozen
class AuditEntry:
    """One line of an execution's timeline. ``seq`` is assigned by the store (1, 2, ...)."""

    execution_id: str
    kind: AuditKind
    at: float
    step_id: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict)
    seq: int = 0


@attrs.frozen
class Schedule:
    """A recurring start of a workflow: every ``interval`` seconds, or on a ``cron`` line.

    ``next_run_at`` is the next tick; each tick starts exactly one execution (its
    idempotency key is ``schedule:<id>:<tick>``), whose id is then ``last_execution_id``.
    """

    id: str
    workflow: str
    input: str
    next_run_at: float
    cron: str | None = None
    interval: float | None = None
    paused: bool = False
    last_execution_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@attrs.frozen
class StoreStats:
    """What a store counts for the engine's metrics (`kernel.durable.Store.stats`).

    - ``by_status``: executions per status (every status present; rows of a status no code
      knows are left out).
    - ``due``: readable active executions runnable now (what a claim would take), running
      ones whose lease ran out included; the backlog.
    - ``oldest_due``: when the longest-waiting of those became runnable (its wake time, its
      creation or last change, the expiry of its lease, the arrival of the signal it
      waits for); None when none is.
    """

    by_status: Mapping[Status, int]
    due: int
    oldest_due: float | None
