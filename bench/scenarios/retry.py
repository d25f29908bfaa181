"""Retry, success path: ours beside tenacity (decorator and ``AsyncRetrying``) and stamina.

Every policy allows 3 attempts with no wait, and retries on `Boom` (or any exception), so
only the success-path bookkeeping is measured. tenacity and stamina pick ``trio.sleep``
through sniffio, so they run under trio as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import stamina
import tenacity

import resilience as rs
from bench._scenario import Scenario
from bench._timing import Loop
from bench.scenarios._callee import Boom, f


@asynccontextmanager
async def ours() -> AsyncIterator[Loop]:
    """``await rs.Retry(...).call(f, x)``."""
    fn = f
    retry = rs.Retry(attempts=3, wait=rs.backoff.constant(0.0))

    async def loop(n: int) -> None:
        for i in range(n):
            await retry.call(fn, i)

    yield loop


@asynccontextmanager
async def tenacity_decorator() -> AsyncIterator[Loop]:
    """An ``@tenacity.retry`` decorated ``async def``."""

    @tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), reraise=True)
    async def decorated(x: int) -> int:
        return x

    async def loop(n: int) -> None:
        for i in range(n):
            await decorated(i)

    yield loop


@asynccontextmanager
async def tenacity_async_retrying() -> AsyncIterator[Loop]:
    """``await tenacity.AsyncRetrying(...)(f, x)``: one retrying object reused."""
    fn = f
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), reraise=True
    )

    async def loop(n: int) -> None:
        for i in range(n):
            await retrying(fn, i)

    yield loop


@asynccontextmanager
async def stamina_decorator() -> AsyncIterator[Loop]:
    """An ``@stamina.retry(on=Boom, attempts=3)`` decorated ``async def``."""

    @stamina.retry(on=Boom, attempts=3)
    async def decorated(x: int) -> int:
        return x

    async def loop(n: int) -> None:
        for i in range(n):
            await decorated(i)

    yield loop


SCENARIOS = (
    Scenario(id="retry.ours", label="ours: Retry.call", group="retry", who="ours", setup=ours),
    Scenario(
        id="retry.tenacity",
        label="tenacity: @retry",
        group="retry",
        who="tenacity",
        setup=tenacity_decorator,
    ),
    Scenario(
        id="retry.tenacity_async_retrying",
        label="tenacity: AsyncRetrying()(f, x)",
        group="retry",
        who="tenacity",
        setup=tenacity_async_retrying,
    ),
    Scenario(
        id="retry.stamina",
        label="stamina: @retry",
        group="retry",
        who="stamina",
        setup=stamina_decorator,
    ),
)
