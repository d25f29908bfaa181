"""Four worker processes share 200 five-step workflows on PostgreSQL; one is SIGKILLed.

The test process starts the executions through an engine with ``worker=False``; four
processes (``multiworker_program.py``) run them. Once work is under way, the worker that
wrote the latest side effect is killed mid-run. The others finish everything, taking the
dead worker's executions only after its lease (``claim_ttl``) ran out. Each step's body
writes a side-effect row naming its process, so the test can see how often each step
really ran and where: exactly once, except that a step interrupted by the kill may run
again elsewhere (at-least-once), and never twice on living workers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import kernel
from kernel.durable import Engine, Execution, StepRecord
from tests.kernel.durable.multiworker_program import (
    CLAIM_TTL,
    CONCURRENCY,
    EFFECTS_TABLE,
    STEPS,
    WORKFLOW,
    build_app,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = "multiworker"
EXECUTIONS = 200
WORKERS = 4
#: Side effects written before the kill (of 1000): the run is well under way, far from done.
KILL_AFTER = 150
DEADLINE = 60.0
POLL = 0.05


@attrs.frozen
class Effect:
    execution_id: str
    step_id: str
    pid: int
    at: float


@attrs.frozen
class Kill:
    """The SIGKILLed worker and what it held when it died."""

    pid: int
    at: float
    effects_before: int
    in_flight: dict[str, Execution]
    recorded: dict[str, set[str]]


class Database:
    """The test's own connection, for the effects table and quick counts."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    @classmethod
    async def connect(cls, dsn: str) -> Database:
        import psycopg

        return cls(await trio.to_thread.run_sync(lambda: psycopg.connect(dsn, autocommit=True)))

    async def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        from psycopg import sql

        statement = sql.SQL(query).format(s=sql.Identifier(SCHEMA))

        def run() -> list[tuple[Any, ...]]:
            cursor = self._connection.execute(statement, params)
            return cursor.fetchall() if cursor.description is not None else []

        return await trio.to_thread.run_sync(run)

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._connection.close)


def pid_of(owner: str | None) -> int | None:
    """The pid in a worker id ``host:pid:nonce``."""
    return int(owner.split(":")[1]) if owner is not None else None


async def run_worker(
    dsn: str,
    finished: list[subprocess.CompletedProcess[bytes]],
    *,
    task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One worker process, from spawn to exit (terminated if the test is cancelled)."""
    command = [sys.executable, "-m", "tests.kernel.durable.multiworker_program", dsn, SCHEMA]
    done = await trio.run_process(
        command,
        cwd=ROOT,
        check=False,
        capture_stdout=True,
        capture_stderr=True,
        task_status=task_status,
    )
    finished.append(done)


async def kill_busiest(
    db: Database, engine: Engine, processes: list[trio.Process], clock: dict[str, float]
) -> Kill:
    """Once ``KILL_AFTER`` effects exist, SIGKILL the worker that wrote the latest one (so it
    is likely mid-step) and note the executions it held."""
    while True:
        [(count, latest)] = await db.rows(
            "SELECT count(*), (SELECT pid FROM {s}.effects ORDER BY seq DESC LIMIT 1) "
            "FROM {s}.effects"
        )
        if count and "first effect" not in clock:
            clock["first effect"] = time.monotonic()
        if count >= KILL_AFTER:
            break
        await trio.sleep(POLL)
    clock["kill"] = time.monotonic()
    victim = next(p for p in processes if p.pid == latest)
    at = time.time()
    victim.kill()
    await victim.wait()
    in_flight = {
        e.id: e
        for e in await engine.store.list_executions(statuses={"running"})
        if pid_of(e.owner) == victim.pid
    }
    recorded = {
        execution_id: {r.step_id for r in await engine.store.list_step_results(execution_id)}
        for execution_id in in_flight
    }
    return Kill(victim.pid, at, count, in_flight, recorded)


async def wait_until_done(db: Database) -> None:
    """Poll until every execution has ended."""
    while True:
        [(ended,)] = await db.rows(
            "SELECT count(*) FROM {s}.executions "
            "WHERE status NOT IN ('pending', 'running', 'sleeping', 'waiting')"
        )
        if ended == EXECUTIONS:
            return
        await trio.sleep(POLL)


async def test_four_workers_run_200_workflows_and_survive_a_sigkill(postgres_dsn: str) -> None:
    clock = {"start": time.monotonic()}
    app, engine_resource = build_app(postgres_dsn, SCHEMA, worker=False)
    finished: list[subprocess.CompletedProcess[bytes]] = []
    processes: list[trio.Process] = []
    kill: Kill | None = None
    timed_out = False
    async with kernel.run(app) as rt:  # opening the store creates its tables
        engine: Engine = rt.resource(engine_resource)
        db = await Database.connect(postgres_dsn)
        try:
            await db.rows(EFFECTS_TABLE)
            inputs = {await engine.start(WORKFLOW, n): n for n in range(EXECUTIONS)}
            clock["started"] = time.monotonic()
            async with trio.open_nursery() as nursery:
                for _ in range(WORKERS):
                    process = await nursery.start(run_worker, postgres_dsn, finished)
                    processes.append(process)
                with trio.move_on_after(DEADLINE) as deadline:
                    kill = await kill_busiest(db, engine, processes, clock)
                    await wait_until_done(db)
                timed_out = deadline.cancelled_caught
                clock["done"] = time.monotonic()
                for process in processes:
                    if process.returncode is None:
                        process.send_signal(signal.SIGTERM)
            clock["stopped"] = time.monotonic()
            executions = {e.id: e for e in await engine.store.list_executions()}
            steps: dict[str, list[StepRecord]] = {
                execution_id: await engine.store.list_step_results(execution_id)
                for execution_id in executions
            }
            effects = [
                Effect(*row)
                for row in await db.rows(
                    "SELECT execution_id, step_id, pid, at FROM {s}.effects ORDER BY seq"
                )
            ]
            timelines = {
                execution_id: await engine.store.list_audit_entries(execution_id)
                for execution_id in executions
            }
            results = {
                execution_id: engine.result_of(e)
                for execution_id, e in executions.items()
                if e.status == "completed"
            }
        finally:
            await db.close()

    logs = "\n".join(
        f"--- worker (exit {done.returncode}) ---\n{done.stderr.decode()[-2000:]}"
        for done in finished
    )
    statuses = Counter(e.status for e in executions.values())
    assert not timed_out, f"not done within {DEADLINE} s: {dict(statuses)}\n{logs}"
    assert kill is not None
    timings = {
        "start 200": clock["started"] - clock["start"],
        "to first effect": clock["first effect"] - clock["started"],
        "to kill": clock["kill"] - clock["first effect"],
        "kill to done": clock["done"] - clock["kill"],
        "stop": clock["stopped"] - clock["done"],
    }
    print(" ".join(f"{name}={seconds:.2f}s" for name, seconds in timings.items()))

    # The processes: the victim died by SIGKILL, the others shut down cleanly on SIGTERM.
    exits = {process.pid: process.returncode for process in processes}
    assert len(finished) == len(exits) == WORKERS
    survivors = set(exits) - {kill.pid}
    assert exits == {kill.pid: -signal.SIGKILL} | dict.fromkeys(survivors, 0), logs

    # Every execution completed once, with the right result and no failed attempt.
    assert statuses == {"completed": EXECUTIONS}
    assert set(executions) == set(inputs)
    for execution_id, n in inputs.items():
        execution = executions[execution_id]
        assert (execution.attempt, execution.error, execution.owner) == (0, None, None)
        assert results[execution_id] == [f"{n}:{step}" for step in STEPS]

    # Each timeline says so: one start, one completion. The victim may have died between
    # completing an execution and appending that to its timeline (a separate write).
    unaudited: set[str] = set()
    for execution_id, timeline in timelines.items():
        changes = [entry.data["to"] for entry in timeline if entry.kind == "status_changed"]
        if changes == ["pending"]:
            unaudited.add(execution_id)
        else:
            assert changes == ["pending", "completed"], (execution_id, changes)

    # Every step is recorded exactly once, at its position: 1000 records.
    assert sum(len(records) for records in steps.values()) == EXECUTIONS * len(STEPS)
    for records in steps.values():
        assert [(r.step_id, r.position) for r in records] == [(s, i) for i, s in enumerate(STEPS)]

    # The kill landed mid-run, on a worker holding executions under a live lease.
    assert KILL_AFTER <= kill.effects_before < EXECUTIONS * len(STEPS)
    assert 1 <= len(kill.in_flight) <= CONCURRENCY
    for execution in kill.in_flight.values():
        assert execution.lease_until is not None
        assert kill.at < execution.lease_until < kill.at + CLAIM_TTL + 0.1

    # Side effects: once per step, except a step the kill interrupted, which may have run
    # again on a living worker (at-least-once); never twice on living workers (guarantee 5).
    by_step: dict[tuple[str, str], list[Effect]] = defaultdict(list)
    for effect in effects:
        by_step[effect.execution_id, effect.step_id].append(effect)
    assert set(by_step) == {(e, s) for e in inputs for s in STEPS}
    duplicated: list[tuple[str, str]] = []
    for (execution_id, step_id), rows in by_step.items():
        living = [row.pid for row in rows if row.pid != kill.pid]
        assert len(living) <= 1, f"{execution_id}/{step_id} ran on living workers {living}"
        assert len(rows) - len(living) <= 1
        if len(rows) == 2:
            assert step_id not in kill.recorded[execution_id]
            duplicated.append((execution_id, step_id))
    assert len(duplicated) <= len(kill.in_flight) <= CONCURRENCY
    assert len({execution_id for execution_id, _ in duplicated}) == len(duplicated)

    # Only the victim's last completions can lack their entry.
    assert len(unaudited) <= CONCURRENCY
    for execution_id in unaudited:
        assert {row.pid for s in STEPS for row in by_step[execution_id, s]} == {kill.pid}

    # An execution nobody interrupted ran all its steps in one process, each audited once.
    for execution_id in set(inputs) - set(kill.in_flight):
        assert len({row.pid for s in STEPS for row in by_step[execution_id, s]}) == 1
        audited = [e.step_id for e in timelines[execution_id] if e.kind == "step_completed"]
        assert audited == list(STEPS)

    # The victim's executions were finished by the others, only after its lease expired.
    for execution_id, held in kill.in_flight.items():
        assert held.lease_until is not None
        for step_id in STEPS:
            rows = by_step[execution_id, step_id]
            record = next(r for r in steps[execution_id] if r.step_id == step_id)
            # Recorded by the victim: before the kill's look, or by its last statement,
            # which the server may finish (and commit) after the process died.
            if step_id in kill.recorded[execution_id] or record.completed_at <= kill.at:
                assert [row.pid for row in rows] == [kill.pid]
                continue
            taken_over = [row for row in rows if row.pid != kill.pid]
            assert len(taken_over) == 1
            assert taken_over[0].pid in survivors
            assert taken_over[0].at > held.lease_until
            assert record.completed_at > held.lease_until
        if STEPS[-1] not in kill.recorded[execution_id]:
            assert {row.pid for row in by_step[execution_id, STEPS[-1]]} - {kill.pid}

    # The work was spread over the processes, and only ours did it.
    workers_used = {effect.pid for effect in effects}
    assert workers_used <= set(exits)
    assert len(workers_used) >= 2
    print(
        f"effects per worker: {dict(Counter(effect.pid for effect in effects))}; "
        f"killed {kill.pid} holding {len(kill.in_flight)}; re-run steps: {len(duplicated)}"
    )
