"""Circuit breaker, closed state: ours beside pybreaker, purgatory and aiobreaker.

pybreaker is sync-only: it guards the plain function ``g`` and its overhead is taken over
the bare sync call. aiobreaker is written for asyncio; its success path needs no event
loop, so it is tried under trio and reported as an error row if it fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import aiobreaker  # type: ignore[import-untyped]
import purgatory
import pybreaker

import resilience as rs
from bench._scenario import SYNC_BARE, Scenario
from bench._timing import Loop
from bench.scenarios._callee import f, g


@asynccontextmanager
async def ours() -> AsyncIterator[Loop]:
    """``await rs.CircuitBreaker(...).call(f, x)``."""
    fn = f
    breaker = rs.CircuitBreaker(failure_threshold=5)

    async def loop(n: int) -> None:
        for i in range(n):
            await breaker.call(fn, i)

    yield loop


@asynccontextmanager
async def ours_async_with() -> AsyncIterator[Loop]:
    """``async with breaker: await f(x)``."""
    fn = f
    breaker = rs.CircuitBreaker(failure_threshold=5)

    async def loop(n: int) -> None:
        for i in range(n):
            async with breaker:
                await fn(i)

    yield loop


@asynccontextmanager
async def pybreaker_call() -> AsyncIterator[Loop]:
    """``breaker.call(g, x)``, sync."""
    gn = g
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

    async def loop(n: int) -> None:
        for i in range(n):
            breaker.call(gn, i)

    yield loop


@asynccontextmanager
async def purgatory_breaker() -> AsyncIterator[Loop]:
    """``async with await factory.get_breaker("bench"): await f(x)``, in memory."""
    fn = f
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    await factory.initialize()

    async def loop(n: int) -> None:
        for i in range(n):
            async with await factory.get_breaker("bench"):
                await fn(i)

    yield loop


@asynccontextmanager
async def aiobreaker_call() -> AsyncIterator[Loop]:
    """``await breaker.call_async(f, x)``."""
    fn = f
    breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))

    async def loop(n: int) -> None:
        for i in range(n):
            await breaker.call_async(fn, i)

    yield loop


SCENARIOS = (
    Scenario(
        id="circuit.ours",
        label="ours: CircuitBreaker.call",
        group="circuit breaker",
        who="ours",
        setup=ours,
    ),
    Scenario(
        id="circuit.ours_async_with",
        label="ours: async with CircuitBreaker",
        group="circuit breaker",
        who="ours",
        setup=ours_async_with,
    ),
    Scenario(
        id="circuit.pybreaker",
        label="pybreaker: call(g, x) (sync)",
        group="circuit breaker",
        who="pybreaker",
        setup=pybreaker_call,
        baseline=SYNC_BARE,
    ),
    Scenario(
        id="circuit.purgatory",
        label="purgatory: async with get_breaker",
        group="circuit breaker",
        who="purgatory",
        setup=purgatory_breaker,
    ),
    Scenario(
        id="circuit.aiobreaker",
        label="aiobreaker: call_async",
        group="circuit breaker",
        who="aiobreaker",
        setup=aiobreaker_call,
        may_fail=True,
    ),
)
