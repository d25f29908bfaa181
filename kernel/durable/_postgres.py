"""`PostgresStore`: the store protocol on PostgreSQL, for many workers on many machines.

psycopg 3's sync API and `psycopg_pool.ConnectionPool`, called from worker threads
(``trio.to_thread.run_sync`` with a `trio.CapacityLimiter` the size of the pool): psycopg's
async connections do not run under trio. Each method is one transaction; a thread is never
abandoned mid-transaction, so a cancelled call has either committed or written nothing.
Claims lock rows with ``FOR UPDATE SKIP LOCKED``, so concurrent workers never claim one
execution twice. The hot writes (a step and its audit line, a release, a start, the common
claim) are one statement each; writes that make work runnable or end it ``NOTIFY`` the
schema's channel, which `PostgresStore.watch` listens on. Driver errors become
`DurableError` (`StoreUnavailableError` when the server or the connection failed).

The column types hold what the records say, except what a time, a count or a status may not
be (NaN, infinities, negatives, a status whose CHECK was dropped): rows are checked as they
are read back (`kernel.durable._rows`), and claims look for such rows.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Final, Literal, LiteralString, TypeAlias, TypeVar

import attrs
import trio

from kernel.durable._errors import (
    CorruptRecordError,
    DurableError,
    LeaseLostError,
    SerializationError,
    StoreUnavailableError,
)
from kernel.durable._records import (
    ACTIVE,
    STATUSES,
    TERMINAL,
    AuditEntry,
    Execution,
    Schedule,
    Status,
    StepRecord,
    StoreStats,
)
from kernel.durable._rows import (
    EXECUTION_COLUMNS,
    execution_readable_sql,
    failed_in_place,
    owned_by,
    read_execution,
    read_schedule,
    read_step,
    report_paused,
    split_schedules,
)

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow
    from psycopg_pool import ConnectionPool

__all__ = ["SCHEMA_VERSION", "PostgresStore", "SynchronousCommit"]

_T = TypeVar("_T")

#: PostgreSQL's ``synchronous_commit`` for the store's sessions: ``"on"`` waits for each
#: commit to reach the disk (and the synchronous standbys); ``"off"`` does not (a server
#: crash may undo the last commits, up to three times ``wal_writer_delay``; a crash of the
#: worker process loses nothing); ``"local"``, ``"remote_write"``, ``"remote_apply"`` as
#: PostgreSQL says. None keeps the server's setting.
SynchronousCommit: TypeAlias = Literal["on", "off", "local", "remote_write", "remote_apply"]
_SYNCHRONOUS_COMMIT: Final = ("on", "off", "local", "remote_write", "remote_apply")

#: The schema this code writes (see `_MIGRATIONS`); a schema of a newer one is refused.
SCHEMA_VERSION: Final = 1
#: ``version: statements`` that take a schema of ``version - 1`` to ``version`` (``{s}`` is
#: the schema). Version 1 is that of the releases before the version table.
_MIGRATIONS: Final[dict[int, tuple[LiteralString, ...]]] = {}

#: The listen thread's longest wait for a notification before it looks at its stop flag
#: (so `close` ends it within this long), and its waits before reconnecting.
_LISTEN_POLL: Final = 0.1
_LISTEN_RETRY_FIRST: Final = 0.05
_LISTEN_RETRY_LONGEST: Final = 5.0

_MISSING_EXTRA: Final = (
    "PostgresStore needs psycopg 3 and psycopg-pool: pip install 'trio-runner[postgres]'"
)
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Column lists in the order of the record classes' fields, so a row is `Record(*row)`.
_EXECUTION: Final = (
    "id, workflow, input, status, result, error, attempt, wake_at, waiting_for, "
    "idempotency_key, owner, lease_until, created_at, updated_at"
)
_STEP: Final = "execution_id, step_id, position, result, completed_at"
_SCHEDULE: Final = (
    "id, workflow, input, next_run_at, cron, interval_seconds, paused, last_execution_id, "
    "created_at, updated_at"
)
_AUDIT: Final = "execution_id, kind, at, step_id, data, seq"
# Appends the audit line of a write in the write's own statement (one round trip): CTEs
# after the write's, fed by ``{source}`` (the rows written: one, or none when refused). One
# counter row per execution hands out seq 1, 2, ...; its row lock orders concurrent appends.
_AUDIT_CTES: Final = (
    ", counter AS (INSERT INTO {{s}}.audit_seq AS a (execution_id, last) "
    "SELECT id, 1 FROM {source} ON CONFLICT (execution_id) DO UPDATE SET last = a.last + 1 "
    "RETURNING execution_id, last), "
    "line AS (INSERT INTO {{s}}.audit (execution_id, kind, at, step_id, data, seq) "
    "SELECT execution_id, %(audit_kind)s::text, %(audit_at)s::float8, "
    "%(audit_step)s::text, %(audit_data)s::text, last FROM counter) "
)
_ASSIGN_ALL: Final = ", ".join(f"{name} = %s" for name, _ in EXECUTION_COLUMNS[1:])

# The time an active execution becomes claimable by time alone (MemoryStore's `_due`).
_DUE: Final = (
    "CASE status WHEN 'running' THEN lease_until WHEN 'waiting' THEN wake_at "
    "ELSE COALESCE(wake_at, updated_at) END"
)
_SIGNAL_BUFFERED: Final = (
    "EXISTS (SELECT 1 FROM {s}.signals AS g WHERE g.execution_id = e.id "
    "AND g.signal_id = e.waiting_for AND NOT g.consumed)"
)
_STATUSES: Final = ", ".join(f"'{status}'" for status in STATUSES)
_ACTIVE: Final = ", ".join(f"'{status}'" for status in STATUSES if status in ACTIVE)
# A time that reads back: finite (NaN compares above 'Infinity' in PostgreSQL).
_TIME: Final = "({c} > '-Infinity'::float8 AND {c} < 'Infinity'::float8)"
# `read_execution` in SQL; the column types guarantee the text columns.
_READABLE: Final = execution_readable_sql(
    {
        "time": _TIME,
        "time?": f"({{c}} IS NULL OR {_TIME})",
        "count": "{c} >= 0",
        "status": f"{{c}} IN ({_STATUSES})",
    }
)
_UNREADABLE: Final = f"NOT COALESCE({_READABLE}, false)"
_RUNNABLE: Final = (
    "((status = 'running' AND lease_until < %(now)s) "
    "OR (status IN ('pending', 'sleeping') AND COALESCE(wake_at, updated_at) <= %(now)s) "
    f"OR (status = 'waiting' AND (wake_at <= %(now)s OR {_SIGNAL_BUFFERED})))"
)

# ``{s}`` is the quoted schema. Text compared or sorted uses the "C" collation: code point
# order, as Python sorts, whatever the database's locale.
_SCHEMA: Final[tuple[LiteralString, ...]] = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    f"""CREATE TABLE IF NOT EXISTS {{s}}.executions (
        id TEXT COLLATE "C" PRIMARY KEY,
        workflow TEXT COLLATE "C" NOT NULL,
        input TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
        result TEXT,
        error TEXT,
        attempt BIGINT NOT NULL,
        wake_at DOUBLE PRECISION,
        waiting_for TEXT COLLATE "C",
        idempotency_key TEXT COLLATE "C" UNIQUE,
        owner TEXT COLLATE "C",
        lease_until DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS executions_created ON {s}.executions (created_at, id)",
    "CREATE INDEX IF NOT EXISTS executions_active ON {s}.executions (status) "
    "WHERE status IN ('pending', 'running', 'sleeping', 'waiting')",
    # Empty unless the CHECK on status was dropped: lets every claim look for such rows.
    "CREATE INDEX IF NOT EXISTS executions_unknown_status ON {s}.executions (status) "
    f"WHERE status NOT IN ({_STATUSES})",
    """CREATE TABLE IF NOT EXISTS {s}.steps (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        execution_id TEXT COLLATE "C" NOT NULL,
        step_id TEXT COLLATE "C" NOT NULL,
        position BIGINT,
        result TEXT NOT NULL,
        completed_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (execution_id, step_id)
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.signals (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        execution_id TEXT COLLATE "C" NOT NULL,
        signal_id TEXT COLLATE "C" NOT NULL,
        payload TEXT NOT NULL,
        sent_at DOUBLE PRECISION NOT NULL,
        consumed BOOLEAN NOT NULL DEFAULT false
    )""",
    "CREATE INDEX IF NOT EXISTS signals_buffered ON {s}.signals "
    "(execution_id, signal_id, seq) WHERE NOT consumed",
    """CREATE TABLE IF NOT EXISTS {s}.audit (
        execution_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        step_id TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.audit_seq (
        execution_id TEXT COLLATE "C" PRIMARY KEY,
        last BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.schedules (
        id TEXT COLLATE "C" PRIMARY KEY,
        workflow TEXT NOT NULL,
        input TEXT NOT NULL,
        next_run_at DOUBLE PRECISION NOT NULL,
        cron TEXT,
        interval_seconds DOUBLE PRECISION,
        paused BOOLEAN NOT NULL,
        last_execution_id TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
)


def _check_commit(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"PostgresStore: synchronous_commit must be a str, got {value!r}")
    if value not in _SYNCHRONOUS_COMMIT:
        raise ValueError(
            f"PostgresStore: synchronous_commit must be one of {', '.join(_SYNCHRONOUS_COMMIT)}"
            f" (or None), got {value!r}"
        )


def _check_schema(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _IDENTIFIER.fullmatch(value) or value.lower().startswith("pg_"):
        raise ValueError(
            f"schema must be a plain SQL identifier (a letter or _, then letters, digits or _; "
            f"at most 63 characters; not starting with pg_, which PostgreSQL reserves), "
            f"got {value!r}"
        )


def _target(dsn: str) -> str:
    """``host:port`` of ``dsn``, for error messages (never the password)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        raise ValueError(f"PostgresStore: invalid dsn: {exc}") from None
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}"


def _audit_entry(row: tuple[Any, ...]) -> AuditEntry:
    execution_id, kind, at, step_id, text, seq = row
    try:
        data = json.loads(text)
    except ValueError as exc:
        reason = str(exc)
    else:
        if isinstance(data, dict):
            return AuditEntry(execution_id, kind, at, step_id, data, seq)
        reason = f"expected a JSON object, got {type(data).__name__}"
    raise CorruptRecordError(
        f"audit entry {seq} of execution {execution_id!r} cannot be read back: {reason}"
    )


@attrs.define(eq=False)
class PostgresStore:
    """Executions, steps, signals, audit and schedules in PostgreSQL tables under ``schema``.

    ``dsn`` is a libpq connection string or URL; ``pool_size`` bounds both the connections
    and the threads running queries; ``connect_timeout`` (seconds) bounds connecting.
    `open` creates the schema and tables when missing (safe from several processes at
    once). Needs the ``postgres`` extra. See `kernel.durable.Store` for the methods.
    """

    _dsn: str = attrs.field(repr=False, alias="dsn")
    schema: str = attrs.field(default="durable", kw_only=True, validator=_check_schema)
    pool_size: int = attrs.field(default=8, kw_only=True, validator=attrs.validators.ge(1))
    connect_timeout: float = attrs.field(
        default=10.0, kw_only=True, validator=attrs.validators.gt(0)
    )
    synchronous_commit: SynchronousCommit | None = attrs.field(
        default=None, kw_only=True, validator=lambda _, __, value: _check_commit(value)
    )
    local: bool = attrs.field(default=False, init=False)
    _pool: ConnectionPool[Connection[TupleRow]] | None = attrs.field(
        default=None, init=False, repr=False
    )
    _limiter: trio.CapacityLimiter | None = attrs.field(default=None, init=False, repr=False)
    #: `_q`'s composed queries, by text (the schema is fixed for the store's life).
    _queries: dict[str, bytes] = attrs.field(factory=dict, init=False, repr=False)
    #: Signs this store's notifications, so that its listener ignores its own.
    _token: str = attrs.field(factory=lambda: secrets.token_hex(8), init=False, repr=False)
    _watchers: list[Callable[[], None]] = attrs.field(factory=list, init=False, repr=False)
    _listen: tuple[threading.Thread, threading.Event] | None = attrs.field(
        default=None, init=False, repr=False
    )
    _stopped: list[threading.Thread] = attrs.field(factory=list, init=False, repr=False)

    # ------------------------------------------------------------------ watching

    @property
    def _channel(self) -> str:
        """The channel writes notify on: one per schema (at most 63 bytes, as any name)."""
        return f"kernel_durable_{self.schema}"[:63]

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` in the trio thread after other processes' writes that can
        make an execution runnable or ended (``LISTEN``/``NOTIFY`` on one channel per
        schema, through a connection of its own in a thread of the store's), and once
        after each (re)connection of that thread, since writes may have been missed
        meanwhile. Returns the function that stops watching; `close` stops the thread."""
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open: await store.open() first")
        self._watchers.append(callback)
        if self._listen is None or self._listen[1].is_set():
            token = trio.lowlevel.current_trio_token()
            stop = threading.Event()
            thread = threading.Thread(
                target=self._listen_for_writes,
                args=(token, stop),
                name=f"kernel.durable.postgres-listen:{self.schema}",
                daemon=True,
            )
            if self._listen is not None:
                self._stopped.append(self._listen[0])
            self._listen = (thread, stop)
            thread.start()

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._watchers.remove(callback)
            if not self._watchers and self._listen is not None:
                self._listen[1].set()

        return unwatch

    def _notify(self) -> None:
        for callback in list(self._watchers):
            callback()

    def _listen_for_writes(self, token: trio.lowlevel.TrioToken, stop: threading.Event) -> None:
        """The listen thread: connect, LISTEN, pass notifications on; reconnect (backing
        off) when the connection fails, until told to stop."""
        import psycopg
        from psycopg import sql

        backoff = _LISTEN_RETRY_FIRST
        try:
            while not stop.is_set():
                try:
                    with psycopg.connect(
                        self._dsn,
                        autocommit=True,
                        connect_timeout=max(2, int(self.connect_timeout)),
                    ) as conn:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                        backoff = _LISTEN_RETRY_FIRST
                        token.run_sync_soon(self._notify)  # (what was written meanwhile)
                        while not stop.is_set():
                            for note in conn.notifies(timeout=_LISTEN_POLL):
                                if note.payload != self._token:
                                    token.run_sync_soon(self._notify)
                except psycopg.Error:
                    stop.wait(backoff)
                    backoff = min(backoff * 2, _LISTEN_RETRY_LONGEST)
        except trio.RunFinishedError:
            pass  # the trio run that watched has ended

    def _notifying(self) -> LiteralString:
        """A select-list item that notifies this schema's listeners at commit."""
        return "pg_notify(%(notify_channel)s, %(notify_token)s)"

    def _notice(self) -> dict[str, str]:
        return {"notify_channel": self._channel, "notify_token": self._token}

    def _notify_others(self, conn: Connection[TupleRow]) -> None:
        """Notify this schema's listeners (at commit; at once in autocommit)."""
        conn.execute(f"SELECT {self._notifying()}", self._notice())

    # ------------------------------------------------------------------ plumbing

    async def open(self) -> None:
        """Connect, create the schema and tables when missing and start the pool.

        Idempotent. Raises ImportError without the ``postgres`` extra and ConnectionError
        (naming host and port, never the password) when the server cannot be reached.
        Connects in a worker thread; a cancellation waits for that attempt to finish.
        """
        if self._pool is not None:
            await trio.lowlevel.checkpoint()
            return
        try:
            import psycopg
            import psycopg_pool
        except ImportError as exc:
            raise ImportError(_MISSING_EXTRA) from exc
        target = _target(self._dsn)
        timeout = max(2, math.ceil(self.connect_timeout))  # libpq's unit and minimum

        def connect() -> ConnectionPool[Connection[TupleRow]]:
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=timeout) as conn:
                    self._create_schema(conn)
                pool = psycopg_pool.ConnectionPool(
                    self._dsn,
                    kwargs={"autocommit": True, "connect_timeout": timeout},
                    configure=self._configure,
                    min_size=1,
                    max_size=self.pool_size,
                    open=True,
                    name=f"kernel.durable:{self.schema}",
                    timeout=self.connect_timeout,
                )
                pool.wait(timeout=self.connect_timeout)  # closes the pool when it fails
            except psycopg.OperationalError as exc:  # PoolTimeout is one too
                reason = str(exc).strip()
                raise ConnectionError(
                    f"PostgresStore cannot connect to PostgreSQL at {target}: {reason}"
                ) from None
            return pool

        opened = await trio.to_thread.run_sync(connect)
        self._limiter = trio.CapacityLimiter(self.pool_size)
        self._pool = opened

    def _configure(self, conn: Connection[TupleRow]) -> None:
        """Set up each new connection of the pool (its session's settings)."""
        if self.synchronous_commit is not None:
            conn.execute(
                "SELECT set_config('synchronous_commit', %s, false)", (self.synchronous_commit,)
            )

    def _create_schema(self, conn: Connection[TupleRow]) -> None:
        """Create the schema, or bring an older one to `SCHEMA_VERSION`; refuse a newer
        one (`DurableError` naming both versions)."""
        with conn.transaction():
            # Serializes concurrent opens: CREATE ... IF NOT EXISTS races otherwise.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"kernel.durable:{self.schema}",),
            )
            found = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                (f'"{self.schema}".schema_version', f'"{self.schema}".executions'),
            ).fetchone()
            has_version, has_tables = found if found is not None else (False, False)
            version = 1 if has_tables else 0
            if has_version:
                row = conn.execute(
                    self._q("SELECT MAX(version) FROM {s}.schema_version")
                ).fetchone()
                version = row[0] if row is not None and row[0] is not None else version
            if version > SCHEMA_VERSION:
                raise DurableError(
                    f"the PostgreSQL schema {self.schema!r} has schema version {version}; this "
                    f"version of trio-runner reads up to version {SCHEMA_VERSION}: upgrade "
                    f"trio-runner to open it"
                )
            for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    conn.execute(self._q(statement))
            for statement in _SCHEMA:  # (IF NOT EXISTS: what a migration made stays)
                conn.execute(self._q(statement))
            if not has_version or version < SCHEMA_VERSION:
                conn.execute(
                    self._q(
                        "CREATE TABLE IF NOT EXISTS {s}.schema_version (version INTEGER NOT NULL)"
                    )
                )
                conn.execute(self._q("DELETE FROM {s}.schema_version"))
                conn.execute(
                    self._q("INSERT INTO {s}.schema_version (version) VALUES (%s)"),
                    (SCHEMA_VERSION,),
                )

    async def close(self) -> None:
        """Stop the listen thread, close the pool's connections (waits for running
        queries). Idempotent."""
        listen, self._listen = self._listen, None
        threads, self._stopped = self._stopped, []
        if listen is not None:
            listen[1].set()
            threads.append(listen[0])
        pool, self._pool = self._pool, None
        if pool is None and not threads:
            await trio.lowlevel.checkpoint()
            return

        def close() -> None:
            for thread in threads:
                thread.join()
            if pool is not None:
                pool.close()

        await trio.to_thread.run_sync(close)

    def _q(self, text: LiteralString) -> bytes:
        """``text`` with ``{s}`` replaced by the quoted schema name, composed once per
        store and text (composing costs more than a point read's Python side)."""
        query = self._queries.get(text)
        if query is None:
            from psycopg import sql

            query = sql.SQL(text).format(s=sql.Identifier(self.schema)).as_bytes(None)
            self._queries[text] = query
        return query

    async def _run(self, work: Callable[[Connection[TupleRow]], _T], *, single: bool = False) -> _T:
        """``work(conn)`` in one transaction, in a worker thread.

        ``single``: ``work`` runs one statement, a transaction of its own in autocommit
        mode; skipping BEGIN and COMMIT saves two round trips.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("PostgresStore is not open: await store.open() first")

        import psycopg  # (imported by `open` already: a dict lookup)

        def transaction() -> _T:
            try:
                with pool.connection() as conn:
                    if single:
                        return work(conn)
                    with conn.transaction():
                        return work(conn)
            except psycopg.OperationalError as exc:  # the server or the connection failed
                # Drop the idle connections that died with it (a server restart kills them
                # all), so that the calls after this one get fresh ones.
                pool.check()
                raise StoreUnavailableError(
                    f"PostgresStore at {_target(self._dsn)}: {str(exc).strip()}"
                ) from exc
            except psycopg.Error as exc:  # the server refused the statement
                raise DurableError(
                    f"PostgresStore at {_target(self._dsn)}: {type(exc).__name__}: "
                    f"{str(exc).strip()}"
                ) from exc

        return await trio.to_thread.run_sync(transaction, limiter=self._limiter)

    def _fence(self, conn: Connection[TupleRow], execution_id: str, worker: str) -> None:
        """Lock the execution's row until commit, or raise LeaseLostError if not owned."""
        row = conn.execute(
            self._q(
                "SELECT 1 FROM {s}.executions "
                "WHERE id = %s AND status = 'running' AND owner = %s FOR UPDATE"
            ),
            (execution_id, worker),
        ).fetchone()
        if row is None:
            raise _lease_lost(execution_id, worker)

    # ------------------------------------------------------------------ executions

    def _create(self, conn: Connection[TupleRow], execution: Execution) -> TupleRow:
        """Insert ``execution`` unless its idempotency key is taken; the row that holds the
        key now (not read back: `fire_schedule` needs only its id)."""
        row = conn.execute(
            self._q(
                f"INSERT INTO {{s}}.executions ({_EXECUTION}) "
                f"VALUES ({', '.join(['%s'] * 14)}) ON CONFLICT DO NOTHING RETURNING {_EXECUTION}"
            ),
            attrs.astuple(execution, recurse=False),
        ).fetchone()
        if row is None and execution.idempotency_key is not None:
            row = conn.execute(
                self._q(f"SELECT {_EXECUTION} FROM {{s}}.executions WHERE idempotency_key = %s"),
                (execution.idempotency_key,),
            ).fetchone()
        if row is None:
            raise ValueError(f"execution id {execution.id!r} is already used")
        return row

    async def create_execution(
        self, execution: Execution, *, audit: AuditEntry | None = None
    ) -> Execution:
        if audit is None:

            def plain(conn: Connection[TupleRow]) -> Execution:
                row = self._create(conn, execution)
                if row[0] == execution.id:
                    self._notify_others(conn)
                return read_execution(row)

            return await self._run(plain)
        parameters = _audit_parameters(audit) | self._notice()
        parameters.update(
            zip(_EXECUTION.split(", "), attrs.astuple(execution, recurse=False), strict=True)
        )
        values = ", ".join(f"%({name})s" for name in _EXECUTION.split(", "))

        def work(conn: Connection[TupleRow]) -> Execution:
            # One statement: the insert and, when it inserted, its audit line.
            row = conn.execute(
                self._q(
                    f"WITH inserted AS (INSERT INTO {{s}}.executions ({_EXECUTION}) "
                    f"VALUES ({values}) ON CONFLICT DO NOTHING RETURNING {_EXECUTION})"
                    + _AUDIT_CTES.format(source="inserted")
                    + f"SELECT {_EXECUTION}, {self._notifying()} FROM inserted"
                ),
                parameters,
            ).fetchone()
            if row is None:  # the key (or the id) is taken: `_create` says which
                return read_execution(self._create(conn, execution))
            return read_execution(row[:-1])

        return await self._run(work, single=True)

    async def get_execution(self, execution_id: str) -> Execution | None:
        def work(conn: Connection[TupleRow]) -> Execution | None:
            row = conn.execute(
                self._q(f"SELECT {_EXECUTION} FROM {{s}}.executions WHERE id = %s"),
                (execution_id,),
            ).fetchone()
            return None if row is None else read_execution(row)

        return await self._run(work, single=True)

    async def list_executions(
        self, *, statuses: Collection[Status] | None = None, workflow: str | None = None
    ) -> list[Execution]:
        def work(conn: Connection[TupleRow]) -> list[Execution]:
            rows = conn.execute(
                self._q(
                    f"SELECT {_EXECUTION} FROM {{s}}.executions "
                    "WHERE (%(any_status)s OR status = ANY(%(statuses)s::text[])) "
                    "AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s) "
                    "ORDER BY created_at, id"
                ),
                {
                    "any_status": statuses is None,
                    "statuses": list(statuses or ()),
                    "workflow": workflow,
                },
            ).fetchall()
            executions = []
            for row in rows:
                with contextlib.suppress(CorruptRecordError):  # left out (see Store)
                    executions.append(read_execution(row))
            return executions

        return await self._run(work, single=True)

    async def claim(
        self, worker: str, *, now: float, lease_until: float, limit: int
    ) -> list[Execution]:
        parameters = {"now": now, "limit": max(limit, 0), "worker": worker, "lease": lease_until}

        def fast(conn: Connection[TupleRow]) -> list[Execution] | None:
            """The claim in one statement, when what it picks reads back (else nothing is
            written and None: `work` fails the unreadable ones where they stand)."""
            rows = conn.execute(
                self._q(
                    f"WITH picked AS (SELECT id, {_UNREADABLE} AS unreadable, "
                    f"COALESCE({_DUE}, %(now)s) AS due, created_at AS created "
                    f"FROM {{s}}.executions AS e "
                    f"WHERE (status IN ({_ACTIVE}) AND ({_RUNNABLE} OR {_UNREADABLE})) "
                    f"OR status NOT IN ({_STATUSES}) "
                    f"ORDER BY {_UNREADABLE} DESC, COALESCE({_DUE}, %(now)s), created_at, id "
                    "LIMIT %(limit)s FOR UPDATE OF e SKIP LOCKED), "
                    "bad AS (SELECT count(*) AS n FROM picked WHERE unreadable), "
                    "claimed AS (UPDATE {s}.executions AS x SET status = 'running', "
                    "owner = %(worker)s, lease_until = %(lease)s, wake_at = NULL, "
                    "waiting_for = NULL, updated_at = %(now)s FROM picked "
                    "WHERE x.id = picked.id AND (SELECT n FROM bad) = 0 "
                    f"RETURNING {', '.join(f'x.{c}' for c in _EXECUTION.split(', '))}, "
                    "picked.due, picked.created) "
                    "SELECT bad.n, claimed.* FROM bad LEFT JOIN claimed ON true"
                ),
                parameters,
            ).fetchall()
            if rows[0][0]:
                return None
            taken = sorted(
                (row[1:] for row in rows if row[1] is not None),
                key=lambda row: (row[-2], row[-1], row[0]),
            )
            claimed = []
            for *values, _, _ in taken:
                try:
                    claimed.append(read_execution(values))
                except CorruptRecordError as exc:  # (the SQL check let it through: ours now)
                    claimed.append(self._fail_unreadable(conn, values, exc, now))
            return claimed

        def work(conn: Connection[TupleRow]) -> list[Execution]:
            rows = conn.execute(
                self._q(
                    f"SELECT {_EXECUTION}, {_UNREADABLE} FROM {{s}}.executions AS e "
                    f"WHERE (status IN ({_ACTIVE}) AND ({_RUNNABLE} OR {_UNREADABLE})) "
                    f"OR status NOT IN ({_STATUSES}) "
                    f"ORDER BY {_UNREADABLE} DESC, COALESCE({_DUE}, %(now)s), created_at, id "
                    "LIMIT %(limit)s FOR UPDATE OF e SKIP LOCKED"
                ),
                {"now": now, "limit": max(limit, 0)},
            ).fetchall()
            order: list[str] = []  # the ids returned, in the claim's order
            outcome: dict[str, Execution] = {}
            for *values, unreadable in rows:
                try:
                    read_execution(values)
                except CorruptRecordError as exc:
                    outcome[values[0]] = self._fail_unreadable(conn, values, exc, now)
                    order.append(values[0])
                    continue
                if not unreadable:  # (so taken as runnable)
                    order.append(values[0])
            ids = [execution_id for execution_id in order if execution_id not in outcome]
            if ids:
                updated = conn.execute(
                    self._q(
                        "UPDATE {s}.executions SET status = 'running', owner = %s, "
                        "lease_until = %s, wake_at = NULL, waiting_for = NULL, updated_at = %s "
                        f"WHERE id = ANY(%s) RETURNING {_EXECUTION}"
                    ),
                    (worker, lease_until, now, ids),
                ).fetchall()
                outcome.update((row[0], read_execution(row)) for row in updated)
            return [outcome[execution_id] for execution_id in order]

        claimed = await self._run(fast, single=True)
        if claimed is not None:
            return claimed
        return await self._run(work)

    def _fail_unreadable(
        self,
        conn: Connection[TupleRow],
        values: list[Any],
        error: CorruptRecordError,
        now: float,
    ) -> Execution:
        """Fail the unreadable execution where it stands (see `failed_in_place`)."""
        failed = failed_in_place(values, error, execution_id=values[0], now=now)
        conn.execute(
            self._q(f"UPDATE {{s}}.executions SET {_ASSIGN_ALL} WHERE id = %s"),
            (*attrs.astuple(failed, recurse=False)[1:], failed.id),
        )
        return failed

    async def renew(self, execution_id: str, worker: str, *, lease_until: float) -> None:
        def work(conn: Connection[TupleRow]) -> None:
            cursor = conn.execute(
                self._q(
                    "UPDATE {s}.executions SET lease_until = %s "
                    "WHERE id = %s AND status = 'running' AND owner = %s"
                ),
                (lease_until, execution_id, worker),
            )
            if cursor.rowcount == 0:
                raise _lease_lost(execution_id, worker)

        await self._run(work, single=True)

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
        parameters = self._notice() | ({} if audit is None else _audit_parameters(audit))
        audit_ctes = "" if audit is None else _AUDIT_CTES.format(source="released")

        def work(conn: Connection[TupleRow]) -> Execution:
            row = conn.execute(
                self._q(
                    "WITH released AS ("
                    "UPDATE {s}.executions SET status = %(status)s, result = %(result)s, "
                    "error = %(error)s, wake_at = %(wake_at)s, waiting_for = %(waiting_for)s, "
                    "attempt = COALESCE(%(attempt)s, attempt), owner = NULL, "
                    "lease_until = NULL, updated_at = %(now)s "
                    "WHERE id = %(id)s AND status = 'running' AND owner = %(worker)s "
                    # What is not written must read back, or nothing is (as in SQLite).
                    f"AND COALESCE(%(attempt)s, attempt) >= 0 AND {_TIME.format(c='created_at')} "
                    f"RETURNING {_EXECUTION})"
                    + audit_ctes
                    + f"SELECT {_EXECUTION}, {self._notifying()} FROM released"
                ),
                {
                    **parameters,
                    "status": status,
                    "result": result,
                    "error": error,
                    "wake_at": wake_at,
                    "waiting_for": waiting_for,
                    "attempt": attempt,
                    "now": now,
                    "id": execution_id,
                    "worker": worker,
                },
            ).fetchone()
            if row is not None:
                return read_execution(row[:-1])
            # Not ours, or ours but unreadable (this second query only when refused).
            row = conn.execute(
                self._q(f"SELECT {_EXECUTION} FROM {{s}}.executions WHERE id = %s"),
                (execution_id,),
            ).fetchone()
            if row is not None and owned_by(row, worker):
                read_execution(row)  # raises CorruptRecordError
            raise _lease_lost(execution_id, worker)

        return await self._run(work, single=True)

    async def request_cancel(self, execution_id: str, *, now: float) -> Execution | None:
        def work(conn: Connection[TupleRow]) -> Execution | None:
            row = conn.execute(
                self._q(
                    "UPDATE {s}.executions SET status = 'cancelled', owner = NULL, "
                    "lease_until = NULL, wake_at = NULL, waiting_for = NULL, updated_at = %s "
                    f"WHERE id = %s AND status <> ALL(%s) RETURNING {_EXECUTION}"
                ),
                (now, execution_id, sorted(TERMINAL)),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    self._q(f"SELECT {_EXECUTION} FROM {{s}}.executions WHERE id = %s"),
                    (execution_id,),
                ).fetchone()
            else:
                self._notify_others(conn)
            return None if row is None else read_execution(row)

        return await self._run(work)

    async def next_due(self) -> float | None:
        def work(conn: Connection[TupleRow]) -> float | None:
            row = conn.execute(
                self._q(
                    f"SELECT MIN(due) FROM (SELECT {_DUE} AS due FROM {{s}}.executions "
                    "WHERE status = ANY(%s) "
                    "UNION ALL SELECT next_run_at FROM {s}.schedules WHERE NOT paused) AS t "
                    # An unreadable time is no answer (see SqliteStore.next_due).
                    f"WHERE {_TIME.format(c='due')}"
                ),
                (sorted(ACTIVE),),
            ).fetchone()
            due: float | None = row[0] if row is not None else None
            return due

        return await self._run(work, single=True)

    async def stats(self, *, now: float) -> StoreStats:
        def work(conn: Connection[TupleRow]) -> StoreStats:
            rows = conn.execute(
                self._q(
                    "SELECT status, count(*) FROM {s}.executions "
                    f"WHERE status IN ({_STATUSES}) GROUP BY status"
                )
            ).fetchall()
            row = conn.execute(
                self._q(
                    "SELECT count(*), MIN(CASE status WHEN 'running' THEN lease_until "
                    "WHEN 'waiting' THEN CASE WHEN wake_at <= %(now)s THEN wake_at ELSE ("
                    "SELECT MIN(sent_at) FROM {s}.signals AS g WHERE g.execution_id = e.id "
                    "AND g.signal_id = e.waiting_for AND NOT g.consumed) END "
                    "ELSE COALESCE(wake_at, updated_at) END) "
                    f"FROM {{s}}.executions AS e WHERE status IN ({_ACTIVE}) AND {_RUNNABLE} "
                    f"AND COALESCE({_READABLE}, false)"
                ),
                {"now": now},
            ).fetchone()
            due, oldest = row if row is not None else (0, None)
            return StoreStats(dict(rows), due, oldest)

        return await self._run(work)

    # ------------------------------------------------------------------ steps

    def _record(self, conn: Connection[TupleRow], step: StepRecord) -> None:
        conn.execute(
            self._q(
                f"INSERT INTO {{s}}.steps ({_STEP}) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (execution_id, step_id) DO NOTHING"
            ),
            attrs.astuple(step, recurse=False),
        )

    async def record_step(
        self, worker: str, step: StepRecord, *, audit: AuditEntry | None = None
    ) -> None:
        parameters = {} if audit is None else _audit_parameters(audit)
        parameters.update(attrs.asdict(step, recurse=False), worker=worker)
        audit_ctes = "" if audit is None else _AUDIT_CTES.format(source="fence")

        def work(conn: Connection[TupleRow]) -> None:
            # One statement: the fence (the execution's row locked, if ours), the step and
            # its audit line, both written only when the fence holds.
            row = conn.execute(
                self._q(
                    "WITH fence AS (SELECT id FROM {s}.executions WHERE id = %(execution_id)s "
                    "AND status = 'running' AND owner = %(worker)s FOR UPDATE), "
                    f"step AS (INSERT INTO {{s}}.steps ({_STEP}) "
                    "SELECT id, %(step_id)s::text, %(position)s::bigint, %(result)s::text, "
                    "%(completed_at)s::float8 FROM fence "
                    "ON CONFLICT (execution_id, step_id) DO NOTHING)"
                    + audit_ctes
                    + "SELECT count(*) FROM fence"
                ),
                parameters,
            ).fetchone()
            if row is None or row[0] == 0:
                raise _lease_lost(step.execution_id, worker)

        await self._run(work, single=True)

    async def list_step_results(self, execution_id: str) -> list[StepRecord]:
        def work(conn: Connection[TupleRow]) -> list[StepRecord]:
            rows = conn.execute(
                self._q(f"SELECT {_STEP} FROM {{s}}.steps WHERE execution_id = %s ORDER BY seq"),
                (execution_id,),
            ).fetchall()
            return [read_step(row) for row in rows]

        return await self._run(work, single=True)

    # ------------------------------------------------------------------ signals

    async def send_signal(
        self, execution_id: str, signal_id: str, payload: str, *, now: float
    ) -> bool:
        def work(conn: Connection[TupleRow]) -> bool:
            cursor = conn.execute(
                self._q(
                    "INSERT INTO {s}.signals (execution_id, signal_id, payload, sent_at) "
                    "SELECT id, %s, %s, %s FROM {s}.executions WHERE id = %s"
                ),
                (signal_id, payload, now, execution_id),
            )
            if cursor.rowcount == 0:
                return False
            self._notify_others(conn)  # (after the insert's commit: autocommit)
            return True

        return await self._run(work, single=True)

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
        def work(conn: Connection[TupleRow]) -> str | None:
            self._fence(conn, execution_id, worker)  # also serializes consumers
            row = conn.execute(
                self._q(
                    "UPDATE {s}.signals SET consumed = true WHERE seq = ("
                    "SELECT seq FROM {s}.signals WHERE execution_id = %s AND signal_id = %s "
                    "AND NOT consumed ORDER BY seq LIMIT 1) RETURNING seq, payload"
                ),
                (execution_id, signal_id),
            ).fetchone()
            if row is None:
                return None
            seq, payload = row
            try:
                value = json.loads(payload)
            except ValueError as exc:
                raise CorruptRecordError(
                    f"signal {signal_id!r} (#{seq}) of execution {execution_id!r} cannot be "
                    f"read back: {exc}"
                ) from None
            result = json.dumps({"kind": "signal", "payload": value})
            self._record(conn, StepRecord(execution_id, step_id, position, result, now))
            return result

        return await self._run(work)

    # ------------------------------------------------------------------ audit

    async def append_audit(self, entry: AuditEntry) -> None:
        parameters = _audit_parameters(entry)
        parameters["id"] = entry.execution_id

        def work(conn: Connection[TupleRow]) -> None:
            conn.execute(
                self._q(
                    "WITH source AS (SELECT %(id)s::text AS id)"
                    + _AUDIT_CTES.format(source="source")
                    + "SELECT 1"
                ),
                parameters,
            )

        await self._run(work, single=True)

    async def list_audit_entries(self, execution_id: str) -> list[AuditEntry]:
        def work(conn: Connection[TupleRow]) -> list[AuditEntry]:
            rows = conn.execute(
                self._q(f"SELECT {_AUDIT} FROM {{s}}.audit WHERE execution_id = %s ORDER BY seq"),
                (execution_id,),
            ).fetchall()
            return [_audit_entry(row) for row in rows]

        return await self._run(work, single=True)

    # ------------------------------------------------------------------ schedules

    async def put_schedule(self, schedule: Schedule) -> Schedule:
        def work(conn: Connection[TupleRow]) -> None:
            conn.execute(
                self._q(
                    f"INSERT INTO {{s}}.schedules ({_SCHEDULE}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
                    "SET workflow = EXCLUDED.workflow, input = EXCLUDED.input, "
                    "next_run_at = EXCLUDED.next_run_at, cron = EXCLUDED.cron, "
                    "interval_seconds = EXCLUDED.interval_seconds, paused = EXCLUDED.paused, "
                    "last_execution_id = EXCLUDED.last_execution_id, "
                    "created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
                ),
                attrs.astuple(schedule, recurse=False),
            )
            self._notify_others(conn)

        await self._run(work)
        return schedule

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        def work(conn: Connection[TupleRow]) -> Schedule | None:
            row = conn.execute(
                self._q(f"SELECT {_SCHEDULE} FROM {{s}}.schedules WHERE id = %s"),
                (schedule_id,),
            ).fetchone()
            return None if row is None else read_schedule(row)

        return await self._run(work, single=True)

    async def list_schedules(self) -> list[Schedule]:
        rows = await self._run(
            lambda conn: conn.execute(
                self._q(f"SELECT id, {_SCHEDULE} FROM {{s}}.schedules ORDER BY id")
            ).fetchall(),
            single=True,
        )
        schedules, to_pause = split_schedules(rows)
        if to_pause:
            keys = [(row[0], row[-1]) for row, _ in to_pause]

            def pause(conn: Connection[TupleRow]) -> None:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        self._q(
                            "UPDATE {s}.schedules SET paused = true "
                            # Unless it was replaced meanwhile (a new updated_at).
                            "WHERE id = %s AND updated_at IS NOT DISTINCT FROM %s"
                        ),
                        keys,
                    )

            await self._run(pause)
            for _, error in to_pause:
                report_paused(error)
        return schedules

    async def delete_schedule(self, schedule_id: str) -> bool:
        def work(conn: Connection[TupleRow]) -> bool:
            cursor = conn.execute(
                self._q("DELETE FROM {s}.schedules WHERE id = %s"), (schedule_id,)
            )
            return cursor.rowcount > 0

        return await self._run(work, single=True)

    async def fire_schedule(
        self, schedule_id: str, *, due: float, next_run_at: float, execution: Execution
    ) -> bool:
        def work(conn: Connection[TupleRow]) -> bool:
            row = conn.execute(
                self._q(
                    "SELECT 1 FROM {s}.schedules "
                    "WHERE id = %s AND NOT paused AND next_run_at = %s FOR UPDATE"
                ),
                (schedule_id, due),
            ).fetchone()
            if row is None:
                return False
            created = self._create(conn, execution)
            conn.execute(
                self._q(
                    "UPDATE {s}.schedules SET next_run_at = %s, last_execution_id = %s, "
                    "updated_at = %s WHERE id = %s"
                ),
                (next_run_at, created[0], execution.created_at, schedule_id),
            )
            self._notify_others(conn)
            return True

        return await self._run(work)


def _audit_parameters(entry: AuditEntry) -> dict[str, Any]:
    """``entry`` as `_AUDIT_CTES` parameters (its execution comes from the CTEs' source);
    SerializationError when its data is not JSON, raised before anything is sent."""
    try:
        data = json.dumps(dict(entry.data), separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"audit entry {entry.kind!r} of execution {entry.execution_id!r} cannot be "
            f"stored as JSON: {exc}"
        ) from exc
    return {
        "audit_kind": entry.kind,
        "audit_at": entry.at,
        "audit_step": entry.step_id,
        "audit_data": data,
    }


def _lease_lost(execution_id: str, worker: str) -> LeaseLostError:
    return LeaseLostError(f"worker {worker!r} no longer owns execution {execution_id!r}")
