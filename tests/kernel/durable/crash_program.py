"""A durable workflow app for `test_crash` to SIGKILL and restart.

Run as ``python -m tests.kernel.durable.crash_program DB_PATH EFFECTS_PATH SCENARIO``
(from the repository root). It starts the SCENARIO's workflow on a `SqliteStore` at
DB_PATH unless an execution already exists (idempotency key ``"crash"``), so a restart
recovers the execution a killed run left behind instead of starting another. It waits for
the end and prints ``{"execution": id, "result": result}`` as one JSON line on stdout.

Every step body appends ``<step id> <pid>`` to EFFECTS_PATH (flushed and fsynced before
the step returns), so the test counts how often each body ran and in which process. A
*marker* ``entered:<name> <pid>`` tells the test where a run is: ``entered:engine`` once
the engine is up (it has recovered what a dead run left), the others inside a workflow,
where the first run to write a given marker blocks, for the test to kill it; later runs go
straight through.

Scenarios (``SCENARIOS``):

- ``between``: step ``one``, then a plain ``trio`` wait (not a durable operation) behind
  the marker ``entered:between``, then step ``two``.
- ``inside``: steps ``one``, ``two``, ``three``; ``two``'s body blocks behind the marker
  ``entered:two`` before it writes its effect.
- ``sleep``: step ``one``, a durable sleep ``nap`` of `NAP_SECONDS`, step ``two``.
- ``signal``: step ``one``, a wait ``approval`` for the `APPROVED` signal, step ``two``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Final

import trio

import kernel
from kernel import durable

__all__ = ["APPROVED", "IDEMPOTENCY_KEY", "NAP_SECONDS", "SCENARIOS", "Effects", "main"]

#: The signal the ``signal`` scenario waits for.
APPROVED: Final[durable.Signal[Any]] = durable.signal("approved")
#: How long the ``sleep`` scenario sleeps durably.
NAP_SECONDS: Final = 2.5
#: The idempotency key of the one execution a program run starts or finds.
IDEMPOTENCY_KEY: Final = "crash"
SCENARIOS: Final = ("between", "inside", "sleep", "signal")
#: Long enough never to be waited out in a test (renewals keep the lease meanwhile), so
#: a restart that finishes quickly proves `Engine.recover` took the dead run's lease back.
CLAIM_TTL: Final = 30.0
#: A run that is never killed nor finishes gives up after this (no orphan lingers).
LIFETIME: Final = 60.0


class Effects:
    """The side-effect log: one ``<name> <pid>`` line per step body run or marker."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, name: str) -> None:
        """Append ``name`` and this pid, durably (a SIGKILL right after keeps the line)."""
        # A few bytes to a local file: blocking the trio loop here is harmless.
        with self.path.open("a", encoding="utf-8") as file:
            file.write(f"{name} {os.getpid()}\n")
            file.flush()
            os.fsync(file.fileno())

    def count(self, name: str) -> int:
        """How many lines name ``name``."""
        if not self.path.exists():
            return 0
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return sum(1 for line in lines if line.split(" ")[0] == name)

    async def block_first_time(self, name: str) -> None:
        """Write the marker ``entered:<name>``; block forever if no run wrote it before."""
        marker = f"entered:{name}"
        self.write(marker)
        if self.count(marker) == 1:
            await trio.sleep_forever()

    async def step(self, name: str) -> dict[str, Any]:
        """A step body: record that it ran here; its result says which process ran it."""
        self.write(name)
        return {"step": name, "pid": os.getpid()}

    async def blocking_step(self, name: str) -> dict[str, Any]:
        """A step body that blocks (the first time) before it has any effect."""
        await self.block_first_time(name)
        return await self.step(name)


def build(db_path: Path, effects: Effects, scenario: str) -> tuple[kernel.App, Any, Any]:
    """The app, its engine resource and the scenario's workflow task."""
    resource = durable.engine(
        "durable",
        store=durable.SqliteStore(db_path),
        polling_interval=0.05,
        claim_ttl=CLAIM_TTL,
    )

    @kernel.task("crash.between", deps={"engine": resource}, tags=[durable.workflow()])
    async def between(_: Any, *, engine: durable.Engine) -> dict[str, Any]:
        ctx = engine.context()
        one = await ctx.step("one", effects.step, "one")
        await effects.block_first_time("between")
        two = await ctx.step("two", effects.step, "two")
        return {"one": one, "two": two}

    @kernel.task("crash.inside", deps={"engine": resource}, tags=[durable.workflow()])
    async def inside(_: Any, *, engine: durable.Engine) -> dict[str, Any]:
        ctx = engine.context()
        one = await ctx.step("one", effects.step, "one")
        two = await ctx.step("two", effects.blocking_step, "two")
        three = await ctx.step("three", effects.step, "three")
        return {"one": one, "two": two, "three": three}

    @kernel.task("crash.sleep", deps={"engine": resource}, tags=[durable.workflow()])
    async def sleep(_: Any, *, engine: durable.Engine) -> dict[str, Any]:
        ctx = engine.context()
        one = await ctx.step("one", effects.step, "one")
        await ctx.sleep(NAP_SECONDS, step_id="nap")
        two = await ctx.step("two", effects.step, "two")
        return {"one": one, "two": two}

    @kernel.task("crash.signal", deps={"engine": resource}, tags=[durable.workflow()])
    async def signal(_: Any, *, engine: durable.Engine) -> dict[str, Any]:
        ctx = engine.context()
        one = await ctx.step("one", effects.step, "one")
        approval = await ctx.wait_for_signal(APPROVED, step_id="approval")
        two = await ctx.step("two", effects.step, "two")
        return {"one": one, "approval": approval, "two": two}

    workflows = {"between": between, "inside": inside, "sleep": sleep, "signal": signal}
    workflow = workflows[scenario]
    return kernel.App("crash", register=[resource, workflow]), resource, workflow


async def run(db_path: Path, effects_path: Path, scenario: str) -> dict[str, Any]:
    """Start (or find) the scenario's execution, wait for its end, return id and result."""
    effects = Effects(effects_path)
    app, resource, workflow = build(db_path, effects, scenario)
    with trio.fail_after(LIFETIME):
        async with kernel.run(app) as runtime:
            effects.write("entered:engine")
            engine: durable.Engine = runtime.resource(resource)
            execution_id = await engine.start(
                workflow, {"scenario": scenario}, idempotency_key=IDEMPOTENCY_KEY
            )
            result = await engine.wait(execution_id)
    return {"execution": execution_id, "result": result}


def main(argv: list[str]) -> int:
    """The command line: ``DB_PATH EFFECTS_PATH SCENARIO``."""
    if len(argv) != 3 or argv[2] not in SCENARIOS:
        print(f"usage: crash_program DB_PATH EFFECTS_PATH {{{'|'.join(SCENARIOS)}}}")
        return 2
    outcome = trio.run(run, Path(argv[0]), Path(argv[1]), argv[2])
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
