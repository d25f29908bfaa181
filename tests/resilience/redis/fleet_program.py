"""One process of the fleet tests (``test_fleet.py``): it runs every phase of the fleet's
schedule against the shared primitives and prints what it saw as one JSON object.

    python -m tests.resilience.redis.fleet_program URL PREFIX INDEX START

Phases start at fixed offsets from ``START`` (``time.time()`` of the parent), so that the
processes hammer each primitive together. Times reported are ``time.time()`` (one machine:
one clock), except admissions, which are the Redis server's time of each admission.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio

import resilience as rs
from resilience import redis as shared

#: Offsets (seconds from START) of each phase, and how long the hammering ones last.
WINDOW_AT, BUCKET_AT, HAMMER = 0.0, 1.6, 1.4
CACHE_AT = 3.2
BULKHEAD_AT, BULKHEAD_FOR = 3.6, 1.0
BREAKER_AT = 5.6
TASKS = 3  # concurrent callers per process


async def sleep_until_wall(at: float) -> None:
    await trio.sleep(max(0.0, at - time.time()))


async def hammer(limiter: shared.RateLimiter, until: float) -> list[float]:
    admissions: list[float] = []

    async def caller() -> None:
        while time.time() < until:
            decision = await limiter._acquire(None, 1)
            assert decision is not None
            admissions.append(decision.at)

    async with trio.open_nursery() as nursery:
        for _ in range(TASKS):
            nursery.start_soon(caller)
    return admissions


async def main(url: str, prefix: str, index: int, start: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with shared.Store.from_url(url, prefix=prefix, op_timeout=2.0) as store:
        client = store.client
        window = shared.RateLimiter(
            store, name="window", rate=20, per=0.5, algorithm="sliding_window"
        )
        bucket = shared.RateLimiter(store, name="bucket", rate=20, per=0.5, burst=5)
        await sleep_until_wall(start + WINDOW_AT)
        out["window"] = await hammer(window, start + WINDOW_AT + HAMMER)
        await sleep_until_wall(start + BUCKET_AT)
        out["bucket"] = await hammer(bucket, start + BUCKET_AT + HAMMER)

        # A cache miss asked by every process at once: computed once.
        cache = shared.Cache(store, name="fleet", ttl=60)

        async def compute() -> dict[str, int]:
            await client.incr(f"{prefix}:computed")
            await trio.sleep(0.2)
            return {"by": index}

        await sleep_until_wall(start + CACHE_AT)
        out["cache"] = await cache.get_or_compute("key", compute)

        # A bulkhead of 3 shared by every process: the times each task held a permit.
        bulkhead = shared.Bulkhead(
            store, name="fleet", max_concurrent=3, max_queued=100, queue_timeout=0.5
        )
        held: list[tuple[float, float]] = []

        async def hold() -> None:
            while time.time() < start + BULKHEAD_AT + BULKHEAD_FOR:
                try:
                    async with bulkhead:
                        entered = time.monotonic()
                        await trio.sleep(0.01)
                        held.append((entered, time.monotonic()))
                except rs.BulkheadFull:
                    pass  # waited too long: try again, or stop at the end of the phase

        await sleep_until_wall(start + BULKHEAD_AT)
        async with trio.open_nursery() as nursery:
            for _ in range(TASKS):
                nursery.start_soon(hold)
        out["bulkhead"] = held

        out["late"] = time.time() - (start + BREAKER_AT)  # > 0: the schedule overran
        out["breaker"] = await breaker_phase(store, index, start + BREAKER_AT)
    return out


async def breaker_phase(store: shared.Store, index: int, at: float) -> dict[str, Any]:
    """The upstream answers until ``at + 0.5``, fails for everyone until ``at + 1.0``, then
    answers slowly (0.3 s). Every process calls it in a loop and notes its failures, its
    first refusal, and the start of every call that ran after the outage (the probes)."""
    breaker = shared.CircuitBreaker(
        store, name="fleet", sync_interval=0.1, failure_threshold=5, reset_timeout=1.0
    )
    seen: dict[str, Any] = {"failed": [], "rejected_at": None, "ran": []}
    down_at, healed_at = at + 0.5, at + 1.0

    async def upstream() -> None:
        started = time.time()
        if started < down_at:
            return
        if started < healed_at:
            seen["failed"].append(started)
            raise ConnectionError("upstream down")
        seen["ran"].append(started)
        await trio.sleep(0.3)

    await sleep_until_wall(at)
    while time.time() < at + 3.5:
        try:
            await breaker.call(upstream)
        except rs.CircuitOpen:
            if seen["rejected_at"] is None:
                seen["rejected_at"] = time.time()
        except ConnectionError:
            pass
        await trio.sleep(0.005)
    return seen


if __name__ == "__main__":
    url, prefix, index, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(trio.run(main, url, prefix, index, start)))
