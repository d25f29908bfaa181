"""The floor: a bare call and trio's own primitives, the yardsticks for everything else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from bench._scenario import BARE, SYNC_BARE, Scenario
from bench._timing import Loop
from bench.scenarios._callee import f, g


@asynccontextmanager
async def bare() -> AsyncIterator[Loop]:
    """``await f(x)``."""
    fn = f

    async def loop(n: int) -> None:
        for i in range(n):
            await fn(i)

    yield loop


@asynccontextmanager
async def sync_bare() -> AsyncIterator[Loop]:
    """``g(x)``, a plain function called from async code."""
    gn = g

    async def loop(n: int) -> None:
        for i in range(n):
            gn(i)

    yield loop


@asynccontextmanager
async def move_on_after() -> AsyncIterator[Loop]:
    """``with trio.move_on_after(10): await f(x)``."""
    fn = f

    async def loop(n: int) -> None:
        for i in range(n):
            with trio.move_on_after(10):
                await fn(i)

    yield loop


@asynccontextmanager
async def capacity_limiter() -> AsyncIterator[Loop]:
    """``async with trio.CapacityLimiter(10): await f(x)``."""
    fn = f
    limiter = trio.CapacityLimiter(10)

    async def loop(n: int) -> None:
        for i in range(n):
            async with limiter:
                await fn(i)

    yield loop


@asynccontextmanager
async def checkpoint() -> AsyncIterator[Loop]:
    """``await trio.lowlevel.checkpoint(); await f(x)``."""
    fn = f
    cp = trio.lowlevel.checkpoint

    async def loop(n: int) -> None:
        for i in range(n):
            await cp()
            await fn(i)

    yield loop


SCENARIOS = (
    Scenario(
        id=BARE, label="bare await f(x)", group="floor", who="python", setup=bare, baseline=None
    ),
    Scenario(
        id=SYNC_BARE,
        label="bare sync g(x)",
        group="floor",
        who="python",
        setup=sync_bare,
        baseline=None,
    ),
    Scenario(
        id="floor.checkpoint",
        label="trio: checkpoint() + f",
        group="floor",
        who="trio",
        setup=checkpoint,
    ),
    Scenario(
        id="floor.capacity_limiter",
        shape="bulkhead",
        label="trio: CapacityLimiter",
        group="bulkhead",
        who="trio",
        setup=capacity_limiter,
    ),
    Scenario(
        id="floor.move_on_after",
        shape="timeout",
        label="trio: move_on_after",
        group="timeout",
        who="trio",
        setup=move_on_after,
    ),
)
