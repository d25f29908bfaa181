"""`SqliteStore`: the store protocol in one SQLite file, shared by the processes opening it.

Every call runs on the store's one connection, one call at a time: on the event loop when
it cannot wait (a point read; a write with ``synchronous="normal"``, never waiting for a
lock), else in the store's thread (see `SqliteStore` and ``docs/decisions.md``). Every
write is one ``BEGIN IMMEDIATE`` transaction, so processes sharing the file take the write
lock in turn and two claims never hand out the same execution. A call is not abandoned
when cancelled: its transaction commits or rolls back, then the cancellation is delivered.
`SqliteStore.watch` tells this process's engine about other processes' writes.

SQLite keeps any value in any column (a column's type is only an affinity), so rows are
checked as they are read back (`kernel.durable._rows`), and the claim looks for unreadable
active rows with ``typeof`` (see `_UNREADABLE`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

import attrs
import trio

from kernel.durable._errors import (
    CorruptRecordError,
    DurableError,
    LeaseLostError,
    SerializationError,
)
from kernel.durable._records import (
    ACTIVE,
    STATUSES,
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
    execution_readable_sql,
    failed_in_place,
    owned_by,
    read_execution,
    read_schedule,
    read_step,
    report_paused,
    split_schedules,
)
from resilience import validate

__all__ = ["SCHEMA_VERSION", "WATCH_INTERVAL", "SqliteStore", "Synchronous"]

T = TypeVar("T")

#: How each commit reaches the disk: ``"normal"`` hands it to the operating system (a
#: process crash or SIGKILL loses nothing; a power cut or OS crash may undo the last
#: commits); ``"full"`` fsyncs it (survives those too, at ~0.5 ms or more per commit).
Synchronous: TypeAlias = Literal["normal", "full"]
_SYNCHRONOUS: Final = ("normal", "full")

#: The schema this code writes (see `_MIGRATIONS`). A file of a newer one is refused.
SCHEMA_VERSION: Final = 1
#: ``version: statements`` that take a file of ``version - 1`` to ``version``. Version 1
#: is the schema of the releases before the version table, which files without that table
#: have: stamped 1 when they open.
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {}

#: A listing read on the event loop stops after this many rows; a longer one is read again
#: in the store's thread (so an inline call is bounded by its size, never by the data).
_INLINE_ROWS: Final = 256
#: Commits between WAL checkpoints (SQLite's automatic one is off: it would run inside a
#: commit on the event loop). The checkpoint runs in the store's thread, after a commit.
_CHECKPOINT_EVERY: Final = 500
#: Seconds between two looks of the watch thread at the file's change counter (``PRAGMA
#: data_version``, a few microseconds): another process's write wakes this one's engine
#: within about this long, and at most this often, however many writes there are.
WATCH_INTERVAL: Final = 0.005

_EXECUTION_FIELDS: Final = tuple(field.name for field in attrs.fields(Execution))
_EXECUTION_COLUMNS: Final = ", ".join(_EXECUTION_FIELDS)
_SCHEDULE_FIELDS: Final = tuple(field.name for field in attrs.fields(Schedule))
_SCHEDULE_COLUMNS: Final = ", ".join(_SCHEDULE_FIELDS)
_STATUSES: Final = ", ".join(f"'{status}'" for status in STATUSES)
_ACTIVE: Final = ", ".join(f"'{status}'" for status in STATUSES if status in ACTIVE)

_SCHEMA: Final = (
    f"""CREATE TABLE IF NOT EXISTS executions (
        id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        input TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ({_STATUSES})),
        result TEXT,
        error TEXT,
        attempt INTEGER NOT NULL,
        wake_at REAL,
        waiting_for TEXT,
        idempotency_key TEXT UNIQUE,
        owner TEXT,
        lease_until REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS executions_wake ON executions (status, wake_at)",
    "CREATE INDEX IF NOT EXISTS executions_lease ON executions (status, lease_until)",
    "CREATE INDEX IF NOT EXISTS executions_created ON executions (created_at, id)",
    "CREATE INDEX IF NOT EXISTS executions_workflow ON executions (workflow, created_at)",
    # Empty unless the CHECK on status was bypassed: lets every claim look for such rows.
    f"""CREATE INDEX IF NOT EXISTS executions_unknown_status ON executions (status)
        WHERE status NOT IN ({_STATUSES})""",
    """CREATE TABLE IF NOT EXISTS steps (
        execution_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        position INTEGER,
        result TEXT NOT NULL,
        completed_at REAL NOT NULL,
        PRIMARY KEY (execution_id, step_id)
    )""",
    "CREATE INDEX IF NOT EXISTS steps_seq ON steps (execution_id, seq)",
    """CREATE TABLE IF NOT EXISTS signals (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        execution_id TEXT NOT NULL,
        signal_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        consumed INTEGER NOT NULL DEFAULT 0 CHECK (consumed IN (0, 1)),
        sent_at REAL NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS signals_unconsumed
        ON signals (execution_id, signal_id, seq) WHERE consumed = 0""",
    """CREATE TABLE IF NOT EXISTS audit (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        step_id TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS schedules (
        id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        input TEXT NOT NULL,
        next_run_at REAL NOT NULL,
        cron TEXT,
        interval REAL,
        paused INTEGER NOT NULL CHECK (paused IN (0, 1)),
        last_execution_id TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS schedules_due ON schedules (paused, next_run_at)",
)

# A time that reads back: a REAL (never NaN in SQLite, which stores NaN as NULL) that is
# finite (9e999 is SQLite's infinity).
_TIME: Final = "(typeof({c}) = 'real' AND abs({c}) < 9e999)"
# `read_execution` in SQL: true for a row it reads back.
_READABLE: Final = execution_readable_sql(
    {
        "text": "typeof({c}) = 'text'",
        "text?": "typeof({c}) IN ('text', 'null')",
        "time": _TIME,
        "time?": f"({{c}} IS NULL OR {_TIME})",
        "count": "(typeof({c}) = 'integer' AND {c} >= 0)",
        "status": f"{{c}} IN ({_STATUSES})",
    }
)
_UNREADABLE: Final = f"NOT IFNULL({_READABLE}, 0)"
# Runnable at :now (see `Store.claim`).
_RUNNABLE: Final = """(
       (status IN ('pending', 'sleeping') AND COALESCE(wake_at, updated_at) <= :now)
    OR (status = 'waiting' AND (wake_at <= :now OR EXISTS (
           SELECT 1 FROM signals
           WHERE signals.execution_id = executions.id
             AND signals.signal_id = executions.waiting_for AND signals.consumed = 0)))
    OR (status = 'running' AND lease_until < :now))"""
# What a claim takes: runnable executions, and unreadable active ones (whatever their lease)
# or ones of an unknown status, to fail them; those first, then the earliest due. (A UNION,
# not an OR, so that each half keeps its index.)
_CLAIM: Final = f"""
    SELECT row_key, unreadable, {_EXECUTION_COLUMNS} FROM (
        SELECT rowid AS row_key, {_UNREADABLE} AS unreadable, {_EXECUTION_COLUMNS}
        FROM executions
        WHERE status IN ({_ACTIVE}) AND ({_RUNNABLE} OR {_UNREADABLE})
        UNION ALL
        SELECT rowid, 1, {_EXECUTION_COLUMNS} FROM executions
        WHERE status NOT IN ({_STATUSES})
    )
    ORDER BY unreadable DESC,
             CASE status
                 WHEN 'running' THEN lease_until
                 WHEN 'waiting' THEN COALESCE(wake_at, :now)
                 ELSE COALESCE(wake_at, updated_at)
             END, created_at, id
    LIMIT :limit
"""

# The backlog (see `StoreStats`): readable runnable rows, and since when each is runnable.
_DUE_SINCE: Final = f"""
    SELECT count(*), MIN(CASE status
        WHEN 'running' THEN lease_until
        WHEN 'waiting' THEN CASE WHEN wake_at <= :now THEN wake_at ELSE (
            SELECT MIN(sent_at) FROM signals
            WHERE signals.execution_id = executions.id
              AND signals.signal_id = executions.waiting_for AND signals.consumed = 0) END
        ELSE COALESCE(wake_at, updated_at) END)
    FROM executions WHERE status IN ({_ACTIVE}) AND {_RUNNABLE} AND IFNULL({_READABLE}, 0)
"""
_BY_STATUS: Final = (
    f"SELECT status, count(*) FROM executions WHERE status IN ({_STATUSES}) GROUP BY status"
)

# An unreadable time is no answer: the claim fails its execution, or the schedule is paused.
_NEXT_DUE: Final = f"""
    SELECT MIN(due) FROM (
        SELECT COALESCE(wake_at, updated_at) AS due FROM executions
            WHERE status IN ('pending', 'sleeping')
        UNION ALL SELECT wake_at FROM executions WHERE status = 'waiting'
        UNION ALL SELECT lease_until FROM executions WHERE status = 'running'
        UNION ALL SELECT next_run_at FROM schedules WHERE paused = 0
    ) WHERE {_TIME.format(c="due")}
"""

# Steps keep the order they were recorded in: seq counts per execution.
_INSERT_STEP: Final = """
    INSERT INTO steps (execution_id, step_id, seq, position, result, completed_at)
    VALUES (:execution_id, :step_id,
            (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE execution_id = :execution_id),
            :position, :result, :completed_at)
    ON CONFLICT (execution_id, step_id) DO NOTHING
"""


# A step recorded only while ``:worker`` owns its running execution (the fence in the same
# statement); no row inserted: fenced out, or recorded already (`_fenced` tells which).
_INSERT_FENCED_STEP: Final = """
    INSERT INTO steps (execution_id, step_id, seq, position, result, completed_at)
    SELECT :execution_id, :step_id,
           (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE execution_id = :execution_id),
           :position, :result, :completed_at
    WHERE EXISTS (SELECT 1 FROM executions
                  WHERE id = :execution_id AND status = 'running' AND owner = :worker)
    ON CONFLICT (execution_id, step_id) DO NOTHING
"""
_UPDATE: Final = (
    f"UPDATE executions SET {', '.join(f'{name} = ?' for name in _EXECUTION_FIELDS[1:])} "
    "WHERE id = ?"
)

_INSERT_AUDIT: Final = """
    INSERT INTO audit (execution_id, seq, kind, at, step_id, data)
    VALUES (:execution_id,
            (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit WHERE execution_id = :execution_id),
            :kind, :at, :step_id, :data)
"""


def _fspath(path: str | os.PathLike[str]) -> str:
    return os.fspath(path)


def _enter_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, waiting up to ``timeout`` for other connections: SQLite answers
    SQLITE_BUSY to a journal-mode change at once, without its busy handler, while another
    process opening the same fresh file holds its lock (two workers starting together)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() >= deadline:
                raise
        time.sleep(0.005)


def _check_busy_timeout(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    validate.seconds(value, owner="SqliteStore", name="busy_timeout", minimum="zero", finite=True)


def _check_synchronous(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"SqliteStore: synchronous must be a str, got {value!r}")
    if value not in _SYNCHRONOUS:
        raise ValueError(f"SqliteStore: synchronous must be 'normal' or 'full', got {value!r}")


def _locked(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc)


def _audit_values(entry: AuditEntry) -> dict[str, object]:
    """``entry`` as `_INSERT_AUDIT` parameters (SerializationError when its data is not
    JSON: raised before any transaction starts)."""
    try:
        data = json.dumps(dict(entry.data))
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"audit data of execution {entry.execution_id!r} cannot be stored as JSON: {exc}"
        ) from exc
    return {
        "execution_id": entry.execution_id,
        "kind": entry.kind,
        "at": entry.at,
        "step_id": entry.step_id,
        "data": data,
    }


def _migrate(connection: sqlite3.Connection, path: str) -> None:
    """Create the schema, or bring an older one to `SCHEMA_VERSION` (inside the open's
    transaction); refuse a newer one."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if "schema_version" in tables:
        row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
        version = row[0] if row is not None else None
        if type(version) is not int:
            raise DurableError(
                f"the SQLite store {path!r} has an unreadable schema version ({version!r})"
            )
    else:
        version = 1 if "executions" in tables else 0
    if version > SCHEMA_VERSION:
        raise DurableError(
            f"the SQLite store {path!r} has schema version {version}; this version of "
            f"trio-runner reads up to version {SCHEMA_VERSION}: upgrade trio-runner to open it"
        )
    for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[target]:
            connection.execute(statement)
    for statement in _SCHEMA:  # (IF NOT EXISTS: what a migration made stays)
        connection.execute(statement)
    if "schema_version" not in tables or version < SCHEMA_VERSION:
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        connection.execute("DELETE FROM schema_version")
        connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


def _row(connection: sqlite3.Connection, execution_id: str) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = connection.execute(
        f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
    ).fetchone()
    return row


def _get(connection: sqlite3.Connection, execution_id: str) -> Execution | None:
    row = _row(connection, execution_id)
    return None if row is None else read_execution(row)


def _fenced(connection: sqlite3.Connection, execution_id: str, worker: str) -> tuple[Any, ...]:
    """The execution's row, or LeaseLostError unless ``worker`` owns it while ``running``
    (checked on the raw row: a fence needs no other column to be readable)."""
    row = _row(connection, execution_id)
    if row is None or not owned_by(row, worker):
        raise LeaseLostError(f"worker {worker!r} no longer owns execution {execution_id!r}")
    return row


def _update(connection: sqlite3.Connection, execution: Execution) -> Execution:
    values = attrs.astuple(execution, recurse=False)
    connection.execute(_UPDATE, (*values[1:], values[0]))
    return execution


def _create(connection: sqlite3.Connection, execution: Execution) -> tuple[Any, ...]:
    """Insert ``execution`` unless its idempotency key is taken; the row that holds the key
    now (not read back: `fire_schedule` needs only its id)."""
    key = execution.idempotency_key
    if key is not None:
        row: tuple[Any, ...] | None = connection.execute(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if row is not None:
            return row
    if _row(connection, execution.id) is not None:
        raise ValueError(f"execution id {execution.id!r} is already used")
    placeholders = ", ".join("?" for _ in _EXECUTION_FIELDS)
    values = attrs.astuple(execution, recurse=False)
    connection.execute(
        f"INSERT INTO executions ({_EXECUTION_COLUMNS}) VALUES ({placeholders})", values
    )
    return values


def _fail_unreadable(
    connection: sqlite3.Connection,
    rowid: int,
    row: tuple[Any, ...],
    error: CorruptRecordError,
    now: float,
) -> Execution:
    """Fail the unreadable execution at ``rowid`` where it stands (see `failed_in_place`);
    one whose id is not text gets the id ``unreadable-<rowid>``."""
    execution_id = row[0] if type(row[0]) is str else f"unreadable-{rowid}"
    failed = failed_in_place(row, error, execution_id=execution_id, now=now)
    assignments = ", ".join(f"{name} = ?" for name in _EXECUTION_FIELDS)
    connection.execute(
        f"UPDATE executions SET {assignments} WHERE rowid = ?",
        (*attrs.astuple(failed, recurse=False), rowid),
    )
    return failed


def _insert_step(connection: sqlite3.Connection, step: StepRecord) -> None:
    connection.execute(_INSERT_STEP, attrs.asdict(step, recurse=False))


def _insert_audit(connection: sqlite3.Connection, values: dict[str, object] | None) -> None:
    if values is not None:
        connection.execute(_INSERT_AUDIT, values)


@attrs.frozen
class _Inline(Generic[T]):
    """What an inline call returned (None is a value too)."""

    value: T


def _audit_entry(row: tuple[Any, ...]) -> AuditEntry:
    execution_id, seq, kind, at, step_id, text = row
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    except ValueError as exc:
        raise CorruptRecordError(
            f"audit entry {seq} of execution {execution_id!r} cannot be read back: {exc}"
        ) from exc
    return AuditEntry(execution_id, kind, at, step_id, data, seq)


@attrs.define(eq=False)
class SqliteStore:
    """Durable executions in one SQLite file, which several processes may open at once.

    ``busy_timeout`` (seconds) is how long a call waits for another process's write
    transaction before failing with ``sqlite3.OperationalError`` ("database is locked").
    ``synchronous`` (`Synchronous`): ``"normal"`` (the default) survives a crash of the
    process, ``"full"`` also a power cut, at the cost of an fsync per commit.
    Nothing is opened before `open`. See `kernel.durable.Store` for the contract.

    How a call runs (see ``docs/decisions.md``): on the event loop when it can be quick,
    in the store's one thread when it may not be. A point read, and with ``"normal"`` a
    write (a sub-millisecond transaction: no fsync, WAL checkpoints moved out of commits),
    runs inline, never waiting for a lock (a busy timeout of 0); one that meets another
    process's lock, a listing longer than `_INLINE_ROWS`, a write with ``"full"`` and
    every WAL checkpoint run in the thread, waiting up to ``busy_timeout``.
    """

    path: str = attrs.field(converter=_fspath)
    busy_timeout: float = attrs.field(
        default=30.0, kw_only=True, converter=validate.to_seconds, validator=_check_busy_timeout
    )
    synchronous: Synchronous = attrs.field(
        default="normal", kw_only=True, validator=_check_synchronous
    )
    local: bool = attrs.field(default=False, init=False)
    _connection: sqlite3.Connection | None = attrs.field(default=None, init=False, repr=False)
    # One connection, used by one caller at a time: inline calls hold it (without waiting)
    # for their duration, thread calls for theirs.
    _limiter: trio.CapacityLimiter = attrs.field(
        factory=lambda: trio.CapacityLimiter(1), init=False, repr=False
    )
    #: The store's thread, for the calls that hold ``_limiter`` and may not run inline.
    _hop: trio.CapacityLimiter = attrs.field(
        factory=lambda: trio.CapacityLimiter(1), init=False, repr=False
    )
    #: Commits since the last WAL checkpoint.
    _commits: int = attrs.field(default=0, init=False, repr=False)
    _watchers: list[Callable[[], None]] = attrs.field(factory=list, init=False, repr=False)
    #: The watch thread and what stops it (see `watch`).
    _watch: tuple[threading.Thread, threading.Event] | None = attrs.field(
        default=None, init=False, repr=False
    )
    #: The store connection's change counter when the watchers were last told (it moves
    #: only with other connections' commits).
    _others_version: object = attrs.field(default=None, init=False, repr=False)
    #: Watch threads told to stop, for `close` to join.
    _stopped: list[threading.Thread] = attrs.field(factory=list, init=False, repr=False)

    # ------------------------------------------------------------------ watching

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` in the trio thread after writes to the file by other
        connections (other processes, and this store's own, seen by the watch thread's
        connection), within about `WATCH_INTERVAL`; return the function that stops
        watching. A thread of the store's looks at the file's change counter while
        anyone watches; `close` stops it. Raises `DurableError` when the file cannot be
        opened for watching."""
        self._open_connection()  # (raises when not open)
        self._watchers.append(callback)
        if self._watch is None or self._watch[1].is_set():
            try:
                # Opened here (a file open: bounded), so that no write after this call
                # goes unseen; used by the watch thread only, from now on.
                connection = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
                seen = connection.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:
                self._watchers.remove(callback)
                raise DurableError(f"cannot watch the SQLite store {self.path!r}: {exc}") from exc
            token = trio.lowlevel.current_trio_token()
            stop = threading.Event()
            thread = threading.Thread(
                target=self._watch_file,
                args=(connection, seen, token, stop),
                name=f"kernel.durable.sqlite-watch:{self.path}",
                daemon=True,
            )
            if self._watch is not None:
                self._stopped.append(self._watch[0])
            self._watch = (thread, stop)
            thread.start()

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._watchers.remove(callback)
            if not self._watchers and self._watch is not None:
                self._watch[1].set()  # (the thread ends within WATCH_INTERVAL; close joins)

        return unwatch

    def _notify(self) -> None:
        """In the trio thread, when the watch thread saw the file change: tell the
        watchers, unless only this store wrote. (The watch connection sees this store's
        own commits too; the store's connection sees only others', so its change counter
        tells which.) When a call holds the connection in the thread, tell them anyway."""
        connection = self._connection
        if connection is not None:
            try:
                self._limiter.acquire_nowait()
            except trio.WouldBlock:
                pass
            else:
                try:
                    version = connection.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    version = None
                finally:
                    self._limiter.release()
                if version is not None and version == self._others_version:
                    return  # only this store wrote
                self._others_version = version
        for callback in list(self._watchers):
            callback()

    def _watch_file(
        self,
        connection: sqlite3.Connection,
        seen: object,
        token: trio.lowlevel.TrioToken,
        stop: threading.Event,
    ) -> None:
        """The watch thread: tell the trio thread when the change counter moves."""
        try:
            while not stop.wait(WATCH_INTERVAL):
                try:
                    version = connection.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:  # (a passing failure: looked at again next time)
                    continue
                if version != seen:
                    seen = version
                    token.run_sync_soon(self._notify)
        except trio.RunFinishedError:
            pass  # the trio run that watched has ended
        finally:
            connection.close()

    # ------------------------------------------------------------------ plumbing

    def _open_connection(self) -> sqlite3.Connection:
        connection = self._connection
        if connection is None:
            raise RuntimeError(f"the SQLite store {self.path!r} is not open (call open() first)")
        return connection

    def _transaction(
        self, connection: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], write: bool
    ) -> T:
        if not write:
            return fn(connection)
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = fn(connection)
            connection.execute("COMMIT")
        except BaseException:
            connection.rollback()  # a no-op when no transaction is open any more
            raise
        self._commits += 1
        return result

    def _in_thread(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        connection = self._open_connection()
        connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        try:
            result = self._transaction(connection, fn, write)
            if self._commits >= _CHECKPOINT_EVERY:
                self._commits = 0
                # PASSIVE: never waits, never blocks another process's readers or writers.
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.execute("PRAGMA busy_timeout = 0")
        return result

    def _inline(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> _Inline[T] | None:
        """``fn`` run now on the event loop in its transaction, if that cannot wait (the
        caller holds the connection): None when it must go to the thread instead (another
        process holds the lock, a checkpoint is due, or commits fsync)."""
        if write and (self.synchronous == "full" or self._commits >= _CHECKPOINT_EVERY):
            return None
        try:
            return _Inline(self._transaction(self._open_connection(), fn, write))
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise
            return None  # (rolled back: run again in the thread, waiting for the lock)

    async def _call(
        self, fn: Callable[[sqlite3.Connection], T], write: bool, *, inline: bool = True
    ) -> T:
        """``fn`` in its transaction on the one connection, inline when it may be (see
        `_inline`), else in the store's thread. A call that finds the connection busy
        waits for it (in turn), then runs inline if it may: a call in the thread does
        not send the calls queued behind it to the thread too."""
        await trio.lowlevel.checkpoint_if_cancelled()
        limiter = self._limiter
        try:
            limiter.acquire_nowait()
            waited = False
        except trio.WouldBlock:
            await limiter.acquire()  # (a schedule point)
            waited = True
        try:
            done = self._inline(fn, write) if inline else None
            if done is None:
                # Not abandoned on cancellation (the default): the call finishes first.
                return await trio.to_thread.run_sync(
                    functools.partial(self._in_thread, fn, write), limiter=self._hop
                )
        finally:
            limiter.release()
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return done.value

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(fn, False)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction: all of it commits, or none."""
        return await self._call(fn, True)

    async def _rows(self, query: str, parameters: Any = ()) -> list[tuple[Any, ...]]:
        """The rows of a listing: inline when there are at most `_INLINE_ROWS` of them,
        else read again, all of them, in the thread."""

        def first(connection: sqlite3.Connection) -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = connection.execute(query, parameters).fetchmany(
                _INLINE_ROWS + 1
            )
            return rows

        def every(connection: sqlite3.Connection) -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = connection.execute(query, parameters).fetchall()
            return rows

        rows = await self._call(first, False)
        if len(rows) <= _INLINE_ROWS:
            return rows
        return await self._call(every, False, inline=False)

    def _connect(self) -> None:
        if self._connection is not None:
            return
        path = str(self.path)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"cannot open the SQLite store {path!r}: directory {directory!r} does not exist"
            )
        connection = None
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            _enter_wal(connection, self.busy_timeout)
            # In WAL mode, NORMAL hands each commit to the operating system before returning
            # (without an fsync): a completed step survives a crash or SIGKILL of this
            # process; only a power loss or OS crash may undo the last commits. FULL fsyncs
            # every commit to survive those too, at a cost per step.
            connection.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            # Checkpoints run in the store's thread (see `_in_thread`), not inside commits.
            connection.execute("PRAGMA wal_autocheckpoint = 0")
            # Several processes may open a fresh file at once: the write lock orders them.
            connection.execute("BEGIN IMMEDIATE")
            try:
                _migrate(connection, path)
            except BaseException:
                connection.rollback()
                raise
            connection.execute("COMMIT")
            connection.execute("PRAGMA busy_timeout = 0")  # inline calls never wait
        except sqlite3.Error as exc:
            if connection is not None:
                connection.close()
            raise DurableError(f"cannot open the SQLite store {path!r}: {exc}") from exc
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        self._connection = connection

    def _disconnect(self) -> None:
        watch, self._watch = self._watch, None
        threads, self._stopped = self._stopped, []
        if watch is not None:
            watch[1].set()
            threads.append(watch[0])
        for thread in threads:
            thread.join()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def open(self) -> None:
        """Open the file (created if missing), switch it to WAL, create the schema if missing.

        Idempotent. Blocks (in a worker thread) while another process holds the write lock.
        Raises `FileNotFoundError` when the file's directory does not exist and
        `DurableError` when the file cannot be opened as a SQLite database.
        """
        await trio.to_thread.run_sync(self._connect, limiter=self._limiter)

    async def close(self) -> None:
        """Close the connection (after the call in flight, if any). Shielded from
        cancellation, so the file is always released; closing twice is harmless."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._disconnect, limiter=self._limiter)

    # ------------------------------------------------------------------ executions

    async def create_execution(
        self, execution: Execution, *, audit: AuditEntry | None = None
    ) -> Execution:
        values = None if audit is None else _audit_values(audit)

        def create(connection: sqlite3.Connection) -> Execution:
            row = _create(connection, execution)
            if row[0] == execution.id:  # (not an execution holding its idempotency key)
                _insert_audit(connection, values)
            return read_execution(row)

        return await self._write(create)

    async def get_execution(self, execution_id: str) -> Execution | None:
        return await self._read(lambda connection: _get(connection, execution_id))

    async def list_executions(
        self, *, statuses: Collection[Status] | None = None, workflow: str | None = None
    ) -> list[Execution]:
        conditions: list[str] = []
        values: list[object] = []
        if statuses is not None:
            conditions.append(f"status IN ({', '.join('?' for _ in statuses)})")
            values.extend(statuses)
        if workflow is not None:
            conditions.append("workflow = ?")
            values.append(workflow)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        query = f"SELECT {_EXECUTION_COLUMNS} FROM executions {where} ORDER BY created_at, id"

        executions = []
        for row in await self._rows(query, values):
            with contextlib.suppress(CorruptRecordError):  # left out (see Store)
                executions.append(read_execution(row))
        return executions

    async def claim(
        self, worker: str, *, now: float, lease_until: float, limit: int
    ) -> list[Execution]:
        def claim(connection: sqlite3.Connection) -> list[Execution]:
            claimed = []
            for rowid, unreadable, *values in connection.execute(
                _CLAIM, {"now": now, "limit": limit}
            ).fetchall():
                row = tuple(values)
                try:
                    execution = read_execution(row)
                except CorruptRecordError as exc:
                    claimed.append(_fail_unreadable(connection, rowid, row, exc, now))
                    continue
                if not unreadable:  # (so taken as runnable)
                    taken = claimed_by(execution, worker, lease_until=lease_until, now=now)
                    claimed.append(_update(connection, taken))
            return claimed

        return await self._write(claim)

    async def renew(self, execution_id: str, worker: str, *, lease_until: float) -> None:
        def renew(connection: sqlite3.Connection) -> None:
            _fenced(connection, execution_id, worker)
            connection.execute(
                "UPDATE executions SET lease_until = ? WHERE id = ?", (lease_until, execution_id)
            )

        await self._write(renew)

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
        audit_values = None if audit is None else _audit_values(audit)

        def release(connection: sqlite3.Connection) -> Execution:
            # What the row becomes must read back (the columns written replace what they
            # held, as on PostgreSQL); else nothing is written. (The raw row, unchecked:
            # the record class takes any values.)
            row = _fenced(connection, execution_id, worker)
            updated = released(
                Execution(*row),
                status=status,
                now=now,
                result=result,
                error=error,
                wake_at=wake_at,
                waiting_for=waiting_for,
                attempt=attempt,
            )
            execution = _update(connection, read_execution(attrs.astuple(updated, recurse=False)))
            _insert_audit(connection, audit_values)
            return execution

        return await self._write(release)

    async def request_cancel(self, execution_id: str, *, now: float) -> Execution | None:
        def cancel(connection: sqlite3.Connection) -> Execution | None:
            execution = _get(connection, execution_id)
            if execution is None or execution.terminal:
                return execution
            return _update(connection, cancelled(execution, now=now))

        return await self._write(cancel)

    async def next_due(self) -> float | None:
        def next_due(connection: sqlite3.Connection) -> float | None:
            due: float | None = connection.execute(_NEXT_DUE).fetchone()[0]
            return due

        return await self._read(next_due)

    async def stats(self, *, now: float) -> StoreStats:
        """In the store's thread (it reads every row's status)."""

        def stats(connection: sqlite3.Connection) -> StoreStats:
            by_status = dict(connection.execute(_BY_STATUS).fetchall())
            due, oldest = connection.execute(_DUE_SINCE, {"now": now}).fetchone()
            return StoreStats(by_status, due, oldest)

        return await self._call(stats, False, inline=False)

    # ------------------------------------------------------------------ steps

    async def record_step(
        self, worker: str, step: StepRecord, *, audit: AuditEntry | None = None
    ) -> None:
        values = None if audit is None else _audit_values(audit)

        parameters = attrs.asdict(step, recurse=False)
        parameters["worker"] = worker

        def record(connection: sqlite3.Connection) -> None:
            if connection.execute(_INSERT_FENCED_STEP, parameters).rowcount == 0:
                _fenced(connection, step.execution_id, worker)  # (else: recorded already)
            _insert_audit(connection, values)

        await self._write(record)

    async def list_step_results(self, execution_id: str) -> list[StepRecord]:
        query = """SELECT execution_id, step_id, position, result, completed_at FROM steps
                   WHERE execution_id = ? ORDER BY seq"""
        return [read_step(row) for row in await self._rows(query, (execution_id,))]

    # ------------------------------------------------------------------ signals

    async def send_signal(
        self, execution_id: str, signal_id: str, payload: str, *, now: float
    ) -> bool:
        def send(connection: sqlite3.Connection) -> bool:
            if _get(connection, execution_id) is None:
                return False
            connection.execute(
                """INSERT INTO signals (execution_id, signal_id, payload, sent_at)
                   VALUES (?, ?, ?, ?)""",
                (execution_id, signal_id, payload, now),
            )
            return True

        return await self._write(send)

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
        def consume(connection: sqlite3.Connection) -> str | None:
            _fenced(connection, execution_id, worker)
            row = connection.execute(
                """SELECT seq, payload FROM signals
                   WHERE execution_id = ? AND signal_id = ? AND consumed = 0
                   ORDER BY seq LIMIT 1""",
                (execution_id, signal_id),
            ).fetchone()
            if row is None:
                return None
            seq, payload = row
            try:
                if type(payload) is not str:
                    raise ValueError(f"the payload is of type {type(payload).__name__}, not text")
                value = json.loads(payload)
            except ValueError as exc:
                raise CorruptRecordError(
                    f"signal {signal_id!r} of execution {execution_id!r} cannot be read back: {exc}"
                ) from exc
            connection.execute("UPDATE signals SET consumed = 1 WHERE seq = ?", (seq,))
            result = json.dumps({"kind": "signal", "payload": value})
            _insert_step(connection, StepRecord(execution_id, step_id, position, result, now))
            return result

        return await self._write(consume)

    # ------------------------------------------------------------------ audit

    async def append_audit(self, entry: AuditEntry) -> None:
        values = _audit_values(entry)
        await self._write(lambda connection: _insert_audit(connection, values))

    async def list_audit_entries(self, execution_id: str) -> list[AuditEntry]:
        query = """SELECT execution_id, seq, kind, at, step_id, data FROM audit
                   WHERE execution_id = ? ORDER BY seq"""
        return [_audit_entry(row) for row in await self._rows(query, (execution_id,))]

    # ------------------------------------------------------------------ schedules

    async def put_schedule(self, schedule: Schedule) -> Schedule:
        placeholders = ", ".join("?" for _ in _SCHEDULE_FIELDS)
        query = f"INSERT OR REPLACE INTO schedules ({_SCHEDULE_COLUMNS}) VALUES ({placeholders})"
        values = attrs.astuple(schedule, recurse=False)
        await self._write(lambda connection: connection.execute(query, values))
        return schedule

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        def get(connection: sqlite3.Connection) -> Schedule | None:
            row = connection.execute(
                f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)
            ).fetchone()
            return None if row is None else read_schedule(row)

        return await self._read(get)

    async def list_schedules(self) -> list[Schedule]:
        query = f"SELECT rowid, {_SCHEDULE_COLUMNS} FROM schedules ORDER BY id"
        rows = await self._rows(query)
        schedules, to_pause = split_schedules(rows)
        if to_pause:
            # Unless it was replaced meanwhile (a new updated_at).
            pause = "UPDATE schedules SET paused = 1 WHERE rowid = ? AND updated_at IS ?"
            keys = [(row[0], row[-1]) for row, _ in to_pause]
            await self._write(lambda connection: connection.executemany(pause, keys))
            for _, error in to_pause:
                report_paused(error)
        return schedules

    async def delete_schedule(self, schedule_id: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,))
            return cursor.rowcount > 0

        return await self._write(delete)

    async def fire_schedule(
        self, schedule_id: str, *, due: float, next_run_at: float, execution: Execution
    ) -> bool:
        def fire(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                """SELECT 1 FROM schedules
                   WHERE id = ? AND paused = 0 AND next_run_at = ?""",
                (schedule_id, due),
            )
            if cursor.fetchone() is None:
                return False
            created = _create(connection, execution)
            connection.execute(
                """UPDATE schedules SET next_run_at = ?, last_execution_id = ?, updated_at = ?
                   WHERE id = ?""",
                (next_run_at, created[0], execution.created_at, schedule_id),
            )
            return True

        return await self._write(fire)
