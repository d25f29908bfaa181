"""Real crashes: SIGKILL a process running a durable workflow on SQLite, then restart it.

Each test runs ``crash_program`` (see its docstring) in a subprocess, waits for a marker
(or a state in the store) that says where the run is, kills it with SIGKILL, and starts a
fresh process on the same files, which must recover the execution and complete it. The
side-effect log then proves the engine's two guarantees:

1. a step whose completion was recorded never runs again (an interrupted one may);
2. the execution still ends ``completed``, with the result of one coherent run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import kernel
from kernel import durable
from kernel.durable import AuditEntry, Execution, SqliteStore, StepRecord
from tests.kernel.durable.crash_program import APPROVED, IDEMPOTENCY_KEY, NAP_SECONDS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
#: How long any one wait of a test may take before it fails (never reached when green).
DEADLINE = 10.0
POLL = 0.01


@attrs.frozen
class Finished:
    """A run that ended: its pid, when its engine was up, and the JSON line it printed."""

    pid: int
    up: float
    outcome: dict[str, Any]


@attrs.define(eq=False)
class Harness:
    """Runs ``crash_program`` for one scenario on the files of one test."""

    tmp: Path
    scenario: str
    processes: list[trio.Process] = attrs.Factory(list)
    logs: list[tuple[Path, Path]] = attrs.Factory(list)  # each run's stdout and stderr

    @property
    def db(self) -> Path:
        return self.tmp / "durable.sqlite3"

    @property
    def effects(self) -> Path:
        return self.tmp / "effects.txt"

    async def spawn(self) -> trio.Process:
        """Start a program run; its stdout and stderr go to ``run<N>.out``/``.err``."""
        number = len(self.processes) + 1
        out, err = self.tmp / f"run{number}.out", self.tmp / f"run{number}.err"
        self.logs.append((out, err))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "tests.kernel.durable.crash_program"]
        command += [str(self.db), str(self.effects), self.scenario]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = await trio.lowlevel.open_process(
                command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr
            )
        self.processes.append(process)
        return process

    def output(self) -> str:
        """Every run's output so far, for failure messages."""
        logs = [log for pair in self.logs for log in pair]
        parts = [f"--- {log.name}\n{log.read_text(errors='replace')}" for log in logs]
        return "\n".join(parts) + f"\n--- effects\n{self.effect_lines()}"

    def effect_lines(self) -> str:
        return self.effects.read_text() if self.effects.exists() else ""

    def effects_by(self) -> Counter[tuple[str, int]]:
        """How often each name (step body or marker) was written by each pid."""
        pairs = (line.split(" ") for line in self.effect_lines().splitlines())
        return Counter((name, int(pid)) for name, pid in pairs)

    def steps_by(self) -> Counter[tuple[str, int]]:
        """How often each step body ran in each process (markers left out)."""
        return Counter(
            {key: n for key, n in self.effects_by().items() if not key[0].startswith("entered:")}
        )

    def counts(self) -> Counter[str]:
        """How often each name was written, over all runs."""
        return Counter(name for name, _ in self.effects_by().elements())

    async def until(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        """Poll ``check`` until it holds; fail (showing the output) after `DEADLINE`."""
        with trio.move_on_after(DEADLINE):
            while not await check():
                for process in self.processes:
                    if process.returncode is not None and process.returncode != -signal.SIGKILL:
                        pytest.fail(f"a run exited while waiting for {what}:\n{self.output()}")
                await trio.sleep(POLL)
            return
        pytest.fail(f"timed out waiting for {what}:\n{self.output()}")

    async def marker(self, name: str, pid: int) -> float:
        """Wait until run ``pid`` wrote the marker ``entered:<name>``; return when seen."""

        async def written() -> bool:
            return self.effects_by()[(f"entered:{name}", pid)] > 0

        await self.until(f"marker entered:{name} of run {pid}", written)
        return time.time()

    async def kill(self, process: trio.Process) -> float:
        """SIGKILL the run; return the time it was dead."""
        process.send_signal(signal.SIGKILL)
        with trio.fail_after(DEADLINE):
            await process.wait()
        assert process.returncode == -signal.SIGKILL, self.output()
        return time.time()

    async def finish(self) -> Finished:
        """Run a fresh program to its end (exit 0) and say how it went."""
        process = await self.spawn()
        up = await self.marker("engine", process.pid)
        with trio.move_on_after(DEADLINE):
            await process.wait()
        assert process.returncode == 0, f"the restarted run did not finish:\n{self.output()}"
        stdout = self.logs[-1][0]
        return Finished(process.pid, up, json.loads(stdout.read_text()))

    async def inspect(self) -> tuple[Execution, list[StepRecord]]:
        """The one execution and its recorded steps, read from the SQLite file."""
        store = SqliteStore(self.db)
        await store.open()
        try:
            executions = await store.list_executions()
            assert len(executions) == 1, executions
            execution = executions[0]
            return execution, await store.list_step_results(execution.id)
        finally:
            await store.close()

    async def audit(self, execution_id: str) -> list[AuditEntry]:
        """The execution's timeline, read from the SQLite file."""
        store = SqliteStore(self.db)
        await store.open()
        try:
            return await store.list_audit_entries(execution_id)
        finally:
            await store.close()

    async def status(self, wanted: str) -> None:
        """Wait until the execution exists with status ``wanted``."""

        async def reached() -> bool:
            if not self.db.exists():
                return False
            store = SqliteStore(self.db)
            await store.open()
            try:
                found = await store.list_executions()
            finally:
                await store.close()
            return bool(found) and found[0].status == wanted

        await self.until(f"status {wanted!r}", reached)

    async def stop_all(self) -> None:
        """Kill and reap every run still alive (after a failed test)."""
        for process in self.processes:
            if process.returncode is None:
                process.kill()
            await process.wait()


@pytest.fixture
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    made = Harness(tmp_path, request.param)
    try:
        yield made
    finally:
        with trio.CancelScope(shield=True):
            await made.stop_all()


def step_ids(steps: list[StepRecord]) -> list[str]:
    return [step.step_id for step in steps]


def assert_completed(execution: Execution, finished: Finished) -> None:
    """Guarantee 2: completed, with the result the program printed, no attempt spent."""
    assert execution.status == "completed"
    assert execution.idempotency_key == IDEMPOTENCY_KEY
    assert execution.owner is None
    assert execution.attempt == 0  # a crash is not a failure of the body
    assert finished.outcome["execution"] == execution.id
    assert json.loads(execution.result or "null") == finished.outcome["result"]


@pytest.mark.parametrize("harness", ["between"], indirect=True)
async def test_killed_between_steps(harness: Harness) -> None:
    first = await harness.spawn()
    await harness.marker("between", first.pid)
    execution, steps = await harness.inspect()
    assert execution.status == "running"
    assert execution.owner is not None
    assert f":{first.pid}:" in execution.owner
    assert step_ids(steps) == ["one"]
    lease_until = execution.lease_until
    assert lease_until is not None

    await harness.kill(first)
    second = await harness.finish()

    assert second.outcome["result"] == {
        "one": {"step": "one", "pid": first.pid},  # replayed from its record
        "two": {"step": "two", "pid": second.pid},
    }
    assert harness.steps_by() == Counter({("one", first.pid): 1, ("two", second.pid): 1})
    assert harness.counts()["entered:between"] == 2, harness.output()
    execution, steps = await harness.inspect()
    assert_completed(execution, second)
    assert [(s.step_id, s.position) for s in steps] == [("one", 0), ("two", 1)]
    # Taken back at startup from the dead process, not after its lease ran out.
    assert steps[1].completed_at < lease_until


@pytest.mark.parametrize("harness", ["inside"], indirect=True)
async def test_killed_inside_a_step(harness: Harness) -> None:
    first = await harness.spawn()
    await harness.marker("two", first.pid)
    execution, steps = await harness.inspect()
    assert execution.status == "running"
    assert step_ids(steps) == ["one"]  # step two entered, not recorded
    lease_until = execution.lease_until
    assert lease_until is not None

    await harness.kill(first)
    second = await harness.finish()

    assert second.outcome["result"] == {
        "one": {"step": "one", "pid": first.pid},
        "two": {"step": "two", "pid": second.pid},
        "three": {"step": "three", "pid": second.pid},
    }
    # Recorded before the kill: never again. Interrupted: entered again, and its effect
    # comes from the second body only.
    assert harness.steps_by() == Counter(
        {("one", first.pid): 1, ("two", second.pid): 1, ("three", second.pid): 1}
    ), harness.output()
    assert harness.effects_by()[("entered:two", first.pid)] == 1
    assert harness.effects_by()[("entered:two", second.pid)] == 1
    execution, steps = await harness.inspect()
    assert_completed(execution, second)
    assert step_ids(steps) == ["one", "two", "three"]
    assert steps[2].completed_at < lease_until


@pytest.mark.parametrize("harness", ["sleep"], indirect=True)
async def test_killed_during_a_durable_sleep(harness: Harness) -> None:
    first = await harness.spawn()
    await harness.status("sleeping")
    execution, steps = await harness.inspect()
    assert step_ids(steps) == ["one", "nap"]
    wake_at = json.loads(steps[1].result)["wake_at"]
    assert execution.wake_at == wake_at
    assert execution.owner is None  # a sleeping execution holds no worker

    killed = await harness.kill(first)
    assert killed < wake_at, "the nap ended before the kill: the test proves nothing"
    # Part of the nap passes while no process runs; restart with about 1 s of it left.
    await trio.sleep(max(0.0, wake_at - 1.0 - time.time()))
    second = await harness.finish()

    execution, steps = await harness.inspect()
    assert_completed(execution, second)
    assert step_ids(steps) == ["one", "nap", "two"]
    assert json.loads(steps[1].result) == {"wake_at": wake_at}  # the first record stands
    # Woke at the stored time, or as soon as the restarted engine was up if that was
    # later: a nap started over would have woken NAP_SECONDS after one of them at least.
    woke = steps[2].completed_at
    assert wake_at <= woke < max(wake_at, second.up) + NAP_SECONDS / 2, (wake_at, second, woke)
    audit = await harness.audit(execution.id)
    assert [a.step_id for a in audit if a.kind == "sleep_started"] == ["nap"]
    assert [a.data["to"] for a in audit if a.kind == "status_changed"] == [
        "pending",
        "sleeping",
        "completed",
    ]
    assert second.outcome["result"] == {
        "one": {"step": "one", "pid": first.pid},
        "two": {"step": "two", "pid": second.pid},
    }
    assert harness.steps_by() == Counter({("one", first.pid): 1, ("two", second.pid): 1})


@pytest.mark.parametrize("harness", ["signal"], indirect=True)
async def test_killed_while_waiting_for_a_signal(harness: Harness) -> None:
    first = await harness.spawn()
    await harness.status("waiting")
    await harness.kill(first)
    execution, steps = await harness.inspect()
    assert execution.waiting_for == "approved"
    assert step_ids(steps) == ["one"]

    # While no worker runs, an engine without a worker (an HTTP process, say) signals.
    sender = durable.engine(
        "durable", store=SqliteStore(harness.db), worker=False, recover_on_startup=False
    )
    async with kernel.run(kernel.App("sender", register=[sender])) as runtime:
        await runtime.resource(sender).signal(execution.id, APPROVED, {"by": "alice"})
    execution, steps = await harness.inspect()
    assert execution.status == "waiting"  # buffered: nobody ran the workflow
    assert step_ids(steps) == ["one"]

    second = await harness.finish()

    assert second.outcome["result"] == {
        "one": {"step": "one", "pid": first.pid},
        "approval": {"by": "alice"},
        "two": {"step": "two", "pid": second.pid},
    }
    assert harness.steps_by() == Counter({("one", first.pid): 1, ("two", second.pid): 1})
    execution, steps = await harness.inspect()
    assert_completed(execution, second)
    assert step_ids(steps) == ["one", "approval", "two"]
    assert json.loads(steps[1].result) == {"kind": "signal", "payload": {"by": "alice"}}
    audit = await harness.audit(execution.id)
    assert [a.step_id for a in audit if a.kind == "signal_delivered"] == ["approval"]
