"""Rows read back from a store: what each column must hold, and what becomes of a row that
holds something else.

A store's file or database outlives the program, and anyone can edit it. Every store
builds its records through `read_execution`, `read_schedule` and `read_step`: a column whose
value does not fit (text where a time belongs, an unknown status, a running execution
without a lease, a schedule without a cadence ...) raises `CorruptRecordError` naming the
record and each such column. The SQL stores ask the same question in SQL
(`execution_readable_sql`), so that a claim finds an unreadable row among many without
reading them all.

What a store does with an unreadable row is in `kernel.durable.Store`: `claim` fails an
active execution where it stands (`failed_in_place`), `list_schedules` pauses a schedule
(and `report_paused` says so in the log), listings leave unreadable rows out, reads of one
record raise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import attrs
from croniter import croniter

from kernel.durable._errors import CorruptRecordError
from kernel.durable._records import STATUSES, Execution, Schedule, StepRecord
from kernel.observability import kernel_logger

__all__ = [
    "EXECUTION_COLUMNS",
    "Kind",
    "execution_readable_sql",
    "failed_in_place",
    "owned_by",
    "read_execution",
    "read_schedule",
    "read_step",
    "report_paused",
    "split_schedules",
]

#: What a column holds. ``?``: or null. ``time``: finite epoch seconds. ``count``: an int
#: >= 0. ``seconds``: finite and > 0. ``flag``: a bool (0 or 1 in SQLite).
Kind: TypeAlias = Literal[
    "text", "text?", "time", "time?", "count", "count?", "seconds?", "status", "flag"
]


def _columns(record: type, kinds: Mapping[str, Kind]) -> tuple[tuple[str, Kind], ...]:
    """``(column, kind)`` in the order of ``record``'s fields (its constructor's order)."""
    return tuple((field.name, kinds[field.name]) for field in attrs.fields(record))


EXECUTION_COLUMNS: Final = _columns(
    Execution,
    {
        "id": "text",
        "workflow": "text",
        "input": "text",
        "status": "status",
        "result": "text?",
        "error": "text?",
        "attempt": "count",
        "wake_at": "time?",
        "waiting_for": "text?",
        "idempotency_key": "text?",
        "owner": "text?",
        "lease_until": "time?",
        "created_at": "time",
        "updated_at": "time",
    },
)
_SCHEDULE_COLUMNS: Final = _columns(
    Schedule,
    {
        "id": "text",
        "workflow": "text",
        "input": "text",
        "next_run_at": "time",
        "cron": "text?",
        "interval": "seconds?",
        "paused": "flag",
        "last_execution_id": "text?",
        "created_at": "time",
        "updated_at": "time",
    },
)
_STEP_COLUMNS: Final = _columns(
    StepRecord,
    {
        "execution_id": "text",
        "step_id": "text",
        "position": "count?",
        "result": "text",
        "completed_at": "time",
    },
)
_INDEX: Final = {name: index for index, (name, _) in enumerate(EXECUTION_COLUMNS)}
_KNOWN: Final = frozenset(STATUSES)


def _is_time(value: Any) -> bool:
    return (type(value) is float and math.isfinite(value)) or type(value) is int


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


_FITS: Final[Mapping[Kind, Callable[[Any], bool]]] = {
    "text": lambda value: type(value) is str,
    "text?": lambda value: value is None or type(value) is str,
    "time": _is_time,
    "time?": lambda value: value is None or _is_time(value),
    "count": _is_count,
    "count?": lambda value: value is None or _is_count(value),
    "seconds?": lambda value: value is None or (_is_time(value) and value > 0),
    "status": lambda value: type(value) is str and value in _KNOWN,
    "flag": lambda value: type(value) is bool or (type(value) is int and value in (0, 1)),
}
_EXPECTED: Final[Mapping[Kind, str]] = {
    "text": "text",
    "text?": "text or null",
    "time": "a time (finite epoch seconds)",
    "time?": "a time (finite epoch seconds) or null",
    "count": "a whole number >= 0",
    "count?": "a whole number >= 0 or null",
    "seconds?": "a number of seconds > 0 or null",
    "status": f"one of {', '.join(STATUSES)}",
    "flag": "true or false",
}

Problems: TypeAlias = list[tuple[str, str]]


def _shown(kind: Kind, value: Any) -> str:
    """``value`` for an error message. Text columns may hold payloads: only their type."""
    if value is None:
        return "null"
    if kind in ("text", "text?"):
        return f"a value of type {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _problems(columns: Sequence[tuple[str, Kind]], values: Sequence[Any]) -> Problems:
    return [
        (name, f"{name} holds {_shown(kind, value)}, not {_EXPECTED[kind]}")
        for (name, kind), value in zip(columns, values, strict=True)
        if not _FITS[kind](value)
    ]


def _error(
    record: str, problems: Problems, *, execution_id: str | None = None
) -> CorruptRecordError:
    return CorruptRecordError(
        f"{record} cannot be read back: {'; '.join(problem for _, problem in problems)}",
        execution_id=execution_id,
        columns=tuple(dict.fromkeys(column for column, _ in problems)),
    )


# ---------------------------------------------------------------------- executions


def read_execution(values: Sequence[Any]) -> Execution:
    """The execution whose columns (in `EXECUTION_COLUMNS` order) are ``values``.

    Raises `CorruptRecordError` naming every column that does not fit, and the ones that
    contradict the status: a ``running`` execution needs an ``owner`` and a
    ``lease_until``; a ``waiting`` one a ``waiting_for`` or a ``wake_at`` (else nothing
    could ever wake it).
    """
    problems = _problems(EXECUTION_COLUMNS, values)
    status = values[_INDEX["status"]]
    if status == "running":
        for column in ("owner", "lease_until"):
            if values[_INDEX[column]] is None:
                problems.append((column, f"{column} is null, but the execution is running"))
    elif status == "waiting" and values[_INDEX["waiting_for"]] is values[_INDEX["wake_at"]] is None:
        problems.append(
            ("waiting_for", "waiting_for and wake_at are both null: nothing can wake it")
        )
    if not problems:
        return Execution(*values)
    execution_id = values[_INDEX["id"]]
    if type(execution_id) is str:
        raise _error(f"execution {execution_id!r}", problems, execution_id=execution_id)
    raise _error("an execution", problems)


def owned_by(row: Sequence[Any], worker: str) -> bool:
    """Whether ``worker`` holds the execution of ``row`` (its raw columns, in
    `EXECUTION_COLUMNS` order): the fence, which needs no other column to be readable."""
    return bool(row[_INDEX["status"]] == "running" and row[_INDEX["owner"]] == worker)


def failed_in_place(
    values: Sequence[Any], error: CorruptRecordError, *, execution_id: str, now: float
) -> Execution:
    """What an unreadable active execution becomes: ``failed``, its error saying what could
    not be read, every column that did not fit reset (null, 0, ``now``) so that it reads
    back, and nothing left that would make it runnable."""
    bad = set(error.columns)

    def kept(column: str, instead: Any) -> Any:
        return instead if column in bad else values[_INDEX[column]]

    return Execution(
        id=execution_id,
        workflow=kept("workflow", "(unreadable)"),
        input=kept("input", "null"),
        status="failed",
        error=f"{type(error).__name__}: {error}",
        attempt=kept("attempt", 0),
        idempotency_key=kept("idempotency_key", None),
        created_at=kept("created_at", now),
        updated_at=now,
    )


def execution_readable_sql(fits: Mapping[Kind, str]) -> str:
    """The SQL condition that an executions row reads back (`read_execution` in SQL).

    ``fits`` gives a store's condition per kind, with ``{c}`` for the column; kinds its
    column types already guarantee are left out.
    """
    terms = [fits[kind].format(c=name) for name, kind in EXECUTION_COLUMNS if kind in fits]
    terms.append("(status <> 'running' OR (owner IS NOT NULL AND lease_until IS NOT NULL))")
    terms.append("(status <> 'waiting' OR waiting_for IS NOT NULL OR wake_at IS NOT NULL)")
    return " AND ".join(terms)


# ---------------------------------------------------------------------- schedules and steps


@functools.lru_cache(maxsize=256)
def _valid_cron(line: str) -> bool:
    return bool(croniter.is_valid(line))


def read_schedule(values: Sequence[Any]) -> Schedule:
    """The schedule whose columns (in `Schedule` field order) are ``values``; raises
    `CorruptRecordError` naming what does not fit, including a cadence that is not exactly
    one of a valid cron line and an interval."""
    problems = _problems(_SCHEDULE_COLUMNS, values)
    schedule_id, _, _, _, cron, interval, paused, *_ = values
    if (cron is None) == (interval is None):
        both = "both null" if cron is None else "both set"
        problems.append(("cron", f"cron and interval are {both}: a schedule has one of them"))
    elif type(cron) is str and not _valid_cron(cron):
        problems.append(("cron", f"cron holds {_shown('status', cron)}, not a valid cron line"))
    if problems:
        shown = repr(schedule_id) if type(schedule_id) is str else "with an unreadable id"
        raise _error(f"schedule {shown}", problems)
    schedule = Schedule(*values)
    return schedule if type(paused) is bool else attrs.evolve(schedule, paused=bool(paused))


def split_schedules(
    rows: Iterable[Sequence[Any]],
) -> tuple[list[Schedule], list[tuple[Sequence[Any], CorruptRecordError]]]:
    """``rows`` of ``(key, *columns)``: the schedules that read back, and the rows (with
    their errors) of those that do not and are not paused yet, to be paused."""
    schedules: list[Schedule] = []
    to_pause: list[tuple[Sequence[Any], CorruptRecordError]] = []
    for row in rows:
        try:
            schedules.append(read_schedule(row[1:]))
        except CorruptRecordError as exc:
            if row[7] is not True and row[7] != 1:  # ``paused`` (1 is also True)
                to_pause.append((row, exc))
    return schedules, to_pause


_log = kernel_logger("kernel.durable")


def report_paused(error: CorruptRecordError) -> None:
    """Log that an unreadable schedule was paused (`ensure_schedule` replaces it)."""
    _log.error("{}; the schedule is paused until it is replaced", error)


def read_step(values: Sequence[Any]) -> StepRecord:
    """The step record whose columns (in `StepRecord` field order) are ``values``; raises
    `CorruptRecordError` naming what does not fit (and the execution)."""
    problems = _problems(_STEP_COLUMNS, values)
    if not problems:
        return StepRecord(*values)
    execution_id, step_id = values[0], values[1]
    step = repr(step_id) if type(step_id) is str else "with an unreadable id"
    record = f"step {step} of execution {execution_id!r}"  # (found by it: text)
    raise _error(record, problems, execution_id=execution_id)
