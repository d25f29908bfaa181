"""Middleware pipelines wrapping ``f``: empty, 5 pass-throughs, the Runner-shaped stacks
(timeout + retry, circuit breaker) and the full stack with a cache miss on every call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import middleware as mw
import resilience as rs
from bench._scenario import Scenario
from bench._timing import Loop
from bench.scenarios._callee import f


async def passthrough(call: mw.Call, call_next: mw.Next) -> Any:
    """A middleware that does nothing but continue."""
    return await call_next(call)


def _wrapped(middlewares: Sequence[Any]) -> Callable[[int], Awaitable[int]]:
    wrapped: Callable[[int], Awaitable[int]] = mw.Pipeline(list(middlewares)).wrap(f)
    return wrapped


def _loop(wrapped: Callable[[int], Awaitable[int]]) -> Loop:
    start = 0

    # A new argument every call (cache misses in the full stack); same cost elsewhere.
    async def loop(n: int) -> None:
        nonlocal start
        for i in range(start, start + n):
            await wrapped(i)
        start += n

    return loop


@asynccontextmanager
async def empty() -> AsyncIterator[Loop]:
    """``mw.Pipeline([]).wrap(f)``."""
    yield _loop(_wrapped([]))


@asynccontextmanager
async def passthrough5() -> AsyncIterator[Loop]:
    """Five pass-through middlewares."""
    yield _loop(_wrapped([passthrough] * 5))


@asynccontextmanager
async def timeout_retry() -> AsyncIterator[Loop]:
    """``[mw.timeout(10), mw.retry(attempts=3, wait=0)]``."""
    yield _loop(_wrapped([mw.timeout(10.0), mw.retry(attempts=3, wait=rs.backoff.constant(0.0))]))


@asynccontextmanager
async def circuit_breaker() -> AsyncIterator[Loop]:
    """``[mw.circuit_breaker(failure_threshold=5)]``."""
    yield _loop(_wrapped([mw.circuit_breaker(failure_threshold=5)]))


@asynccontextmanager
async def full_stack() -> AsyncIterator[Loop]:
    """timeout, retry, circuit breaker, rate limit (never reached), cache (always missed)."""
    yield _loop(
        _wrapped(
            [
                mw.timeout(10.0),
                mw.retry(attempts=3, wait=rs.backoff.constant(0.0)),
                mw.circuit_breaker(failure_threshold=5),
                mw.rate_limit(rate=1e12, per=1.0),
                mw.cache(ttl=3600.0, max_size=64),
            ]
        )
    )


SCENARIOS = (
    Scenario(
        id="middleware.empty",
        label="ours: empty pipeline",
        group="middleware",
        who="ours",
        setup=empty,
    ),
    Scenario(
        id="middleware.passthrough5",
        shape="passthrough5",
        label="ours: 5 pass-through middleware",
        group="middleware",
        who="ours",
        setup=passthrough5,
    ),
    Scenario(
        id="middleware.timeout_retry",
        shape="timeout_retry",
        label="ours: timeout + retry",
        group="middleware",
        who="ours",
        setup=timeout_retry,
    ),
    Scenario(
        id="middleware.circuit_breaker",
        shape="circuit_breaker",
        label="ours: circuit breaker",
        group="middleware",
        who="ours",
        setup=circuit_breaker,
    ),
    Scenario(
        id="middleware.full_stack",
        label="ours: timeout+retry+breaker+rate+cache miss",
        group="middleware",
        who="ours",
        setup=full_stack,
    ),
)
