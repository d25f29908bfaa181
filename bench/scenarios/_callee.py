"""The measured callees: the cheapest async and sync functions of one argument."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


async def f(x: int) -> int:
    """The async callee: returns its argument, no checkpoint."""
    return x


def g(x: int) -> int:
    """The sync callee, for sync-only peers."""
    return x


class Boom(Exception):
    """The failure raised by the failure-path callees."""


def flaky(failures: int) -> Callable[[int], Awaitable[int]]:
    """An async callee that raises `Boom` ``failures`` times, then returns, and again."""
    remaining = failures

    async def call(x: int) -> int:
        nonlocal remaining
        if remaining:
            remaining -= 1
            raise Boom
        remaining = failures
        return x

    return call
