"""A durable worker process on SQLite, for `test_corrupt_file` to corrupt its file under it.

``python -m tests.kernel.durable.sqlite_worker_program DB_PATH [POLLING_INTERVAL]`` runs
an app whose engine works on the `SqliteStore` at DB_PATH (polling every 0.05 s unless
told otherwise) until SIGTERM (a graceful shutdown: exit 0). The test
process builds the same app with ``worker=False`` to start executions and wait for them.
Its workflows (`Flows`): ``w.echo`` returns its input through one step, ``w.nap`` sleeps
durably for an hour, ``w.hold`` runs a step that never ends.
"""

from __future__ import annotations

import sys
from typing import Any

import attrs
import trio

import kernel
from kernel import durable

__all__ = ["Flows", "build_app"]


@attrs.frozen
class Flows:
    """The app's workflows."""

    echo: kernel.Task
    nap: kernel.Task
    hold: kernel.Task


async def _same(value: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return value


async def _forever() -> None:
    await trio.sleep_forever()


def build_app(
    db_path: str, *, worker: bool, polling_interval: float = 0.05
) -> tuple[kernel.App, kernel.Resource, Flows]:
    """The app, its engine resource on ``SqliteStore(db_path)`` and its workflows."""
    engine = durable.engine(
        "durable",
        store=durable.SqliteStore(db_path),
        worker=worker,
        polling_interval=polling_interval,
    )

    @kernel.task("w.echo", deps={"durable": engine}, tags=[durable.workflow()])
    async def echo(value: Any, *, durable: durable.Engine) -> Any:
        return await durable.context().step("same", _same, value)

    @kernel.task("w.nap", deps={"durable": engine}, tags=[durable.workflow()])
    async def nap(_: Any, *, durable: durable.Engine) -> str:
        await durable.context().sleep(3600, step_id="nap")
        return "rested"

    @kernel.task("w.hold", deps={"durable": engine}, tags=[durable.workflow()])
    async def hold(_: Any, *, durable: durable.Engine) -> None:
        await durable.context().step("hold", _forever)

    flows = Flows(echo, nap, hold)
    return kernel.App("sqlite-worker", register=[engine, echo, nap, hold]), engine, flows


def main(argv: list[str]) -> None:
    """Run a worker until SIGTERM: ``DB_PATH [POLLING_INTERVAL]``."""
    db_path, *rest = argv
    app, _, _ = build_app(db_path, worker=True, polling_interval=float(rest[0]) if rest else 0.05)
    kernel.main(app, drain_timeout=1.0)


if __name__ == "__main__":
    main(sys.argv[1:])
