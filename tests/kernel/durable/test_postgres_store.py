"""What only `PostgresStore` has: a server, several processes, a schema, a connection.

The store protocol itself is checked by the conformance suite; these tests cover
durability across reconnects, concurrency between separate pools (as between worker
processes), configuration errors and rows damaged outside the store.
"""

from __future__ import annotations

import os
import pwd
import socket
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
import trio
import trio.testing
from psycopg import sql

from kernel.durable import (
    AuditEntry,
    CorruptRecordError,
    DurableError,
    Engine,
    Execution,
    LeaseLostError,
    PostgresStore,
    Schedule,
    SerializationError,
    StepRecord,
    StoreUnavailableError,
)
from kernel.durable._postgres import SCHEMA_VERSION
from tests.kernel.durable import postgres_cluster


def _schema() -> str:
    return f"t_{uuid.uuid4().hex}"


def _execute(dsn: str, query: str, *params: Any) -> None:
    """Run ``query`` (``{s}`` is the schema) directly, as someone outside the store would."""
    schema, text = params[0], query
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(text).format(s=sql.Identifier(schema)), params[1:])


@pytest.fixture
async def pg_store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    """An opened store on a schema of its own."""
    made = PostgresStore(postgres_dsn, schema=_schema())
    await made.open()
    try:
        yield made
    finally:
        await made.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there any more


# ---------------------------------------------------------------------- durability


async def test_data_survives_closing_and_reopening(postgres_dsn: str) -> None:
    schema = _schema()
    first = PostgresStore(postgres_dsn, schema=schema)
    await first.open()
    await first.create_execution(Execution("e1", "wf", '{"n": 1}', idempotency_key="k1"))
    [claimed] = await first.claim("w1", now=1.0, lease_until=31.0, limit=5)
    await first.record_step("w1", StepRecord("e1", "charge", 0, '"ok"', 2.0))
    await first.send_signal("e1", "approve", '{"by": "ann"}', now=3.0)
    await first.append_audit(AuditEntry("e1", "note", 4.0, data={"text": "hello"}))
    await first.put_schedule(Schedule("nightly", "wf", "{}", next_run_at=100.0, cron="0 3 * * *"))
    await first.close()

    second = PostgresStore(postgres_dsn, schema=schema)
    await second.open()
    try:
        assert await second.get_execution("e1") == claimed
        assert claimed.owner == "w1"
        assert await second.list_step_results("e1") == [StepRecord("e1", "charge", 0, '"ok"', 2.0)]
        consumed = await second.consume_signal(
            "w1", "e1", "approve", step_id="approval", position=1, now=5.0
        )
        assert consumed == '{"kind": "signal", "payload": {"by": "ann"}}'
        assert await second.list_audit_entries("e1") == [
            AuditEntry("e1", "note", 4.0, data={"text": "hello"}, seq=1)
        ]
        assert await second.list_schedules() == [
            Schedule("nightly", "wf", "{}", next_run_at=100.0, cron="0 3 * * *")
        ]
        # The idempotency key still holds across the reconnect.
        again = await second.create_execution(Execution("e2", "wf", "{}", idempotency_key="k1"))
        assert again.id == "e1"
    finally:
        await second.close()


async def test_open_and_close_are_idempotent(postgres_dsn: str) -> None:
    made = PostgresStore(postgres_dsn, schema=_schema())
    await made.open()
    await made.open()
    await made.create_execution(Execution("e1", "wf", "{}"))
    await made.close()
    await made.close()
    with pytest.raises(RuntimeError, match="not open"):
        await made.get_execution("e1")


async def test_a_store_that_was_never_opened_says_so() -> None:
    made = PostgresStore("postgresql://nobody@127.0.0.1:1/none")
    await made.close()  # nothing to release
    with pytest.raises(RuntimeError, match=r"await store\.open\(\) first"):
        await made.next_due()


# ---------------------------------------------------------------------- concurrency


async def test_concurrent_claims_from_two_pools_never_overlap(postgres_dsn: str) -> None:
    schema = _schema()
    # Two stores, two pools: as two worker processes would have.
    stores = [PostgresStore(postgres_dsn, schema=schema, pool_size=4) for _ in range(2)]
    for made in stores:
        await made.open()
    try:
        for n in range(50):
            await stores[0].create_execution(
                Execution(f"e{n:02}", "wf", "{}", created_at=float(n), updated_at=float(n))
            )
        claims: dict[str, list[Execution]] = {}

        async def claimer(worker: str, made: PostgresStore) -> None:
            mine = claims.setdefault(worker, [])
            while batch := await made.claim(worker, now=100.0, lease_until=200.0, limit=3):
                mine.extend(batch)

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(claimer, f"w{n}", stores[n % 2])

        counts = Counter(execution.id for batch in claims.values() for execution in batch)
        assert counts == Counter({f"e{n:02}": 1 for n in range(50)})
        for worker, batch in claims.items():
            assert all(e.status == "running" and e.owner == worker for e in batch)
        stored = await stores[1].list_executions()
        owners = {execution.id: execution.owner for execution in stored}
        assert owners == {e.id: worker for worker, batch in claims.items() for e in batch}
    finally:
        for made in stores:
            await made.close()


async def test_concurrent_opens_of_a_new_schema_all_succeed(postgres_dsn: str) -> None:
    schema = _schema()
    stores = [PostgresStore(postgres_dsn, schema=schema, pool_size=1) for _ in range(6)]
    async with trio.open_nursery() as nursery:
        for made in stores:
            nursery.start_soon(made.open)
    try:
        await stores[0].create_execution(Execution("e1", "wf", "{}"))
        assert [e.id for e in await stores[5].list_executions()] == ["e1"]
    finally:
        for made in stores:
            await made.close()


async def test_concurrent_creates_with_one_idempotency_key_create_one(
    pg_store: PostgresStore,
) -> None:
    created: list[Execution] = []

    async def create(n: int) -> None:
        created.append(
            await pg_store.create_execution(Execution(f"e{n}", "wf", "{}", idempotency_key="once"))
        )

    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(create, n)
    assert len({execution.id for execution in created}) == 1
    assert len(await pg_store.list_executions()) == 1


async def test_concurrent_audit_appends_number_entries_without_gaps(
    pg_store: PostgresStore,
) -> None:
    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(pg_store.append_audit, AuditEntry("e1", "note", float(n)))
    entries = await pg_store.list_audit_entries("e1")
    assert [entry.seq for entry in entries] == list(range(1, 21))
    assert sorted(entry.at for entry in entries) == [float(n) for n in range(20)]


async def test_a_step_recorded_by_a_stale_worker_is_refused(pg_store: PostgresStore) -> None:
    await pg_store.create_execution(Execution("e1", "wf", "{}"))
    await pg_store.claim("old", now=1.0, lease_until=2.0, limit=1)
    await pg_store.claim("new", now=3.0, lease_until=9.0, limit=1)  # the old lease expired
    with pytest.raises(LeaseLostError, match="'old' no longer owns execution 'e1'"):
        await pg_store.record_step("old", StepRecord("e1", "charge", 0, "1", 4.0))
    with pytest.raises(LeaseLostError):
        await pg_store.consume_signal("old", "e1", "go", step_id="s", position=0, now=4.0)
    assert await pg_store.list_step_results("e1") == []


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "schema", ["", "1st", "has-dash", 'x"; DROP TABLE t; --', "a" * 64, "pg_jobs", "PG_x"]
)
def test_a_schema_that_is_not_a_plain_identifier_is_refused(schema: str) -> None:
    with pytest.raises(ValueError, match=r"schema must be a plain SQL identifier.*got"):
        PostgresStore("postgresql://localhost/db", schema=schema)


def test_pool_size_and_connect_timeout_are_validated() -> None:
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStore("postgresql://localhost/db", pool_size=0)
    with pytest.raises(ValueError, match="connect_timeout"):
        PostgresStore("postgresql://localhost/db", connect_timeout=0)


def test_the_repr_never_shows_the_dsn() -> None:
    made = PostgresStore("postgresql://ann:s3cret@db.example:5432/app", schema="jobs")
    assert "s3cret" not in repr(made)
    assert "schema='jobs'" in repr(made)
    assert made.local is False


async def test_an_unreachable_server_names_host_and_port_but_not_the_password() -> None:
    port = _closed_port()
    made = PostgresStore(f"postgresql://ann:s3cret@127.0.0.1:{port}/app", connect_timeout=2)
    with pytest.raises(ConnectionError) as caught:
        await made.open()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "s3cret" not in message
    assert caught.value.__cause__ is None  # no chained psycopg error repeating the DSN


async def test_a_malformed_dsn_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid dsn"):
        await PostgresStore("host=localhost this-is-not-a-setting").open()


async def test_without_psycopg_open_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError, match=r"pip install 'trio-runner\[postgres\]'"):
        await PostgresStore("postgresql://localhost/db").open()


# ---------------------------------------------------------------------- damaged rows


@pytest.mark.parametrize(
    ("text", "reason"),
    [("{not json", "Expecting property name"), ("[1, 2]", "expected a JSON object, got list")],
)
async def test_a_corrupt_audit_row_raises_corrupt_record_error(
    pg_store: PostgresStore, postgres_dsn: str, text: str, reason: str
) -> None:
    await pg_store.append_audit(AuditEntry("e1", "note", 1.0, data={"ok": True}))
    await trio.to_thread.run_sync(
        _execute,
        postgres_dsn,
        "INSERT INTO {s}.audit (execution_id, seq, kind, at, data) "
        "VALUES ('e1', 2, 'note', 2.0, %s)",
        pg_store.schema,
        text,
    )
    with pytest.raises(CorruptRecordError, match=rf"audit entry 2 of execution 'e1'.*{reason}"):
        await pg_store.list_audit_entries("e1")


async def test_a_corrupt_signal_payload_raises_corrupt_record_error_and_writes_nothing(
    pg_store: PostgresStore, postgres_dsn: str
) -> None:
    await pg_store.create_execution(Execution("e1", "wf", "{}"))
    await pg_store.claim("w", now=1.0, lease_until=9.0, limit=1)
    await trio.to_thread.run_sync(
        _execute,
        postgres_dsn,
        "INSERT INTO {s}.signals (execution_id, signal_id, payload, sent_at) "
        "VALUES ('e1', 'go', %s, 1.0)",
        pg_store.schema,
        "{broken",
    )
    with pytest.raises(CorruptRecordError, match=r"signal 'go' .*of execution 'e1'"):
        await pg_store.consume_signal("w", "e1", "go", step_id="s", position=0, now=2.0)
    assert await pg_store.list_step_results("e1") == []


async def test_audit_data_that_is_not_json_is_a_serialization_error(
    pg_store: PostgresStore,
) -> None:
    with pytest.raises(SerializationError, match="execution 'e1'"):
        await pg_store.append_audit(AuditEntry("e1", "note", 1.0, data={"when": object()}))
    assert await pg_store.list_audit_entries("e1") == []


async def test_text_sorts_by_code_point_whatever_the_database_locale(
    pg_store: PostgresStore,
) -> None:
    ids = ["a-b", "B", "ab", "a", "é", "Z"]
    for execution_id in ids:
        await pg_store.create_execution(Execution(execution_id, "wf", "{}"))
        await pg_store.put_schedule(
            Schedule(execution_id, "wf", "{}", next_run_at=1.0, interval=60.0)
        )
    assert [e.id for e in await pg_store.list_executions()] == sorted(ids)
    assert [s.id for s in await pg_store.list_schedules()] == sorted(ids)


# ---------------------------------------------------------------------- the test cluster


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)]
)
def test_the_cluster_skips_without_postgresql_but_fails_on_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(postgres_cluster, "_INSTALL_ROOT", tmp_path)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=r"PostgreSQL is not installed: no .*/bin/initdb"):
        postgres_cluster.cluster().__enter__()


def test_the_cluster_needs_the_postgres_user_when_run_as_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_such_user(name: str) -> NoReturn:
        raise KeyError(name)

    monkeypatch.setattr(postgres_cluster, "_bin_dir", lambda: Path("/nowhere/bin"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(pwd, "getpwnam", no_such_user)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no 'postgres' OS user"):
        postgres_cluster.cluster().__enter__()


@pytest.mark.slow
def test_a_cluster_that_cannot_start_shows_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(postgres_cluster, "_free_port", lambda: taken.getsockname()[1])
        with pytest.raises(RuntimeError, match=r"(?s)server start failed.*tail.*could not bind"):
            postgres_cluster.cluster().__enter__()


async def test_a_statement_the_server_refuses_is_a_durable_error(
    pg_store: PostgresStore, postgres_dsn: str
) -> None:
    _execute(postgres_dsn, "DROP TABLE {s}.audit", pg_store.schema)
    with pytest.raises(DurableError, match=r"PostgresStore at 127\.0\.0\.1:\d+: UndefinedTable"):
        await pg_store.list_audit_entries("e1")
    assert await pg_store.get_execution("e1") is None  # the other tables still answer


async def test_connections_cut_by_the_server_are_a_store_unavailable_error_once(
    pg_store: PostgresStore, postgres_dsn: str
) -> None:
    await pg_store.create_execution(Execution(id="e1", workflow="wf", input="{}"))
    pool = pg_store._pool
    assert pool is not None
    with pool.connection(), pool.connection(), pool.connection():
        pass  # the pool now holds three connections, idle
    assert pool.get_stats()["pool_size"] >= 3
    # Every connection of the store's pool is cut, as a server restart does.
    _execute(
        postgres_dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
        "AND datname = current_database() AND backend_type = 'client backend'",
        pg_store.schema,
    )
    with pytest.raises(StoreUnavailableError, match=r"PostgresStore at 127\.0\.0\.1:\d+"):
        await pg_store.get_execution("e1")
    # The failure checked the pool: the next calls get live connections (without the check
    # each dead idle connection would fail a call of its own).
    for _ in range(pg_store.pool_size + 1):
        assert (await pg_store.get_execution("e1")) is not None


async def test_a_schema_of_a_newer_version_is_refused_naming_it(postgres_dsn: str) -> None:
    schema = _schema()
    store = PostgresStore(postgres_dsn, schema=schema)
    await store.open()
    await store.close()
    _execute(postgres_dsn, "UPDATE {s}.schema_version SET version = %s", schema, SCHEMA_VERSION + 3)
    with pytest.raises(DurableError, match=f"schema version {SCHEMA_VERSION + 3};.*upgrade"):
        await PostgresStore(postgres_dsn, schema=schema).open()


async def test_a_schema_from_before_the_version_table_opens_and_is_stamped(
    postgres_dsn: str,
) -> None:
    schema = _schema()
    store = PostgresStore(postgres_dsn, schema=schema)
    await store.open()
    await store.create_execution(Execution(id="old", workflow="wf", input="{}"))
    await store.close()
    _execute(postgres_dsn, "DROP TABLE {s}.schema_version", schema)
    reopened = PostgresStore(postgres_dsn, schema=schema)
    await reopened.open()
    try:
        assert (await reopened.get_execution("old")) is not None
    finally:
        await reopened.close()
    with psycopg.connect(postgres_dsn) as conn:
        query = sql.SQL("SELECT version FROM {s}.schema_version").format(s=sql.Identifier(schema))
        assert conn.execute(query).fetchall() == [(SCHEMA_VERSION,)]


@pytest.mark.parametrize("level", ["off", "on"])
async def test_synchronous_commit_sets_the_sessions_setting(postgres_dsn: str, level: str) -> None:
    store = PostgresStore(postgres_dsn, schema=_schema(), synchronous_commit=level)  # type: ignore[arg-type]
    await store.open()
    try:
        assert store._pool is not None
        with store._pool.connection() as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == (level,)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("value", "error"), [("fast", ValueError), (True, TypeError), (0, TypeError)]
)
def test_a_bad_synchronous_commit_names_the_field(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="synchronous_commit"):
        PostgresStore("postgresql://x", synchronous_commit=value)  # type: ignore[arg-type]


@pytest.fixture
def patient_clock() -> trio.testing.MockClock:
    """A mock clock that jumps only after half a second of real idleness."""
    return trio.testing.MockClock(autojump_threshold=0.5)


async def test_a_start_in_one_process_wakes_a_worker_in_another_at_once(
    postgres_dsn: str, patient_clock: trio.testing.MockClock
) -> None:
    # Two PostgresStores on one schema stand in for two processes; both would poll only
    # every hour. The worker's listen thread gets the front's NOTIFY within milliseconds of
    # real time, during which the mock clock stands still.
    from tests.kernel.durable.helpers import running_engine, workflow

    schema = _schema()
    ran_at: list[float] = []

    @workflow("notified")
    async def notified(value: int, *, durable: Engine) -> int:
        ran_at.append(trio.current_time())
        return value + 1

    async with (
        running_engine(
            notified, store=PostgresStore(postgres_dsn, schema=schema), polling_interval=3600
        ) as (_, back),
        running_engine(
            notified,
            store=PostgresStore(postgres_dsn, schema=schema),
            worker=False,
            polling_interval=3600,
        ) as (_, front),
    ):
        assert back.worker is not None
        await trio.sleep(1)  # both engines are up and idle
        xid = await front.start(notified, 1)
        assert await front.wait(xid) == 2
        assert ran_at == [1.0]  # woken by the notification, not by a poll
        assert trio.current_time() == 1.0  # and so was the front's wait
