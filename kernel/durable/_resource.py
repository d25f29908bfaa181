"""``kernel.durable.engine(...)``: the engine as a kernel resource."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from datetime import timedelta

import trio

from kernel._definitions import Resource, resource
from kernel._errors import DefinitionError, KernelError
from kernel._scope import Scope
from kernel.durable._engine import Engine
from kernel.durable._options import EngineOptions
from kernel.durable._store import Store
from kernel.durable._worker import Worker

__all__ = ["engine"]


async def _store_answers(engine: Engine) -> None:
    """The engine's health: its store answers a query."""
    await engine.store.next_due()


def engine(
    id: str,
    *,
    store: Store,
    worker: bool = True,
    polling_interval: float | timedelta = 1.0,
    recover_on_startup: bool = True,
    max_attempts: int = 3,
    claim_ttl: float | timedelta = 30.0,
    audit: bool = True,
    max_concurrent: int = 16,
    concurrency: int | None = None,
) -> Resource[Engine]:
    """Declare a durable engine resource; its value is an `Engine`.

    - ``store``: where executions live: `MemoryStore` (tests), `SqliteStore` (embedded),
      `PostgresStore` (many workers).
    - ``worker``: run executions in this process (False: only start/signal/inspect, for
      processes that serve HTTP while workers run elsewhere).
    - ``polling_interval``: seconds between looks at the store for work written by other
      processes (timers and in-process starts wake the worker at once).
    - ``recover_on_startup``: call `Engine.recover` when the engine starts.
    - ``max_attempts``: runs of a failing body before the execution is ``failed`` (waits
      of 1, 2, 4, ... s between them).
    - ``claim_ttl``: seconds a worker's claim on a running execution lasts without renewal
      (renewed every third of it); a crashed worker's executions go to others after it.
    - ``audit``: keep the timeline of each execution (``store.list_audit_entries``).
    - ``max_concurrent``: executions this worker runs at once (``concurrency=``, its old
      name, still works with a `DeprecationWarning`).
    """
    if concurrency is not None:
        warnings.warn(
            "kernel.durable.engine(concurrency=...) is deprecated: use max_concurrent=",
            DeprecationWarning,
            stacklevel=2,
        )
        max_concurrent = concurrency
    options = EngineOptions(
        worker=worker,
        polling_interval=polling_interval,
        recover_on_startup=recover_on_startup,
        max_attempts=max_attempts,
        claim_ttl=claim_ttl,
        audit=audit,
        max_concurrent=max_concurrent,
    )
    if not isinstance(store, Store):
        raise DefinitionError(
            f"kernel.durable.engine {id!r}: store must be a MemoryStore, SqliteStore, "
            f"PostgresStore or another kernel.durable.Store, got {store!r}"
        )

    async def durable_engine(scope: Scope) -> AsyncIterator[Engine]:
        if scope.runtime is None:
            raise KernelError(f"durable engine {scope.id!r}: needs a runtime")
        await store.open()
        value: Engine | None = None
        try:
            value = Engine(scope.id, store, scope.runtime, options)
            if options.recover_on_startup:
                await value.recover()
            if options.worker:
                value.worker = Worker(value)
                scope.nursery.start_soon(value.worker.run, name=f"{scope.id}.worker")
            yield value
            value.disposing = True
        finally:
            if value is not None:
                value.unwatch()
            with trio.CancelScope(shield=True):
                await store.close()

    return resource(id, health=_store_answers)(durable_engine)
