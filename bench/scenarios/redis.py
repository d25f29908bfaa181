"""Shared primitives on Redis (``resilience.redis``), beside one coredis round trip.

The floors are one coredis ``PING`` and one ``GET`` on loopback, with the same client as
ours. Ours: a shared limiter's ``acquire`` (token bucket and sliding window, never
waiting), a shared breaker's closed-state call (no round trip of its own: compare it with
the in-process breaker), a shared bulkhead's enter and exit (two round trips), a shared
cache's hit. Throughput: four processes on one shared limiter, decisions per second in
total. The server is a throwaway ``redis-server`` (``bench.redis_server``); without one the
rows are unavailable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from bench import redis_server
from bench._scenario import Scenario, Unavailable
from bench._timing import Loop
from bench.scenarios._callee import f
from bench.worker_processes import worker_processes

#: Processes of the throughput row.
WORKERS = 4
WORKER = Path(__file__).resolve().parent.parent / "redis_worker.py"


def _shared() -> Any:
    try:
        from resilience import redis as shared

        shared.Store  # noqa: B018 - touched: coredis must be importable
        import coredis  # noqa: F401
    except ImportError as exc:
        raise Unavailable(
            f"the redis rows need coredis: pip install -e '.[redis]' ({exc})"
        ) from None
    return shared


@asynccontextmanager
async def _store() -> AsyncIterator[Any]:
    shared = _shared()
    async with (
        redis_server.redis() as url,
        shared.Store.from_url(url, prefix="bench", op_timeout=5.0) as store,
    ):
        yield store


@asynccontextmanager
async def ping() -> AsyncIterator[Loop]:
    """``await client.ping()``: one round trip."""
    async with _store() as store:
        client = store.client

        async def loop(n: int) -> None:
            for _ in range(n):
                await client.ping()

        yield loop


@asynccontextmanager
async def get() -> AsyncIterator[Loop]:
    """``await client.get(key)`` of a small value."""
    async with _store() as store:
        client = store.client
        await client.set("bench:get", '{"id":7,"name":"user-7"}')

        async def loop(n: int) -> None:
            for _ in range(n):
                await client.get("bench:get")

        yield loop


def _limiter(algorithm: str) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Loop]:
        shared = _shared()
        async with _store() as store:
            limiter = shared.RateLimiter(
                store, name=f"bench-{algorithm}", rate=10_000_000, per=1.0, algorithm=algorithm
            )

            async def loop(n: int) -> None:
                acquire = limiter.acquire
                for _ in range(n):
                    await acquire()

            yield loop

    return setup


@asynccontextmanager
async def breaker() -> AsyncIterator[Loop]:
    """``await shared.CircuitBreaker(...).call(f, x)``, closed."""
    shared = _shared()
    async with _store() as store:
        cb = shared.CircuitBreaker(store, name="bench")
        await cb.call(f, 0)  # the first call fetches the fleet's view
        fn = f

        async def loop(n: int) -> None:
            call = cb.call
            for i in range(n):
                await call(fn, i)

        yield loop


@asynccontextmanager
async def bulkhead() -> AsyncIterator[Loop]:
    """``async with shared.Bulkhead(...): pass``: a permit taken and given back."""
    shared = _shared()
    async with _store() as store:
        bh = shared.Bulkhead(store, name="bench", max_concurrent=10)

        async def loop(n: int) -> None:
            for _ in range(n):
                async with bh:
                    pass

        yield loop


@asynccontextmanager
async def cache_hit() -> AsyncIterator[Loop]:
    """``await shared.Cache(...).get_or_compute(key, fn)`` of a cached dict."""
    shared = _shared()
    async with _store() as store:
        cache = shared.Cache(store, name="bench", ttl=3600)

        async def profile() -> dict[str, object]:
            return {"id": 7, "name": "user-7"}

        await cache.get_or_compute("7", profile)

        async def loop(n: int) -> None:
            get_or_compute = cache.get_or_compute
            for _ in range(n):
                await get_or_compute("7", profile)

        yield loop


@attrs.define(eq=False)
class Fleet:
    """``await loop(n)``: ``n`` decisions of one shared limiter, split over `WORKERS`
    processes (started once, each its own store), all at once. Per decision = wall time /
    ``n``; `details` gives the total decisions per second."""

    processes: list[trio.Process]
    size: int = 0
    decisions: int = 0
    wall_ns: int = 0

    @property
    def min_calls(self) -> int:
        return WORKERS * 50

    async def __call__(self, n: int) -> None:
        if n != self.size:  # figures of the latest calls of one size (not the calibration)
            self.size, self.decisions, self.wall_ns = n, 0, 0
        share = max(1, n // WORKERS)
        began = time.perf_counter_ns()
        async with trio.open_nursery() as nursery:
            for process in self.processes:
                nursery.start_soon(self._order, process, share)
        self.wall_ns += time.perf_counter_ns() - began
        self.decisions += share * WORKERS

    @staticmethod
    async def _order(process: trio.Process, share: int) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        await process.stdin.send_all(f"{share}\n".encode())
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = await process.stdout.receive_some(64)
            if not chunk:
                raise RuntimeError("a bench worker process ended")
            answer += chunk
        if answer.strip() != b"done":
            raise RuntimeError(f"a bench worker answered {answer!r}")

    def details(self) -> str | None:
        if not self.decisions:
            return None
        rate = self.decisions * 1e9 / max(self.wall_ns, 1)
        return f"{rate:,.0f} decisions/s in total ({WORKERS} processes, one shared limiter)"


@asynccontextmanager
async def fleet() -> AsyncIterator[Loop]:
    _shared()
    async with (
        redis_server.redis() as url,
        worker_processes([sys.executable, str(WORKER), url], WORKERS) as processes,
    ):
        yield Fleet(processes)


def _row(
    key: str, label: str, setup: Any, *, baseline: str | None = None, **extra: Any
) -> Scenario:
    return Scenario(
        id=f"redis.{key}",
        label=label,
        group="redis",
        who="ours" if not key.startswith(("ping", "get")) else "coredis",
        setup=setup,
        baseline=baseline,
        **extra,
    )


SCENARIOS = (
    _row("ping", "coredis: PING round trip (the floor)", ping),
    _row("get", "coredis: GET of a small value", get),
    _row(
        "limiter",
        "ours: shared RateLimiter.acquire (token bucket)",
        _limiter("token_bucket"),
        shape="limiter",
    ),
    _row(
        "limiter_window",
        "ours: shared RateLimiter.acquire (sliding window)",
        _limiter("sliding_window"),
    ),
    _row(
        "breaker",
        "ours: shared CircuitBreaker.call, closed",
        breaker,
        baseline="floor.bare",
        note="no round trip of its own: a background sync flushes every 0.1 s",
    ),
    _row("bulkhead", "ours: async with shared Bulkhead (enter+exit)", bulkhead),
    _row("cache_hit", "ours: shared Cache hit", cache_hit),
    _row(
        "throughput",
        f"ours: {WORKERS} processes x one shared limiter, per decision",
        fleet,
        note="1 / the total decisions per second of the processes together",
    ),
)
