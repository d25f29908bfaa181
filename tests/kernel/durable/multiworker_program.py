"""A durable worker process for the multi-worker test (``test_multiworker.py``).

``python -m tests.kernel.durable.multiworker_program DSN SCHEMA`` runs an app whose engine
works on the PostgreSQL store in ``SCHEMA`` until SIGTERM (a graceful shutdown) or
SIGKILL. Its one workflow, ``mw.five``, runs five steps; each step inserts a row
``(execution_id, step_id, pid, at)`` into ``SCHEMA.effects`` (a side effect outside the
store, so the test can count how often each step really ran, and where), lingers a moment
(so a kill is likely to land between the effect and the step's record) and returns
``"<input>:<step id>"``. The test process builds the same app with ``worker=False`` to
start executions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

import kernel
from kernel.durable import Engine, PostgresStore, workflow
from kernel.durable import engine as durable_engine

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["CLAIM_TTL", "CONCURRENCY", "STEPS", "WORKFLOW", "Effects", "build_app"]

WORKFLOW = "mw.five"
STEPS = ("s1", "s2", "s3", "s4", "s5")
CONCURRENCY = 8
CLAIM_TTL = 2.0
#: Seconds a step lingers after its side effect, before its result is recorded.
STEP_PAUSE = 0.02

EFFECTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS {s}.effects ("
    "seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "execution_id TEXT NOT NULL, step_id TEXT NOT NULL, pid INTEGER NOT NULL, "
    "at DOUBLE PRECISION NOT NULL)"
)


@attrs.define(eq=False)
class Effects:
    """Writes the steps' side effects: one autocommit connection, one insert at a time."""

    connection: Connection[Any]
    schema: str
    now: Callable[[], float]
    lock: trio.Lock = attrs.Factory(trio.Lock)

    async def perform(self, execution_id: str, step_id: str, value: str) -> str:
        """Insert the effect row for ``step_id`` (stamped with the engine's clock), linger,
        return ``value``."""
        from psycopg import sql

        query = sql.SQL(
            "INSERT INTO {s}.effects (execution_id, step_id, pid, at) VALUES (%s, %s, %s, %s)"
        ).format(s=sql.Identifier(self.schema))
        async with self.lock:
            params = (execution_id, step_id, os.getpid(), self.now())
            await trio.to_thread.run_sync(self.connection.execute, query, params)
        await trio.sleep(STEP_PAUSE)
        return value


def build_app(dsn: str, schema: str, *, worker: bool) -> tuple[kernel.App, kernel.Resource]:
    """The app (the engine on ``PostgresStore(dsn, schema=schema)``, the effects
    connection, the ``mw.five`` workflow) and its engine resource. ``worker=False`` only
    starts and inspects."""
    engine = durable_engine(
        "durable",
        store=PostgresStore(dsn, schema=schema),
        worker=worker,
        polling_interval=0.05,
        claim_ttl=CLAIM_TTL,
        max_concurrent=CONCURRENCY,
        recover_on_startup=False,
    )

    @kernel.resource("mw.effects", deps={"durable": engine})
    async def effects(*, durable: Engine) -> AsyncIterator[Effects]:
        import psycopg

        conn = await trio.to_thread.run_sync(lambda: psycopg.connect(dsn, autocommit=True))
        try:
            yield Effects(conn, schema, durable.now)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)

    @kernel.task(
        WORKFLOW,
        deps={"durable": engine, "effects": effects},
        tags=[workflow()],
    )
    async def five(n: int, *, durable: Engine, effects: Effects) -> list[str]:
        ctx = durable.context()
        results: list[str] = []
        for step_id in STEPS:
            value = f"{n}:{step_id}"
            results.append(
                await ctx.step(step_id, effects.perform, ctx.execution_id, step_id, value)
            )
        return results

    return kernel.App("multiworker", register=[engine, effects, five]), engine


def main(argv: list[str]) -> None:
    """Run a worker until SIGTERM: ``DSN SCHEMA``."""
    dsn, schema = argv
    app, _ = build_app(dsn, schema, worker=True)
    kernel.main(app, drain_timeout=5.0)


if __name__ == "__main__":
    main(sys.argv[1:])
