"""Rate limiter under its limit, bulkhead and timeout: ours (the trio peers are in floor)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import resilience as rs
from bench._scenario import Scenario
from bench._timing import Loop
from bench.scenarios._callee import f


@asynccontextmanager
async def rate_limiter() -> AsyncIterator[Loop]:
    """``await limiter.acquire(); await f(x)`` with a rate no loop can reach."""
    fn = f
    limiter = rs.RateLimiter(rate=1e12, per=1.0)

    async def loop(n: int) -> None:
        for i in range(n):
            await limiter.acquire()
            await fn(i)

    yield loop


@asynccontextmanager
async def bulkhead() -> AsyncIterator[Loop]:
    """``await rs.Bulkhead(max_concurrent=10).call(f, x)``."""
    fn = f
    bh = rs.Bulkhead(max_concurrent=10)

    async def loop(n: int) -> None:
        for i in range(n):
            await bh.call(fn, i)

    yield loop


@asynccontextmanager
async def timeout() -> AsyncIterator[Loop]:
    """``await rs.Timeout(10).call(f, x)``."""
    fn = f
    limit = rs.Timeout(10.0)

    async def loop(n: int) -> None:
        for i in range(n):
            await limit.call(fn, i)

    yield loop


SCENARIOS = (
    Scenario(
        id="limits.rate_limiter",
        label="ours: RateLimiter.acquire + f",
        group="rate limit",
        who="ours",
        setup=rate_limiter,
    ),
    Scenario(
        id="limits.bulkhead",
        shape="bulkhead",
        label="ours: Bulkhead.call",
        group="bulkhead",
        who="ours",
        setup=bulkhead,
    ),
    Scenario(
        id="limits.timeout",
        shape="timeout",
        label="ours: Timeout.call",
        group="timeout",
        who="ours",
        setup=timeout,
    ),
)
