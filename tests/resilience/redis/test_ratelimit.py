"""`shared.RateLimiter` on a real Redis: options, both algorithms, waiting and its
cancellation, FIFO within a process, two stores sharing one limit, untrusted data, and
what it does while Redis is gone."""

from __future__ import annotations

import pytest
import trio
from loguru import logger

import resilience as rs
from resilience import redis as shared
from tests.resilience.redis.conftest import new_prefix
from tests.resilience.redis.helpers import eventually, eventually_async
from tests.resilience.redis.server import RedisServer


async def test_options_are_checked_as_the_in_process_limiter_checks_them(
    store: shared.Store,
) -> None:
    with pytest.raises(ValueError, match="RateLimiter: rate must be > 0"):
        shared.RateLimiter(store, name="x", rate=0)
    with pytest.raises(ValueError, match="RateLimiter: algorithm must be one of"):
        shared.RateLimiter(store, name="x", rate=1, algorithm="leaky")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RateLimiter: burst must be None or equal to rate"):
        shared.RateLimiter(store, name="x", rate=5, burst=2, algorithm="sliding_window")
    with pytest.raises(ValueError, match="RateLimiter: max_wait must be >= 0"):
        shared.RateLimiter(store, name="x", rate=1, max_wait=-1)
    with pytest.raises(TypeError, match="RateLimiter: store must be a resilience"):
        shared.RateLimiter("redis://", name="x", rate=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RateLimiter: name must not contain"):
        shared.RateLimiter(store, name="a}", rate=1)
    with pytest.raises(TypeError, match="RateLimiter: name must be a str"):
        shared.RateLimiter(store, name=None, rate=1)  # type: ignore[arg-type]


async def test_costs_and_keys_are_checked(store: shared.Store) -> None:
    limiter = shared.RateLimiter(store, name="checks", rate=3)
    with pytest.raises(ValueError, match=r"cost must be >= 1 and <= burst \(3\), got 4"):
        await limiter.acquire(cost=4)
    with pytest.raises(TypeError, match="cost must be an int"):
        await limiter.try_acquire(cost=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be a str or None"):
        await limiter.acquire(key=7)  # type: ignore[arg-type]


async def test_sliding_window_admits_rate_per_window_and_keys_are_apart(
    store: shared.Store,
) -> None:
    limiter = shared.RateLimiter(store, name="window", rate=3, per=60.0, algorithm="sliding_window")
    assert [await limiter.try_acquire("a") for _ in range(4)] == [True, True, True, False]
    assert await limiter.try_acquire("b", cost=3)
    assert await limiter.try_acquire(None)  # the default key is a key of its own
    stats = await limiter.statistics()
    assert (stats.admitted, stats.rejected, stats.waited, stats.local) == (5, 1, 0, 0)


async def test_a_wait_beyond_max_wait_is_refused_with_the_wait_it_needed(
    store: shared.Store, events: list[rs.Event]
) -> None:
    limiter = shared.RateLimiter(store, name="bucket", rate=2, per=10.0, max_wait=1.0)
    await limiter.acquire(cost=2)
    with pytest.raises(rs.RateLimited, match=r"would wait 4\.9\d* s for cost 1") as caught:
        await limiter.acquire()
    assert caught.value.retry_after == pytest.approx(5.0, abs=0.05)
    rejected = [e for e in events if e.kind == "ratelimit.rejected"]
    assert [(e.source, e.data["cost"]) for e in rejected] == [("bucket", 1)]


async def test_a_caller_that_must_wait_sleeps_its_reservation_then_goes(
    store: shared.Store, events: list[rs.Event]
) -> None:
    limiter = shared.RateLimiter(store, name="wait", rate=10, per=1.0, burst=1)
    await limiter.acquire()
    started = trio.current_time()
    decision = await limiter._acquire(None, 1)
    assert decision is not None
    assert 0.05 < decision.wait <= 0.1
    assert trio.current_time() - started >= decision.wait
    assert [e.kind for e in events if e.kind.startswith("ratelimit")] == ["ratelimit.waited"]
    assert (await limiter.statistics()).waited == 1


@pytest.mark.parametrize("algorithm", ["sliding_window", "token_bucket"])
async def test_a_cancelled_waiter_gives_its_reservation_back(
    store: shared.Store, algorithm: str
) -> None:
    limiter = shared.RateLimiter(store, name="cancel", rate=1, per=30.0, algorithm=algorithm)  # type: ignore[arg-type]
    await limiter.acquire()
    keys = limiter._keys(None)
    before = await store.client.dump(keys[0])
    with trio.move_on_after(0.2) as scope:
        await limiter.acquire()  # would wait 30 s
    assert scope.cancelled_caught

    # Given back in the store's background: the state is as it was after the first.
    async def as_before() -> bool:
        if algorithm == "sliding_window":
            return await store.client.zcard(keys[0]) == 1
        return await store.client.dump(keys[0]) == before

    await eventually_async(as_before, within=2.0)


async def test_waiters_of_one_process_go_in_arrival_order(store: shared.Store) -> None:
    limiter = shared.RateLimiter(store, name="fifo", rate=40, per=1.0, burst=1)
    order: list[int] = []

    async def waiter(n: int, cost: int) -> None:
        await limiter.acquire(cost=cost)
        order.append(n)

    await limiter.acquire()  # empty the bucket: everyone below waits
    async with trio.open_nursery() as nursery:
        for n, cost in enumerate([1, 1, 1, 1, 1, 1]):
            nursery.start_soon(waiter, n, cost)
            await trio.lowlevel.checkpoint()
            await trio.sleep(0.001)
    assert order == sorted(order)


async def test_two_stores_share_one_limit(store: shared.Store, redis: RedisServer) -> None:
    async with shared.Store.from_url(redis.url, prefix=store.prefix, op_timeout=2.0) as other:
        one = shared.RateLimiter(store, name="fleet", rate=3, per=60.0, algorithm="sliding_window")
        two = shared.RateLimiter(other, name="fleet", rate=3, per=60.0, algorithm="sliding_window")
        assert await one.try_acquire()
        assert await two.try_acquire(cost=2)
        assert not await one.try_acquire()
        assert not await two.try_acquire()


async def test_unreadable_data_in_redis_is_dropped_and_logged_once(store: shared.Store) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        limiter = shared.RateLimiter(store, name="corrupt", rate=2, per=60.0)
        (tat,) = limiter._keys("k")
        await store.client.rpush(tat, ["not", "a", "string"])
        assert await limiter.try_acquire("k", cost=2)  # a fresh, full bucket
        await store.client.delete([tat])
        await store.client.set(tat, "garbage")
        assert await limiter.try_acquire("k", cost=2)
        assert not await limiter.try_acquire("k")
    finally:
        logger.remove(sink)
    assert len([line for line in lines if "unreadable data" in line]) == 1


@pytest.mark.slow
async def test_local_mode_answers_in_process_while_redis_is_gone_then_goes_back(
    own_redis: RedisServer, events: list[rs.Event]
) -> None:
    async with shared.Store.from_url(
        own_redis.url, prefix=new_prefix(), on_unavailable="local", op_timeout=0.5
    ) as store:
        limiter = shared.RateLimiter(store, name="outage", rate=2, per=60.0)
        assert await limiter.try_acquire(cost=2)
        own_redis.kill()
        # The in-process twin has a full bucket of its own: the fleet bound is off meanwhile.
        assert await limiter.try_acquire(cost=2)
        assert not await limiter.try_acquire()
        assert (await limiter.statistics()).local == 2
        own_redis.start()  # an empty server: the shared bucket is full again
        await eventually(lambda: store.available, within=1.5)
        assert await limiter.try_acquire(cost=2)
        assert (await limiter.statistics()).local == 2
    assert [e.kind for e in events if e.kind.startswith("store.")] == [
        "store.unavailable",
        "store.recovered",
    ]


@pytest.mark.slow
async def test_raise_mode_raises_store_unavailable_chained_from_the_cause(
    own_redis: RedisServer,
) -> None:
    async with shared.Store.from_url(own_redis.url, prefix=new_prefix(), op_timeout=0.5) as store:
        limiter = shared.RateLimiter(store, name="raise", rate=2, per=60.0)
        await limiter.acquire()
        own_redis.kill()
        with pytest.raises(rs.StoreUnavailable, match="script 'ratelimit_bucket' failed") as e:
            await limiter.acquire()
        assert e.value.__cause__ is not None
        with pytest.raises(rs.StoreUnavailable):
            await limiter.try_acquire()
