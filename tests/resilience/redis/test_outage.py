"""Redis killed in the middle of a run, then started again, under every shared primitive
at once: with ``"raise"`` every call fails with `rs.StoreUnavailable` in bounded time (never
a hang); with ``"local"`` calls go on in-process and return to shared state; in both,
cancellation still ends the callers at once, and no permit or lock is left behind."""

from __future__ import annotations

import pytest
import trio

import resilience as rs
from resilience import redis as shared
from tests.resilience.redis.conftest import new_prefix
from tests.resilience.redis.helpers import eventually, eventually_async
from tests.resilience.redis.server import RedisServer

pytestmark = pytest.mark.slow
OP_TIMEOUT = 0.2


@pytest.mark.parametrize("mode", ["raise", "local"])
async def test_a_redis_outage_under_every_primitive(own_redis: RedisServer, mode: str) -> None:
    async with shared.Store.from_url(
        own_redis.url,
        prefix=new_prefix(),
        op_timeout=OP_TIMEOUT,
        on_unavailable=mode,  # type: ignore[arg-type]
    ) as store:
        limiter = shared.RateLimiter(store, name="o", rate=1000, per=1.0)
        breaker = shared.CircuitBreaker(store, name="o", sync_interval=0.05)
        bulkhead = shared.Bulkhead(store, name="o", max_concurrent=3, max_queued=10)
        # A lock whose release the outage refused stays until its lease ends (by design):
        # a short lease keeps that inside the check for leftover locks below.
        cache = shared.Cache(store, name="o", ttl=0.05, lock_lease=0.5)
        outcomes: list[tuple[float, float, str]] = []  # (start, duration, outcome)
        phase = "before"

        async def value() -> int:
            await trio.sleep(0.001)
            return 1

        async def one_of_each() -> None:
            await limiter.acquire()
            await breaker.call(trio.sleep, 0)
            async with bulkhead:
                await trio.sleep(0.001)
            assert await cache.get_or_compute("k", value) == 1

        async def worker() -> None:
            while True:
                started = trio.current_time()
                try:
                    await one_of_each()
                    outcome = "ok"
                except rs.StoreUnavailable:
                    outcome = "unavailable"
                outcomes.append((started, trio.current_time() - started, f"{phase}:{outcome}"))
                await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(worker)
            await trio.sleep(0.3)
            phase = "down"
            own_redis.kill()
            await trio.sleep(0.6)
            phase = "back"
            own_redis.start()
            await eventually(lambda: store.available, within=1.5)
            await trio.sleep(0.3)
            # No Cancelled is swallowed: cancelling the workers ends them at once.
            cancelled = trio.current_time()
            nursery.cancel_scope.cancel()
        assert trio.current_time() - cancelled < 0.1

        down = [o for o in outcomes if o[2].startswith("down")]
        assert down, "nothing ran during the outage"
        # Never a hang: a call waits at most a decision's two round trips per primitive.
        assert max(duration for _, duration, _ in outcomes) < 4 * 2 * OP_TIMEOUT + 0.3
        if mode == "raise":
            assert any(o[2] == "down:unavailable" for o in down)
        else:
            assert all(o[2] == "down:ok" for o in down)
            assert (await limiter.statistics()).local > 0
        back = [o for o in outcomes if o[2].startswith("back")]
        assert back[-1][2] == "back:ok"
        # Back on shared state: the limiter decides in Redis again.
        local = (await limiter.statistics()).local
        await limiter.acquire()
        assert (await limiter.statistics()).local == local

        # Nothing leaks: no permit held, no cache lock left.
        async def no_holders() -> bool:
            return (await bulkhead.statistics()).active == 0

        await eventually_async(no_holders, within=2.0)

        async def no_locks() -> bool:
            _, found = await store.client.scan(0, match=f"{store.prefix}:cache:*:lock:*")
            return not found

        await eventually_async(no_locks, within=2.0)
