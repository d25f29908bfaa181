"""A PostgreSQL server restarted (as a crash) under load: the worker reconnects, every
workflow completes, no recorded step is lost, and no step body runs again once its record
was acknowledged.

A cluster of its own (restarted with ``pg_ctl -m immediate``), real time: marked slow.
Calls in flight when the server dies raise `StoreUnavailableError`; whether such a write
committed is unknown, so a step whose record was not acknowledged may run again, but one
whose record was acknowledged never does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import trio

import kernel
from kernel.durable import (
    AuditEntry,
    Engine,
    PostgresStore,
    StepRecord,
    StoreUnavailableError,
    workflow,
)
from kernel.durable import engine as durable_engine

pytestmark = pytest.mark.slow

WORKFLOWS = 24
STEPS = ("one", "two", "three")
#: How long any wait may take before the test fails (never reached when green).
DEADLINE = 60.0


@pytest.fixture(scope="module")
def restartable() -> Iterator[tuple[str, object]]:
    from tests.kernel.durable.postgres_cluster import restartable_cluster

    with restartable_cluster() as found:
        yield found


class Journal:
    """What happened, in one order: step bodies run, step records acknowledged."""

    def __init__(self) -> None:
        self.clock = itertools.count()
        self.ran: list[tuple[int, str, str]] = []
        self.acknowledged: dict[tuple[str, str], int] = {}


class JournalledStore(PostgresStore):
    """A `PostgresStore` that notes each step record it acknowledged."""

    journal: Journal

    async def record_step(
        self, worker: str, step: StepRecord, *, audit: AuditEntry | None = None
    ) -> None:
        await super().record_step(worker, step, audit=audit)
        self.journal.acknowledged.setdefault(
            (step.execution_id, step.step_id), next(self.journal.clock)
        )


async def test_a_server_restart_under_load_loses_no_step_and_repeats_none_recorded(
    restartable: tuple[str, object],
) -> None:
    dsn, restart = restartable
    assert callable(restart)
    journal = Journal()
    store = JournalledStore(dsn, schema="restart", connect_timeout=5)
    store.journal = journal
    engine = durable_engine(
        "durable", store=store, polling_interval=0.05, claim_ttl=1.0, max_concurrent=8
    )

    async def body(execution_id: str, name: str, n: int) -> int:
        journal.ran.append((next(journal.clock), execution_id, name))
        await trio.sleep(0.01)
        return n

    @kernel.task("restarted", deps={"durable": engine}, tags=[workflow()])
    async def restarted(n: int, *, durable: Engine) -> list[int]:
        ctx = durable.context()
        return [await ctx.step(name, body, ctx.execution_id, name, n) for name in STEPS]

    async def result(front: Engine, execution_id: str) -> object:
        while True:  # the wait's own reads fail while the server is down
            try:
                return await front.wait(execution_id)
            except StoreUnavailableError:
                await trio.sleep(0.05)

    app = kernel.App("restart", register=[engine, restarted])
    async with kernel.run(app) as runtime:
        front: Engine = runtime.resource(engine)
        ids = [await front.start(restarted, n) for n in range(WORKFLOWS)]
        await trio.sleep(0.1)  # runs in flight
        await trio.to_thread.run_sync(restart)
        with trio.fail_after(DEADLINE):
            results = [await result(front, execution_id) for execution_id in ids]
        assert results == [[n, n, n] for n in range(WORKFLOWS)]
        for execution_id in ids:
            recorded = await front.store.list_step_results(execution_id)
            assert [(r.step_id, r.position) for r in recorded] == [
                (name, k) for k, name in enumerate(STEPS)
            ]
    assert journal.acknowledged, "no step was recorded"
    repeated = [
        (execution_id, name)
        for at, execution_id, name in journal.ran
        if at > journal.acknowledged.get((execution_id, name), at)
    ]
    assert repeated == []
