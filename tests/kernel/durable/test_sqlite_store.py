"""What only `SqliteStore` promises: a file that outlives the process and is shared by several.

Two `SqliteStore` instances on one file stand in for two processes: each has its own
connection and its own one-thread limiter, so only SQLite's locking keeps them apart.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kernel.durable import (
    STATUSES,
    AuditEntry,
    CorruptRecordError,
    DurableError,
    Execution,
    Schedule,
    SerializationError,
    SqliteStore,
    StepRecord,
    Store,
)
from kernel.durable._rows import read_execution
from kernel.durable._sqlite import (
    _CHECKPOINT_EVERY,
    _EXECUTION_FIELDS,
    _INLINE_ROWS,
    _SCHEMA,
    _UNREADABLE,
    SCHEMA_VERSION,
    Synchronous,
    _enter_wal,
)


def execution(execution_id: str, **fields: object) -> Execution:
    return Execution(id=execution_id, workflow="wf", input="{}", **fields)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "durable.sqlite3"


async def test_is_a_store_that_is_not_local(path: Path) -> None:
    store = SqliteStore(path)
    assert isinstance(store, Store)
    assert store.local is False
    assert store.path == str(path)
    assert not await trio.Path(path).exists()  # nothing is opened before open()


async def test_data_survives_close_and_reopen(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.create_execution(execution("e1", idempotency_key="k", created_at=1.0))
    [claimed] = await store.claim("w1", now=2.0, lease_until=12.0, limit=1)
    await store.record_step("w1", StepRecord("e1", "s1", 0, '"one"', 3.0))
    await store.send_signal("e1", "go", '"sig"', now=4.0)
    await store.send_signal("e1", "go", '"later"', now=4.0)
    await store.append_audit(AuditEntry("e1", "note", 5.0, data={"text": "hi"}))
    await store.put_schedule(Schedule("s", "wf", "{}", next_run_at=60.0, interval=60.0))
    await store.close()

    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert await reopened.get_execution("e1") == claimed
        again = await reopened.create_execution(execution("e2", idempotency_key="k"))
        assert again == claimed
        assert await reopened.list_step_results("e1") == [StepRecord("e1", "s1", 0, '"one"', 3.0)]
        text = await reopened.consume_signal("w1", "e1", "go", step_id="s2", position=1, now=6.0)
        assert text is not None
        assert json.loads(text) == {"kind": "signal", "payload": "sig"}
        [entry] = await reopened.list_audit_entries("e1")
        assert (entry.seq, entry.data) == (1, {"text": "hi"})
        assert await reopened.get_schedule("s") == Schedule(
            "s", "wf", "{}", next_run_at=60.0, interval=60.0
        )
    finally:
        await reopened.close()


async def test_steps_keep_their_order_across_reopen(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.create_execution(execution("e1"))
    await store.claim("w1", now=1.0, lease_until=100.0, limit=1)
    await store.record_step("w1", StepRecord("e1", "z", 0, "1", 2.0))
    await store.close()
    await store.open()  # the same instance opens again after a close
    await store.record_step("w1", StepRecord("e1", "a", 1, "2", 3.0))
    assert [s.step_id for s in await store.list_step_results("e1")] == ["z", "a"]
    await store.close()


class BusyAtFirst:
    """A connection whose first ``busy`` statements meet another connection's lock."""

    def __init__(self, busy: int, error: str = "SQLITE_BUSY") -> None:
        self.busy, self.error, self.statements = busy, error, 0

    def execute(self, statement: str) -> None:
        self.statements += 1
        if self.statements <= self.busy:
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorname = self.error  # type: ignore[misc]
            raise exc


def test_switching_to_wal_waits_for_another_opener_within_the_busy_timeout() -> None:
    waited = BusyAtFirst(busy=3)
    _enter_wal(waited, timeout=5.0)  # type: ignore[arg-type]
    assert waited.statements == 4
    for connection, timeout in (
        (BusyAtFirst(busy=1, error="SQLITE_CORRUPT"), 5.0),
        (BusyAtFirst(busy=10**6), 0.02),
    ):
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _enter_wal(connection, timeout=timeout)  # type: ignore[arg-type]


async def test_processes_opening_one_fresh_file_at_once_all_open(tmp_path: Path) -> None:
    # Switching a fresh file to WAL can meet another opener's lock with SQLITE_BUSY at once
    # (SQLite's deadlock avoidance calls no busy handler): on a loaded machine about one
    # round in 14 to 50 failed before the open waited for it.
    for round in range(40):
        stores = [SqliteStore(tmp_path / f"fresh{round}.sqlite3") for _ in range(4)]
        async with trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(store.open)
        for store in stores:
            await store.close()


async def test_two_stores_on_one_file_never_claim_the_same_execution(path: Path) -> None:
    stores = [SqliteStore(path), SqliteStore(path)]
    async with trio.open_nursery() as nursery:  # both create the schema at once
        for store in stores:
            nursery.start_soon(store.open)
    try:
        for n in range(40):
            await stores[n % 2].create_execution(execution(f"e{n:02}", wake_at=float(n % 5)))
        taken: dict[str, list[str]] = {}

        async def claimer(store: SqliteStore, worker: str) -> None:
            taken[worker] = []
            while batch := await store.claim(worker, now=10.0, lease_until=60.0, limit=2):
                taken[worker].extend(e.id for e in batch)

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(claimer, stores[n % 2], f"w{n}")
        every = sorted(execution_id for ids in taken.values() for execution_id in ids)
        assert every == [f"e{n:02}" for n in range(40)]
        for worker, ids in taken.items():
            for execution_id in ids:
                got = await stores[0].get_execution(execution_id)
                assert got is not None
                assert got.owner == worker
    finally:
        for store in stores:
            await store.close()


async def test_a_corrupt_audit_row_names_its_execution(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.append_audit(AuditEntry("e1", "note", 1.0, data={"ok": 1}))
        await store.append_audit(AuditEntry("e1", "note", 2.0, data={"ok": 2}))
        await store.append_audit(AuditEntry("e2", "note", 1.0, data={"ok": 3}))
        await store.append_audit(AuditEntry("e3", "note", 1.0, data={"ok": 4}))
        with closing(sqlite3.connect(path)) as raw, raw:
            raw.execute("UPDATE audit SET data = '{not json' WHERE execution_id = 'e1' AND seq = 2")
            raw.execute("UPDATE audit SET data = '[1, 2]' WHERE execution_id = 'e3'")
        raw.close()
        with pytest.raises(CorruptRecordError, match=r"audit entry 2 of execution 'e1'"):
            await store.list_audit_entries("e1")
        with pytest.raises(CorruptRecordError, match=r"'e3'.*expected a JSON object"):
            await store.list_audit_entries("e3")
        [entry] = await store.list_audit_entries("e2")  # other executions still read
        assert entry.data == {"ok": 3}
    finally:
        await store.close()


async def test_unstorable_audit_data_is_a_serialization_error(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        with pytest.raises(SerializationError, match="'e1'"):
            await store.append_audit(AuditEntry("e1", "note", 1.0, data={"x": object()}))
        assert await store.list_audit_entries("e1") == []
    finally:
        await store.close()


async def test_an_unreadable_signal_payload_fails_that_consume_only(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.create_execution(execution("e1"))
        await store.claim("w1", now=1.0, lease_until=100.0, limit=1)
        assert await store.send_signal("e1", "go", "{not json", now=2.0)  # opaque to the store
        with pytest.raises(CorruptRecordError, match=r"signal 'go' of execution 'e1'"):
            await store.consume_signal("w1", "e1", "go", step_id="s", position=0, now=3.0)
        # Nothing was written: no step, and the signal is still buffered.
        assert await store.list_step_results("e1") == []
        await store.release("e1", "w1", status="waiting", now=4.0, waiting_for="go")
        assert [e.id for e in await store.claim("w2", now=5.0, lease_until=9.0, limit=1)] == ["e1"]
    finally:
        await store.close()


async def test_a_failed_write_rolls_back_its_transaction(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.put_schedule(Schedule("s", "wf", "{}", next_run_at=10.0, interval=60.0))
        await store.create_execution(execution("taken"))
        with pytest.raises(ValueError, match="taken"):
            await store.fire_schedule(
                "s", due=10.0, next_run_at=20.0, execution=execution("taken", created_at=5.0)
            )
        assert await store.get_schedule("s") == Schedule(
            "s", "wf", "{}", next_run_at=10.0, interval=60.0
        )
        # The connection is usable: the transaction did not stay open.
        assert await store.fire_schedule(
            "s", due=10.0, next_run_at=20.0, execution=execution("fresh")
        )
    finally:
        await store.close()


async def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "durable.sqlite3"
    store = SqliteStore(missing)
    with pytest.raises(FileNotFoundError, match="does not exist") as caught:
        await store.open()
    assert str(missing) in str(caught.value)
    assert str(missing.parent) in str(caught.value)
    assert not (tmp_path / "no").exists()


async def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.sqlite3"
    bogus.write_bytes(b"this is not a SQLite database, " * 40)
    with pytest.raises(DurableError, match="not a database") as caught:
        await SqliteStore(bogus).open()
    assert str(bogus) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


async def test_a_path_sqlite_cannot_open_is_named(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with pytest.raises(DurableError, match="unable to open") as caught:
        await SqliteStore(directory).open()
    assert str(directory) in str(caught.value)


async def test_calls_before_open_or_after_close_raise(path: Path) -> None:
    store = SqliteStore(path)
    with pytest.raises(RuntimeError, match="not open"):
        await store.get_execution("e1")
    await store.open()
    await store.close()
    with pytest.raises(RuntimeError, match="not open"):
        await store.create_execution(execution("e1"))


async def test_open_and_close_are_idempotent(path: Path) -> None:
    store = SqliteStore(path)
    await store.close()  # never opened: nothing to do
    await store.open()
    await store.open()
    await store.create_execution(execution("e1"))
    await store.close()
    await store.close()
    other = SqliteStore(path)
    await other.open()  # the schema already exists
    assert await other.get_execution("e1") == execution("e1")
    await other.close()


async def test_the_file_is_in_wal_mode(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with closing(sqlite3.connect(path)) as raw, raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


async def test_close_in_a_cancelled_scope_still_closes(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    with trio.CancelScope() as scope:
        scope.cancel()
        await store.close()
    with pytest.raises(RuntimeError, match="not open"):
        await store.get_execution("e1")


async def test_a_cancelled_write_commits_or_not_never_half(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.create_execution(execution("never"))  # cancelled before it starts
        assert await store.get_execution("never") is None

        returned: list[Execution] = []

        async def write() -> None:
            returned.append(await store.create_execution(execution("done")))
            await trio.lowlevel.checkpoint()  # where the cancellation lands

        raw.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await trio.testing.wait_all_tasks_blocked()  # its thread is in flight
                scope.cancel()
                raw.execute("COMMIT")
        assert scope.cancelled_caught
        # The write in flight was not abandoned: it committed and returned, then the task
        # was cancelled at its next checkpoint.
        assert returned == [execution("done")]
        assert await store.get_execution("done") == execution("done")
    finally:
        raw.close()
        await store.close()


async def test_busy_timeout_bounds_the_wait_for_another_writer(path: Path) -> None:
    store = SqliteStore(path, busy_timeout=0)
    await store.open()
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await store.create_execution(execution("e1"))
        assert await store.list_executions() == []  # reads do not wait for writers
        raw.execute("COMMIT")
        await store.create_execution(execution("e1"))
        assert [e.id for e in await store.list_executions()] == ["e1"]
    finally:
        raw.close()
        await store.close()


async def test_an_execution_whose_id_is_not_text_is_failed_under_a_new_id(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        for execution_id in ("e1", "e2"):
            await store.create_execution(execution(execution_id))
        # (a TEXT PRIMARY KEY takes NULLs and blobs)
        with closing(sqlite3.connect(path)) as raw, raw:
            raw.execute("UPDATE executions SET id = NULL WHERE id = 'e1'")
            raw.execute("UPDATE executions SET id = X'6532' WHERE id = 'e2'")
        assert await store.list_executions() == []
        failed = await store.claim("w1", now=5.0, lease_until=9.0, limit=10)
        assert [(e.id, e.status) for e in failed] == [
            ("unreadable-1", "failed"),
            ("unreadable-2", "failed"),
        ]
        assert failed[0].error == (
            "CorruptRecordError: an execution cannot be read back: id holds null, not text"
        )
        assert failed[1].error is not None
        assert "id holds a value of type bytes, not text" in failed[1].error
        assert await store.get_execution("unreadable-2") == failed[1]
    finally:
        await store.close()


# What a column of SQLite can be made to hold: anything of any storage class.
_ANY_VALUE = (
    st.none()
    | st.integers(min_value=-2, max_value=2)
    | st.floats(allow_nan=False)
    | st.sampled_from([math.inf, -math.inf, 1e308])
    | st.text(max_size=3)
    | st.binary(max_size=2)
)
_SOUND: dict[str, st.SearchStrategy[object]] = {
    "id": st.just("e1"),
    "workflow": st.just("wf"),
    "input": st.just("{}"),
    "status": st.sampled_from([*STATUSES, "bogus"]),
    "result": st.sampled_from(['"r"', None]),
    "error": st.sampled_from(["E: x", None]),
    "attempt": st.integers(min_value=0, max_value=3),
    "wake_at": st.sampled_from([5.0, None]),
    "waiting_for": st.sampled_from(["go", None]),
    "idempotency_key": st.sampled_from(["k", None]),
    "owner": st.sampled_from(["w1", None]),
    "lease_until": st.sampled_from([5.0, None]),
    "created_at": st.just(1.0),
    "updated_at": st.just(1.0),
}


@st.composite
def _rows(draw: st.DrawFn) -> dict[str, object]:
    """A row of executions: each column sound, or (one time in five) anything at all."""
    return {
        name: draw(_ANY_VALUE if draw(st.integers(0, 4)) == 0 else _SOUND[name])
        for name in _EXECUTION_FIELDS
    }


@given(row=_rows())
@settings(max_examples=300, deadline=None)
def test_the_sql_check_of_a_row_agrees_with_reading_it_back(row: dict[str, object]) -> None:
    # The claim finds unreadable rows with `_UNREADABLE`; what it finds, `read_execution`
    # must refuse, and the other way round, or a bad row would be missed (or a sound one
    # skipped).
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute("PRAGMA ignore_check_constraints = ON")
        columns = ", ".join(_EXECUTION_FIELDS)
        try:
            db.execute(
                f"INSERT INTO executions ({columns}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
        except sqlite3.IntegrityError:  # NOT NULL is never ignored
            assume(False)
        *stored, unreadable = db.execute(
            f"SELECT {columns}, {_UNREADABLE} FROM executions"
        ).fetchone()
    try:
        read_execution(stored)
    except CorruptRecordError:
        assert unreadable == 1, stored
    else:
        assert unreadable == 0, stored


# ---------------------------------------------------------------------- durability, schema


@pytest.mark.parametrize(("synchronous", "level"), [("normal", 1), ("full", 2)])
async def test_synchronous_sets_how_commits_reach_the_disk(
    path: Path, synchronous: Synchronous, level: int
) -> None:
    store = SqliteStore(path, synchronous=synchronous)
    await store.open()
    try:
        await store.create_execution(execution("e1"))
        assert len(await store.claim("w", now=1.0, lease_until=9.0, limit=1)) == 1
        await store.record_step("w", StepRecord("e1", "s", 0, "1", 2.0))
        assert await store.list_step_results("e1") == [StepRecord("e1", "s", 0, "1", 2.0)]
        assert store._connection is not None
        assert store._connection.execute("PRAGMA synchronous").fetchone() == (level,)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        ({"synchronous": "off"}, ValueError, "synchronous"),
        ({"synchronous": 2}, TypeError, "synchronous"),
        ({"busy_timeout": -1}, ValueError, "busy_timeout"),
        ({"busy_timeout": "5"}, TypeError, "busy_timeout"),
    ],
)
def test_bad_options_name_their_field(
    path: Path, options: dict[str, object], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        SqliteStore(path, **options)  # type: ignore[arg-type]


async def test_a_file_from_before_the_version_table_opens_and_is_stamped(path: Path) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    for statement in _SCHEMA:  # the schema as the releases before the version table made it
        raw.execute(statement)
    raw.execute(
        "INSERT INTO executions (id, workflow, input, status, attempt, created_at, updated_at) "
        "VALUES ('old', 'wf', '{}', 'pending', 0, 1.0, 1.0)"
    )
    raw.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert (await store.get_execution("old")) == execution(
            "old", created_at=1.0, updated_at=1.0
        )
        assert store._connection is not None
        version = store._connection.execute("SELECT version FROM schema_version").fetchall()
        assert version == [(SCHEMA_VERSION,)]
    finally:
        await store.close()


async def test_a_file_of_a_newer_schema_is_refused_naming_its_version(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 7,))
    raw.close()
    with pytest.raises(DurableError, match=f"schema version {SCHEMA_VERSION + 7};.*upgrade"):
        await SqliteStore(path).open()


@pytest.mark.slow
async def test_a_call_that_meets_another_writer_waits_for_it_in_the_thread(path: Path) -> None:
    # Inline calls never wait for a lock: one that meets another process's write lock is
    # run again in the store's thread, which waits up to busy_timeout, while the event
    # loop goes on.
    store = SqliteStore(path, busy_timeout=10)
    await store.open()
    raw = sqlite3.connect(path, isolation_level=None)
    created: list[str] = []
    try:
        raw.execute("BEGIN IMMEDIATE")

        async def create() -> None:
            created.append((await store.create_execution(execution("e1"))).id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(create)
            ticks = 0
            for _ in range(10):  # the loop runs on while the call waits for the lock
                await trio.sleep(0.01)
                ticks += 1
            assert (ticks, created) == (10, [])
            raw.execute("COMMIT")
        assert created == ["e1"]
        assert [e.id for e in await store.list_executions()] == ["e1"]
    finally:
        raw.close()
        await store.close()


async def test_a_listing_longer_than_an_inline_read_is_read_whole(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.create_execution(execution("e1"))
        await store.claim("w", now=1.0, lease_until=1e9, limit=1)
        steps = [StepRecord("e1", f"s{n}", n, str(n), 2.0) for n in range(_INLINE_ROWS + 44)]
        for step in steps:
            await store.record_step("w", step)
        assert await store.list_step_results("e1") == steps
    finally:
        await store.close()


async def test_the_wal_is_checkpointed_by_the_store_not_inside_commits(path: Path) -> None:
    # SQLite's automatic checkpoint is off (it would run inside a commit, on the event
    # loop); the store checkpoints in its thread every _CHECKPOINT_EVERY commits, so the
    # pages reach the database file.
    store = SqliteStore(path)
    await store.open()
    try:
        assert store._connection is not None
        assert store._connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        empty = (await trio.Path(path).stat()).st_size
        for n in range(_CHECKPOINT_EVERY + 10):
            await store.create_execution(execution(f"e{n}", error="x" * 200))
        assert (await trio.Path(path).stat()).st_size > empty + 100 * _CHECKPOINT_EVERY
        assert len(await store.list_executions()) == _CHECKPOINT_EVERY + 10
    finally:
        await store.close()
