"""Checked by mypy (``test_typing.py``), never run: what a user's editor infers for the
values and results the runtime hands out, and the options it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, assert_type

import kernel
import middleware as mw
import resilience as rs


class Database:
    async def fetch(self, key: str) -> bytes:
        return key.encode()


@kernel.resource("db")
async def db() -> AsyncIterator[Database]:
    yield Database()


@kernel.resource("settings")
async def settings() -> dict[str, int]:
    return {"port": 8000}


@kernel.task("lookup", deps={"db": db})
async def lookup(key: str, *, db: Database) -> bytes:
    return await db.fetch(key)


@kernel.task("count")
async def count(items: list[int]) -> int:
    return len(items)


engine = kernel.durable.engine("durable", store=kernel.durable.MemoryStore())


async def uses(rt: kernel.Runtime, host: kernel.Host) -> None:
    assert_type(rt.resource(engine), kernel.durable.Engine)
    assert_type(db, kernel.Resource[Database])
    assert_type(rt.resource(db), Database)
    assert_type(rt.resource(settings), dict[str, int])
    assert_type(rt.resource(kernel.App("app", register=[db])), dict[str, Any])
    assert_type(await rt.run_task(lookup, "k"), bytes)
    assert_type(await rt.run_task(count, [1, 2]), int)
    assert_type(await host.run_task(count, [1, 2]), Any)
    assert_type(await lookup("k", db=Database()), bytes)  # the bare body, deps passed
    await lookup(3, db=Database())  # type: ignore[arg-type]
    untyped: kernel.Task = lookup  # the bare names still mean "any"
    anything: kernel.Resource = db
    assert_type(untyped, kernel.Task[..., Any])
    assert_type(anything, kernel.Resource[Any])


def options() -> None:
    mw.retry(attempts=3, wait=rs.backoff.constant(0.1), on=ConnectionError)
    mw.retry(atempts=3)  # type: ignore[call-arg]
    mw.circuit_breaker(failure_threshold=3, reset_timeout=10.0)
    mw.circuit_breaker(failure_treshold=3)  # type: ignore[call-arg]
    mw.rate_limit(rate=5, per=1.0, key=lambda call: call.args[0])
    mw.bulkhead(max_concurrent=4, max_queued=2)
    mw.cache(ttl=30.0, max_size=10)
    mw.hedge(delay=0.5, max_attempts=3)
    mw.fallback(value=None)
