"""Durable workflow rows: what durability costs a workflow, on SQLite and on PostgreSQL.

- latency: ``await engine.start_and_wait(wf, i)``, one at a time, of a workflow of three
  steps that each return a small dict: from start to result through the store and the
  worker (the execution written, claimed, three steps recorded, released, its audit lines).
- throughput: `BATCH` such workflows started, then all awaited; per workflow = 1 /
  throughput (workflows/s is printed with the notes).
- replay: a `Context` fast-forwarding through `REPLAYED` recorded steps, what every wake-up
  of a workflow (a sleep's end, a signal, a retry, a recovery) costs before new work; per
  step.

SQLite rows use a fresh file in a temporary directory, with ``synchronous="normal"`` (the
default: a process crash loses nothing) and ``"full"`` (an fsync per commit: a power cut
loses nothing either); PostgreSQL rows the run's throwaway
cluster (``bench.pg``), and are unavailable without PostgreSQL. The DBOS Transact anchor
(``bench.anchors.dbos``) runs the same workflow beside the SQLite rows.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

import kernel
from bench import pg
from bench._scenario import Scenario
from bench._timing import Loop
from kernel.durable import (
    Engine,
    Execution,
    MemoryStore,
    PostgresStore,
    SqliteStore,
    StepRecord,
    Store,
    workflow,
)
from kernel.durable import engine as durable_engine
from kernel.durable._context import Context, RunEnv

#: Workflows per repetition of a throughput row, at least: the engine's default concurrency.
BATCH = 16
#: Recorded steps per replayed `Context`.
REPLAYED = 100
#: Starts, steps and waits in this process wake the worker at once: it need never poll.
POLLING_INTERVAL = 3600.0


async def one(x: int) -> dict[str, int]:
    """Step one: a small dict."""
    return {"one": x}


async def two(x: int) -> dict[str, int]:
    """Step two: a small dict."""
    return {"two": x}


async def three(x: int) -> dict[str, int]:
    """Step three: a small dict."""
    return {"three": x}


def workflow_app(store: Store, name: str) -> tuple[kernel.Resource, kernel.Task, kernel.App]:
    """An engine over ``store``, the 3-step workflow, and the app registering both."""
    engine = durable_engine(
        f"bench.durable.{name}.engine", store=store, polling_interval=POLLING_INTERVAL
    )

    async def three_steps(x: int, *, durable: Engine) -> dict[str, Any]:
        ctx = durable.context()
        return {
            "one": await ctx.step("one", one, x),
            "two": await ctx.step("two", two, x),
            "three": await ctx.step("three", three, x),
        }

    task = kernel.task(
        f"bench.durable.{name}.workflow", deps={"durable": engine}, tags=[workflow()]
    )(three_steps)
    return engine, task, kernel.App(f"bench.durable.{name}", register=[engine, task])


def _check(result: Any, x: int) -> None:
    if result != {"one": {"one": x}, "two": {"two": x}, "three": {"three": x}}:
        raise RuntimeError(f"bench.durable: wrong result for {x}: {result!r}")


@attrs.define(eq=False)
class Latency:
    """``await loop(n)``: ``n`` workflows, each started and awaited before the next."""

    engine: Engine
    task: kernel.Task
    about: str | None = None

    async def __call__(self, n: int) -> None:
        start_and_wait, task = self.engine.start_and_wait, self.task
        for i in range(n):
            _, result = await start_and_wait(task, i)
            _check(result, i)

    def details(self) -> str | None:
        """What the store ran on (a server's version), when known only at run time."""
        return self.about


@attrs.define(eq=False)
class Batch:
    """``await loop(n)``: start ``n`` workflows, then wait for each; never fewer than
    ``minimum``. `details` gives the workflows/s of the latest calls of one size."""

    engine: Engine
    task: kernel.Task
    minimum: int = BATCH
    about: str | None = None
    _size: int = 0
    _count: int = 0
    _wall_ns: int = 0

    @property
    def min_calls(self) -> int:
        """The fewest workflows per repetition the bench may ask for."""
        return self.minimum

    async def __call__(self, n: int) -> None:
        if n != self._size:
            self._size, self._count, self._wall_ns = n, 0, 0
        engine, task = self.engine, self.task
        began = time.perf_counter_ns()
        ids = [await engine.start(task, i) for i in range(n)]
        for i, execution_id in enumerate(ids):
            _check(await engine.wait(execution_id), i)
        self._wall_ns += time.perf_counter_ns() - began
        self._count += n

    def details(self) -> str | None:
        """Workflows/s over the latest calls of one size."""
        if not self._count:
            return None
        rate = self._count * 1e9 / max(self._wall_ns, 1)
        text = (
            f"{rate:,.0f} workflows/s ({self._count:,} workflows in batches of {self._size}, "
            f"the engine running {self.engine.options.concurrency} at once)"
        )
        return text if self.about is None else f"{text}; {self.about}"


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[Store]:
    """A `SqliteStore` on a fresh file, deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-durable-") as directory:
        yield SqliteStore(Path(directory) / "durable.sqlite3")


@asynccontextmanager
async def sqlite_full_store() -> AsyncIterator[Store]:
    """A `SqliteStore` with ``synchronous="full"`` on a fresh file, deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-durable-") as directory:
        yield SqliteStore(Path(directory) / "durable.sqlite3", synchronous="full")


@asynccontextmanager
async def postgres_store(schema: str) -> AsyncIterator[Store]:
    """A `PostgresStore` on a schema of its own in the run's throwaway cluster."""
    async with pg.postgres() as dsn:
        yield PostgresStore(dsn, schema=schema)


StoreFactory = Callable[[], AbstractAsyncContextManager[Store]]


def _setup(name: str, stores: StoreFactory, loop: Callable[[Engine, kernel.Task], Loop]) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Loop]:
        async with stores() as store:
            engine, task, app = workflow_app(store, name)
            async with kernel.run(app) as rt:
                yield loop(rt.resource(engine), task)

    return setup


def _postgres_about() -> str:
    return f"PostgreSQL {pg.CLUSTER.version}, fsync=off"


def _latency_postgres(engine: Engine, task: kernel.Task) -> Loop:
    return Latency(engine, task, about=_postgres_about())


def _batch_postgres(engine: Engine, task: kernel.Task) -> Loop:
    return Batch(engine, task, about=_postgres_about())


async def _never_called(k: int) -> dict[str, int]:
    """A replayed step's body: replays return the recorded result without calling it."""
    raise AssertionError("a replayed step ran its body")


async def _no_emit(event: Any, payload: Any) -> None:
    """The replay's emit: a replay emits nothing."""


def _no_event(event: Any, payload: Any) -> Any:
    """The replay's event check: a replay checks no event."""
    raise AssertionError("a replay checked an event")


def _replay_env() -> RunEnv:
    return RunEnv(
        store=MemoryStore(),
        worker="bench:replay",
        now=time.time,
        audit=True,
        emit=_no_emit,
        check_event=_no_event,
    )


@attrs.define(eq=False)
class Replay:
    """``await loop(n)``: ``n`` recorded steps replayed, `REPLAYED` per `Context` (each
    built over the execution's records, as the worker builds one for every run)."""

    env: RunEnv = attrs.field(factory=_replay_env)
    execution: Execution = attrs.field(
        factory=lambda: Execution(
            id="bench-replay", workflow="bench.durable.replay", input="null", status="running"
        )
    )
    ids: tuple[str, ...] = tuple(f"step-{k}" for k in range(REPLAYED))
    records: tuple[StepRecord, ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        # One recorded result per step: {"k": k}.
        self.records = tuple(
            StepRecord(self.execution.id, step_id, k, json.dumps({"k": k}), 0.0)
            for k, step_id in enumerate(self.ids)
        )

    async def __call__(self, n: int) -> None:
        env, execution, records, ids, body = (
            self.env,
            self.execution,
            self.records,
            self.ids,
            _never_called,
        )
        left = n
        while left > 0:
            context = Context(env, execution, records)
            for k in range(min(left, len(ids))):
                if (await context.step(ids[k], body, k))["k"] != k:
                    raise RuntimeError(f"bench.durable: step {ids[k]} replayed a wrong result")
            left -= len(ids)


@asynccontextmanager
async def replay() -> AsyncIterator[Loop]:
    """The replay row's loop."""
    yield Replay()


SQLITE = f"SQLite {sqlite3.sqlite_version}, WAL, synchronous=NORMAL (no fsync per commit)"
SQLITE_FULL = (
    f"SQLite {sqlite3.sqlite_version}, WAL, SqliteStore(synchronous='full'): an fsync per "
    "commit, each in the store's thread"
)
POSTGRES = (
    "the run's throwaway local cluster (fsync=off, as in the tests), the store's pool of 8 "
    "connections used from worker threads"
)

SCENARIOS = (
    Scenario(
        id="durable.latency_sqlite",
        shape="latency_sqlite",
        label="durable: 3-step workflow, start to result (SQLite)",
        group="durable",
        who="ours",
        baseline=None,
        setup=_setup("latency_sqlite", sqlite_store, Latency),
        note=(
            "engine.start_and_wait, one workflow at a time: the execution written, claimed "
            f"by the worker, 3 steps recorded, released, with audit lines; {SQLITE}"
        ),
    ),
    Scenario(
        id="durable.latency_sqlite_full",
        shape="latency_sqlite_full",
        label="durable: 3-step workflow, start to result (SQLite, synchronous=full)",
        group="durable",
        who="ours",
        baseline=None,
        setup=_setup("latency_sqlite_full", sqlite_full_store, Latency),
        note=f"as the SQLite row, on {SQLITE_FULL}",
    ),
    Scenario(
        id="durable.latency_postgres",
        shape="latency_postgres",
        label="durable: 3-step workflow, start to result (PostgreSQL)",
        group="durable",
        who="ours",
        baseline=None,
        setup=_setup(
            "latency_postgres", lambda: postgres_store("bench_latency"), _latency_postgres
        ),
        note=f"as on SQLite, on {POSTGRES}",
    ),
    Scenario(
        id="durable.throughput_sqlite",
        shape="throughput_sqlite",
        label=f"durable: {BATCH} workflows at once, per workflow (SQLite)",
        group="durable",
        who="ours",
        baseline=None,
        setup=_setup("throughput_sqlite", sqlite_store, Batch),
        note=(
            f"{BATCH} 3-step workflows started, then all awaited; per workflow = 1 / "
            f"throughput; {SQLITE}"
        ),
    ),
    Scenario(
        id="durable.throughput_sqlite_full",
        shape="throughput_sqlite_full",
        label=f"durable: {BATCH} workflows at once, per workflow (SQLite, synchronous=full)",
        group="durable",
        who="ours",
        baseline=None,
        setup=_setup("throughput_sqlite_full", sqlite_full_store, Batch),
        note=f"as the SQLite row, on {SQLITE_FULL}",
    ),
    Scenario(
        id="durable.throughput_postgres",
        shape="throughput_postgres",
        label=f"durable: {BATCH} workflows at once, per workflow (PostgreSQL)",
        group="durable",
        who="ours",
        baseline=None,
        setup=_setup(
            "throughput_postgres", lambda: postgres_store("bench_throughput"), _batch_postgres
        ),
        note=f"as on SQLite, on {POSTGRES}",
    ),
    Scenario(
        id="durable.replay_step",
        shape="replay_step",
        label="durable: replay of one recorded step",
        group="durable",
        who="ours",
        baseline=None,
        setup=replay,
        note=(
            f"a Context built over {REPLAYED} recorded steps, then {REPLAYED} "
            "`await ctx.step(...)` that return the recorded results read back into the "
            "step's return type, without running the body; per step (reading the records "
            "from the store is not included)"
        ),
    ),
)
