"""`shared.Bulkhead` on a real Redis: permits across stores, the fleet's FIFO queue, queue
timeouts, cancellation, a dead holder's permit coming back within its lease, outages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.lowlevel

import resilience as rs
from resilience import redis as shared
from tests.resilience.redis.conftest import new_prefix
from tests.resilience.redis.helpers import eventually, eventually_async
from tests.resilience.redis.server import RedisServer


@pytest.fixture
async def other(store: shared.Store, redis: RedisServer) -> AsyncIterator[shared.Store]:
    async with shared.Store.from_url(redis.url, prefix=store.prefix, op_timeout=2.0) as opened:
        yield opened


async def test_options_are_checked_as_in_process(store: shared.Store) -> None:
    with pytest.raises(ValueError, match="Bulkhead: max_concurrent must be >= 1"):
        shared.Bulkhead(store, name="x", max_concurrent=0)
    with pytest.raises(ValueError, match="Bulkhead: max_queued must be >= 0"):
        shared.Bulkhead(store, name="x", max_concurrent=1, max_queued=-1)
    with pytest.raises(ValueError, match="Bulkhead: lease must be > 0"):
        shared.Bulkhead(store, name="x", max_concurrent=1, lease=0)


async def test_permits_are_shared_by_every_store(
    store: shared.Store, other: shared.Store, events: list[rs.Event]
) -> None:
    here = shared.Bulkhead(store, name="db", max_concurrent=2)
    there = shared.Bulkhead(other, name="db", max_concurrent=2)
    async with here, there:
        assert (await here.statistics()).active == 2
        with pytest.raises(rs.BulkheadFull, match="bulkhead 'db' full"):
            async with there:
                pass

    async def none_held() -> bool:  # `here` gives its permit back in the background
        return (await there.statistics()).active == 0

    await eventually_async(none_held, within=2.0)
    # A process that leaves and enters again finds its own permit back at once.
    single = shared.Bulkhead(store, name="again", max_concurrent=1)
    for _ in range(3):
        async with single:
            pass
    assert await here.call(trio.lowlevel.checkpoint) is None
    rejected = [e for e in events if e.kind == "bulkhead.rejected"]
    assert [(e.source, e.data["reason"]) for e in rejected] == [("db", "full")]


async def test_waiters_are_served_in_arrival_order_across_stores(
    store: shared.Store, other: shared.Store
) -> None:
    here = shared.Bulkhead(store, name="fifo", max_concurrent=1, max_queued=4)
    there = shared.Bulkhead(other, name="fifo", max_concurrent=1, max_queued=4)
    order: list[str] = []

    async def use(bulkhead: shared.Bulkhead, label: str) -> None:
        async with bulkhead:
            order.append(label)
            await trio.sleep(0.02)

    permit = await here.acquire()
    async with trio.open_nursery() as nursery:
        for label, bulkhead in [("a", there), ("b", here), ("c", there), ("d", here)]:
            nursery.start_soon(use, bulkhead, label)
            await trio.sleep(0.03)  # each is queued before the next arrives
        stats = await here.statistics()
        assert (stats.active, stats.queued) == (1, 4)
        await here.release(permit)
    assert order == ["a", "b", "c", "d"]


async def test_a_waiter_gives_up_after_queue_timeout(store: shared.Store) -> None:
    bulkhead = shared.Bulkhead(
        store, name="timeout", max_concurrent=1, max_queued=1, queue_timeout=0.1
    )
    async with bulkhead:
        started = trio.current_time()
        with pytest.raises(rs.BulkheadFull, match=r"queue wait exceeded 0\.1 s"):
            await bulkhead.acquire()
        assert trio.current_time() - started >= 0.1
    # Its place was given back: the queue is empty, the permit free.
    stats = await bulkhead.statistics()
    assert (stats.active, stats.queued) == (0, 0)


async def test_a_cancelled_waiter_takes_nothing(store: shared.Store) -> None:
    bulkhead = shared.Bulkhead(store, name="cancel", max_concurrent=1, max_queued=2)
    permit = await bulkhead.acquire()
    with trio.move_on_after(0.1) as scope:
        await bulkhead.acquire()
    assert scope.cancelled_caught

    async def queue_empty() -> bool:
        return (await bulkhead.statistics()).queued == 0

    await eventually_async(queue_empty, within=2.0)
    await bulkhead.release(permit)
    async with bulkhead:
        assert (await bulkhead.statistics()).active == 1


async def test_a_permit_of_a_holder_that_stopped_renewing_comes_back_within_its_lease(
    store: shared.Store, redis: RedisServer
) -> None:
    gone = await shared.Store.from_url(redis.url, prefix=store.prefix).__aenter__()
    dead = shared.Bulkhead(gone, name="lease", max_concurrent=1, lease=0.3)
    await dead.acquire()
    await gone.aclose()  # its renewals stop, as if its process had died
    alive = shared.Bulkhead(store, name="lease", max_concurrent=1, lease=0.3, max_queued=1)
    started = trio.current_time()
    async with alive:
        assert trio.current_time() - started <= 0.3 + 0.2


async def test_a_held_permit_outlives_its_lease_while_renewed(store: shared.Store) -> None:
    bulkhead = shared.Bulkhead(store, name="renew", max_concurrent=1, lease=0.15)
    async with bulkhead:
        await trio.sleep(0.4)
        assert (await bulkhead.statistics()).active == 1
        with pytest.raises(rs.BulkheadFull):
            await shared.Bulkhead(store, name="renew", max_concurrent=1).acquire()


@pytest.mark.slow
async def test_local_mode_limits_in_process_while_redis_is_gone(own_redis: RedisServer) -> None:
    async with shared.Store.from_url(
        own_redis.url, prefix=new_prefix(), on_unavailable="local", op_timeout=0.3
    ) as store:
        bulkhead = shared.Bulkhead(store, name="outage", max_concurrent=1)
        own_redis.kill()
        async with bulkhead:  # the in-process twin
            with pytest.raises(rs.BulkheadFull):
                await bulkhead.acquire()
        own_redis.start()
        await eventually(lambda: store.available, within=1.5)
        async with bulkhead:
            assert (await bulkhead.statistics()).active == 1


@pytest.mark.slow
async def test_raise_mode_fails_callers_and_waiters(own_redis: RedisServer) -> None:
    async with shared.Store.from_url(own_redis.url, prefix=new_prefix(), op_timeout=0.3) as store:
        bulkhead = shared.Bulkhead(store, name="raise", max_concurrent=1, max_queued=1)
        permit = await bulkhead.acquire()
        errors: list[BaseException] = []

        async def waiter() -> None:
            try:
                await bulkhead.acquire()
            except rs.StoreUnavailable as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(0.1)
            own_redis.kill()
        assert len(errors) == 1
        with pytest.raises(rs.StoreUnavailable):
            await bulkhead.acquire()
        await bulkhead.release(permit)  # not raised: the lease runs out
