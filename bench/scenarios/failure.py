"""Failure paths: rejecting with an open circuit; retrying twice (zero wait) then success.

The retry rows call a callee that fails twice then succeeds, so each measured call is
three attempts and two zero-second sleeps (each a trio checkpoint) under every library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import stamina
import tenacity

import resilience as rs
from bench._scenario import Scenario
from bench._timing import Loop
from bench.scenarios._callee import Boom, f, flaky


@asynccontextmanager
async def circuit_open() -> AsyncIterator[Loop]:
    """``await breaker.call(f, x)`` rejected with `rs.CircuitOpen` (opened by failures)."""
    fn = f
    breaker = rs.CircuitBreaker(failure_threshold=5, reset_timeout=3600.0)
    failing = flaky(5)
    for i in range(5):
        with suppress(Boom):
            await breaker.call(failing, i)
    if breaker.state is not rs.CircuitState.OPEN:
        raise RuntimeError(f"circuit_open: the breaker should be open, it is {breaker.state}")

    async def loop(n: int) -> None:
        for i in range(n):
            # Not contextlib.suppress: a context manager would add its own cost to each call.
            try:  # noqa: SIM105
                await breaker.call(fn, i)
            except rs.CircuitOpen:
                pass

    yield loop


@asynccontextmanager
async def retry_ours() -> AsyncIterator[Loop]:
    """``await rs.Retry(attempts=3, wait=constant(0)).call(flaky, x)``."""
    fn = flaky(2)
    retry = rs.Retry(attempts=3, wait=rs.backoff.constant(0.0))

    async def loop(n: int) -> None:
        for i in range(n):
            await retry.call(fn, i)

    yield loop


@asynccontextmanager
async def retry_tenacity() -> AsyncIterator[Loop]:
    """``@tenacity.retry(stop=3 attempts, wait=none)`` around the flaky callee."""
    decorated = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), reraise=True
    )(flaky(2))

    async def loop(n: int) -> None:
        for i in range(n):
            await decorated(i)

    yield loop


@asynccontextmanager
async def retry_stamina() -> AsyncIterator[Loop]:
    """``@stamina.retry(on=Boom, attempts=3, wait 0)``; its retry logging switched off."""
    decorated = stamina.retry(on=Boom, attempts=3, wait_initial=0, wait_max=0, wait_jitter=0)(
        flaky(2)
    )

    async def loop(n: int) -> None:
        for i in range(n):
            await decorated(i)

    stamina.instrumentation.set_on_retry_hooks([])
    try:
        yield loop
    finally:
        stamina.instrumentation.set_on_retry_hooks(None)


SCENARIOS = (
    Scenario(
        id="failure.circuit_open",
        label="ours: reject, circuit open",
        group="failure path",
        who="ours",
        setup=circuit_open,
    ),
    Scenario(
        id="failure.retry_ours",
        label="ours: Retry, 2 failures then success",
        group="failure path",
        who="ours",
        setup=retry_ours,
    ),
    Scenario(
        id="failure.retry_tenacity",
        label="tenacity: @retry, 2 failures then success",
        group="failure path",
        who="tenacity",
        setup=retry_tenacity,
    ),
    Scenario(
        id="failure.retry_stamina",
        label="stamina: @retry, 2 failures then success",
        group="failure path",
        who="stamina",
        setup=retry_stamina,
    ),
)
