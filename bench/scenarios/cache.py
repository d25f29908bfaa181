"""Cache: our hit beside hand-written ``cachetools`` lookups (LRU, and TTL which expires
entries like ours); our miss."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import cachetools

import resilience as rs
from bench._scenario import Scenario
from bench._timing import Loop
from bench.scenarios._callee import f

#: The key looked up by the hit scenarios (present after the first call).
KEY = 1


@asynccontextmanager
async def ours_hit() -> AsyncIterator[Loop]:
    """``await cache.get_or_compute(KEY, f, KEY)`` on a present, fresh key."""
    fn = f
    cache = rs.Cache(ttl=3600.0)
    await cache.get_or_compute(KEY, fn, KEY)

    async def loop(n: int) -> None:
        for _ in range(n):
            await cache.get_or_compute(KEY, fn, KEY)

    yield loop


@asynccontextmanager
async def ours_miss() -> AsyncIterator[Loop]:
    """``await cache.get_or_compute(k, f, k)`` with a new key every call (LRU of 64)."""
    fn = f
    cache = rs.Cache(ttl=3600.0, max_size=64)
    start = 0

    async def loop(n: int) -> None:
        nonlocal start
        for i in range(start, start + n):
            await cache.get_or_compute(i, fn, i)
        start += n

    yield loop


def _hand_written(store: cachetools.Cache[int, int]) -> Loop:
    """A hand-written lookup in ``store``: ``v = store.get(k)``; on ``None`` compute, store."""
    fn = f

    async def lookup(key: int) -> int:
        value = store.get(key)
        if value is None:
            value = await fn(key)
            store[key] = value
        return value

    async def loop(n: int) -> None:
        for _ in range(n):
            await lookup(KEY)

    return loop


@asynccontextmanager
async def cachetools_hit() -> AsyncIterator[Loop]:
    """The hand-written lookup in a ``cachetools.LRUCache`` (no expiry), key present."""
    loop = _hand_written(cachetools.LRUCache(maxsize=1024))
    await loop(1)
    yield loop


@asynccontextmanager
async def cachetools_ttl_hit() -> AsyncIterator[Loop]:
    """The same in a ``cachetools.TTLCache`` (expiry, like ours; its clock is
    ``time.monotonic``), key present."""
    loop = _hand_written(cachetools.TTLCache(maxsize=1024, ttl=3600.0))
    await loop(1)
    yield loop


SCENARIOS = (
    Scenario(
        id="cache.ours_hit",
        label="ours: Cache hit",
        group="cache",
        who="ours",
        setup=ours_hit,
    ),
    Scenario(
        id="cache.cachetools_hit",
        label="cachetools: LRUCache lookup",
        group="cache",
        who="cachetools",
        setup=cachetools_hit,
    ),
    Scenario(
        id="cache.cachetools_ttl_hit",
        label="cachetools: TTLCache lookup",
        group="cache",
        who="cachetools",
        setup=cachetools_ttl_hit,
    ),
    Scenario(
        id="cache.ours_miss",
        label="ours: Cache miss (new key)",
        group="cache",
        who="ours",
        setup=ours_miss,
    ),
)
