"""Shared helpers for the durable engine's tests: an app with an engine and workflows.

Workflows depend on `ENGINE` (``deps={"durable": ENGINE}``); `running_engine` replaces it
with an engine over the store and options a test asks for (a kernel override keeps the
id), so workflow definitions need not know them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

import kernel
from kernel import durable

__all__ = [
    "ENGINE",
    "audit_of",
    "ended",
    "recorded",
    "running_engine",
    "workflow",
]

#: The engine resource workflows depend on; `running_engine` overrides it.
ENGINE: kernel.Resource = durable.engine("durable", store=durable.MemoryStore())


def workflow(
    id: str, *, defaults: Any = None, **task_options: Any
) -> Callable[[Callable[..., Any]], kernel.Task]:
    """``@workflow("id")``: a task tagged as a workflow, with the engine as ``durable``."""
    return kernel.task(
        id,
        deps={"durable": ENGINE},
        tags=[durable.workflow(defaults=defaults)],
        **task_options,
    )


@asynccontextmanager
async def running_engine(
    *definitions: object, store: durable.Store | None = None, **options: Any
) -> AsyncIterator[tuple[kernel.Runtime, durable.Engine]]:
    """Run an app registering ``definitions`` and an engine over ``store`` (a fresh
    `MemoryStore` by default) built with ``options``; yield ``(runtime, engine)``."""
    replacement = durable.engine(
        "durable", store=store if store is not None else durable.MemoryStore(), **options
    )
    app = kernel.App(
        "app",
        register=[ENGINE, *definitions],
        overrides=[kernel.override(ENGINE, replacement)],
    )
    async with kernel.run(app) as runtime:
        yield runtime, runtime.resource(ENGINE)


async def ended(
    engine: durable.Engine, execution_id: str, *, poll: float = 0.02
) -> durable.Execution:
    """Poll until the execution reads back ended. Until a worker's claim has failed an
    unreadable one, reading it raises `CorruptRecordError`: that is waited out."""
    while True:
        with contextlib.suppress(durable.CorruptRecordError):
            execution = await engine.store.get_execution(execution_id)
            if execution is not None and execution.terminal:
                return execution
        await trio.sleep(poll)


async def recorded(engine: durable.Engine, execution_id: str) -> dict[str, Any]:
    """The execution's recorded steps: step id -> result (parsed JSON), in record order."""
    records = await engine.store.list_step_results(execution_id)
    return {record.step_id: json.loads(record.result) for record in records}


async def audit_of(
    engine: durable.Engine, execution_id: str, kind: str | None = None
) -> list[durable.AuditEntry]:
    """The execution's audit entries (only those of ``kind`` when given)."""
    entries = await engine.store.list_audit_entries(execution_id)
    return [entry for entry in entries if kind is None or entry.kind == kind]
