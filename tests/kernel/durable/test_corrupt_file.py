"""Guarantee 6 across processes: rows of a SQLite file corrupted under a running worker
process (and while it is down) fail alone; the process keeps working, and restarts.

The worker runs in a subprocess (``sqlite_worker_program.py``); the test starts executions
through an engine with ``worker=False`` on the same file and corrupts rows with sqlite3.
Before the fix, the first corrupt time killed the worker (``TypeError`` in its idle
arithmetic), and every restart died again within seconds.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import kernel
from kernel.durable import Engine
from tests.kernel.durable.corruption import corrupt
from tests.kernel.durable.helpers import ended
from tests.kernel.durable.sqlite_worker_program import Flows, build_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
#: How long any one wait may take before the test fails (never reached when green).
DEADLINE = 10.0


@asynccontextmanager
async def worker_process(
    db: Path, log: Path, *, polling_interval: float = 0.05
) -> AsyncIterator[trio.Process]:
    """A worker process on ``db`` (stderr to ``log``); stopped with SIGTERM at the end of
    the block, which it must survive to exit 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    program = "tests.kernel.durable.sqlite_worker_program"
    command = [sys.executable, "-m", program, str(db), str(polling_interval)]
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            command, cwd=ROOT, env=env, stdout=stderr, stderr=stderr
        )
    try:
        yield process
        assert process.returncode is None, f"the worker died:\n{await trio.Path(log).read_text()}"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(DEADLINE):
            await process.wait()
        assert process.returncode == 0, await trio.Path(log).read_text()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def until_status(front: Engine, execution_id: str, status: str) -> None:
    with trio.fail_after(DEADLINE):
        while (await front.get_execution(execution_id)).status != status:  # noqa: ASYNC110
            await trio.sleep(0.02)


async def fails_naming(front: Engine, execution_id: str, column: str) -> None:
    with trio.fail_after(DEADLINE):
        failed = await ended(front, execution_id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.startswith(
        f"CorruptRecordError: execution {execution_id!r} cannot be read back: {column} holds "
    )


async def echoes(front: Engine, flows: Flows, value: Any) -> None:
    """A fresh execution still runs to its end."""
    assert (await front.start_and_wait(flows.echo, value, timeout=DEADLINE))[1] == value


async def test_a_worker_process_outlives_rows_corrupted_under_it_and_restarts(
    tmp_path: Path,
) -> None:
    db = tmp_path / "durable.sqlite3"
    app, engine, flows = build_app(str(db), worker=False)
    async with kernel.run(app) as runtime:
        front: Engine = runtime.resource(engine)
        async with worker_process(db, tmp_path / "run1.log"):
            await echoes(front, flows, "one")
            nap, hold = await front.start(flows.nap), await front.start(flows.hold)
            await until_status(front, nap, "sleeping")
            await until_status(front, hold, "running")
            await corrupt(front.store, "executions", nap, "wake_at", "abc")
            await corrupt(front.store, "executions", hold, "lease_until", "abc")
            await fails_naming(front, nap, "wake_at")
            await fails_naming(front, hold, "lease_until")
            await echoes(front, flows, "two")
        # While no worker runs: a pending execution gets a status no code knows.
        lost = await front.start(flows.echo, "never")
        await corrupt(front.store, "executions", lost, "status", "bogus")
        async with worker_process(db, tmp_path / "run2.log"):
            await echoes(front, flows, "three")
            await fails_naming(front, lost, "status")
