"""Small helpers of the shared primitives' tests."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio

__all__ = ["eventually", "eventually_async"]


async def eventually(predicate: Callable[[], bool], *, within: float, step: float = 0.01) -> float:
    """Poll ``predicate`` (real time) until it holds; the seconds it took. Fails after
    ``within`` seconds: what a real Redis does cannot be waited for on an Event."""
    started = trio.current_time()
    for _ in range(math.ceil(within / step) + 1):
        if predicate():
            return trio.current_time() - started
        await trio.sleep(step)
    raise AssertionError(f"not true within {within:g} s")


async def eventually_async(
    check: Callable[[], Awaitable[bool]], *, within: float, step: float = 0.01
) -> float:
    """`eventually` for a check that needs a round trip (a look at Redis)."""
    started = trio.current_time()
    for _ in range(math.ceil(within / step) + 1):
        if await check():
            return trio.current_time() - started
        await trio.sleep(step)
    raise AssertionError(f"not true within {within:g} s")
