"""Corrupting stored rows as a careless hand, a bad script or a bad disk would: for the
tests of guarantee 6 (a corrupt row fails only its own execution).

`corrupt` writes a value into one column of stored rows past every check: raw SQL on
SQLite (CHECK constraints ignored) and PostgreSQL (the CHECK on the status dropped first),
the records' internals in a `MemoryStore`. `CANNOT` marks a value a store's column types
cannot hold (PostgreSQL keeps only text in a text column, only numbers in a number column).
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any, Final

import attrs
import trio

from kernel.durable import MemoryStore, PostgresStore, SqliteStore, Store

__all__ = ["CANNOT", "corrupt"]

#: In a table of cases: the store cannot be made to hold such a value.
CANNOT: Final[Any] = object()

#: Where the rows of one execution, schedule or step are: the key columns of each table.
_KEYS: Final = {
    "executions": ("id",),
    "schedules": ("id",),
    "steps": ("execution_id", "step_id"),
    "signals": ("execution_id",),
}


async def corrupt(
    store: Store, table: str, key: str | tuple[str, ...], column: str, value: Any
) -> None:
    """Set ``column`` to ``value`` in the rows of ``table`` with ``key`` (an execution or
    schedule id; ``(execution_id, step_id)`` for a step; an execution id for its signals)."""
    keys = key if isinstance(key, tuple) else (key,)
    if isinstance(store, MemoryStore):
        _in_memory(store, table, keys, column, value)
    elif isinstance(store, SqliteStore):
        await trio.to_thread.run_sync(_in_sqlite, store.path, table, keys, column, value)
    else:
        assert isinstance(store, PostgresStore)
        await _in_postgres(store, table, keys, column, value)


def _in_memory(
    store: MemoryStore, table: str, keys: tuple[str, ...], column: str, value: Any
) -> None:
    def changed(record: Any) -> Any:
        return attrs.evolve(record, **{column: value})

    if table == "executions":
        store._executions[keys[0]] = changed(store._executions[keys[0]])
    elif table == "schedules":
        store._schedules[keys[0]] = changed(store._schedules[keys[0]])
    elif table == "steps":
        steps = store._steps[keys[0]]
        steps[keys[1]] = changed(steps[keys[1]])
    else:
        for signal in store._signals[keys[0]]:
            setattr(signal, column, value)


def _in_sqlite(path: str, table: str, keys: tuple[str, ...], column: str, value: Any) -> None:
    where = " AND ".join(f"{name} = ?" for name in _KEYS[table])
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=10)) as db:
        db.execute("PRAGMA ignore_check_constraints = ON")
        cursor = db.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (value, *keys))
        assert cursor.rowcount >= 1, f"no {table} row has {keys}"


async def _in_postgres(
    store: PostgresStore, table: str, keys: tuple[str, ...], column: str, value: Any
) -> None:
    from psycopg import sql

    if table == "schedules" and column == "interval":
        column = "interval_seconds"
    where = sql.SQL(" AND ").join(
        sql.SQL("{} = %s").format(sql.Identifier(name)) for name in _KEYS[table]
    )
    update = sql.SQL("UPDATE {s}.{t} SET {c} = %s WHERE {w}").format(
        s=sql.Identifier(store.schema), t=sql.Identifier(table), c=sql.Identifier(column), w=where
    )
    drop = sql.SQL("ALTER TABLE {s}.executions DROP CONSTRAINT IF EXISTS executions_status_check")

    def work(conn: Any) -> None:
        if table == "executions" and column == "status":
            conn.execute(drop.format(s=sql.Identifier(store.schema)))
        cursor = conn.execute(update, (value, *keys))
        assert cursor.rowcount >= 1, f"no {table} row has {keys}"

    await store._run(work)
