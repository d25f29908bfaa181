"""`shared.Cache` on a real Redis: values read back into the function's type, untrusted
values, single flight in a process and across stores with hand-over, stale-while-
revalidate, invalidation, outages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
import trio
from loguru import logger

import resilience as rs
from resilience import redis as shared
from tests.resilience.redis.conftest import new_prefix
from tests.resilience.redis.helpers import eventually
from tests.resilience.redis.server import RedisServer


@attrs.frozen
class Profile:
    id: int
    name: str


@pytest.fixture
async def other(store: shared.Store, redis: RedisServer) -> AsyncIterator[shared.Store]:
    async with shared.Store.from_url(redis.url, prefix=store.prefix, op_timeout=2.0) as opened:
        yield opened


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def profile(self, user: int) -> Profile:
        self.calls += 1
        await trio.sleep(0.05)
        return Profile(user, f"user-{user}")


async def test_options_and_keys_are_checked(store: shared.Store) -> None:
    with pytest.raises(ValueError, match="Cache: ttl must be > 0"):
        shared.Cache(store, name="x", ttl=0)
    with pytest.raises(TypeError, match="Cache: single_flight must be a bool"):
        shared.Cache(store, name="x", ttl=1, single_flight=1)  # type: ignore[arg-type]
    cache = shared.Cache(store, name="x", ttl=1)
    with pytest.raises(TypeError, match="Cache: key must be a str"):
        await cache.get_or_compute(7, Counter().profile, 7)  # type: ignore[arg-type]


async def test_values_come_back_as_the_functions_type(
    store: shared.Store, events: list[rs.Event]
) -> None:
    cache = shared.Cache(store, name="profiles", ttl=60)
    counter = Counter()
    first = await cache.get_or_compute("7", counter.profile, 7)
    again = await cache.get_or_compute("7", counter.profile, 7)
    assert first == again == Profile(7, "user-7")
    assert counter.calls == 1
    stats = await cache.statistics()
    assert (stats.hits, stats.misses) == (1, 1)
    assert [e.kind for e in events if e.kind.startswith("cache")] == ["cache.miss", "cache.hit"]

    async def loose() -> dict[str, object]:  # `object`: any JSON data, as it is
        return {"a": [1, 2], "b": None}

    assert await cache.get_or_compute("loose", loose) == {"a": [1, 2], "b": None}
    assert await cache.get_or_compute("loose", loose) == {"a": [1, 2], "b": None}
    assert await cache.get_or_compute_as(None, "raw", loose) == {"a": [1, 2], "b": None}


async def test_a_value_that_is_not_json_is_refused_clearly(store: shared.Store) -> None:
    cache = shared.Cache(store, name="bad", ttl=60)

    async def opaque() -> object:
        return object()

    with pytest.raises(TypeError, match="cache 'bad': the value of key 'k' cannot be stored"):
        await cache.get_or_compute("k", opaque)


@pytest.mark.parametrize("stored", [b"{not json", b'{"id": "seven", "name": 1}'])
async def test_an_unreadable_value_is_a_miss_recomputed_and_logged_once(
    store: shared.Store, stored: bytes, events: list[rs.Event]
) -> None:
    cache = shared.Cache(store, name="untrusted", ttl=60)
    counter = Counter()
    await cache.get_or_compute("7", counter.profile, 7)
    entry = store.key("cache", "untrusted", "entry", "7")
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        for _ in range(2):
            await store.client.hset(entry, {"v": stored})
            assert await cache.get_or_compute("7", counter.profile, 7) == Profile(7, "user-7")
    finally:
        logger.remove(sink)
    assert counter.calls == 3
    assert (await cache.statistics()).invalid == 2
    assert len([line for line in lines if "unreadable" in line]) == 1
    assert len([e for e in events if e.kind == "cache.invalid"]) == 2


async def test_keys_of_another_type_are_dropped(store: shared.Store) -> None:
    cache = shared.Cache(store, name="foreign", ttl=60)
    counter = Counter()
    await store.client.rpush(store.key("cache", "foreign", "entry", "1"), ["not", "a", "hash"])
    await store.client.hset(store.key("cache", "foreign", "lock", "1"), {"not": "a string"})
    assert await cache.get_or_compute("1", counter.profile, 1) == Profile(1, "user-1")
    assert await cache.get_or_compute("1", counter.profile, 1) == Profile(1, "user-1")
    assert counter.calls == 1


async def test_concurrent_misses_in_a_process_compute_once_and_share_errors(
    store: shared.Store,
) -> None:
    cache = shared.Cache(store, name="flight", ttl=60)
    counter = Counter()
    results: list[Profile] = []

    async def get() -> None:
        results.append(await cache.get_or_compute("1", counter.profile, 1))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(get)
    assert counter.calls == 1
    assert results == [Profile(1, "user-1")] * 5

    failures = 0

    async def boom() -> int:
        nonlocal failures
        failures += 1
        await trio.sleep(0.05)
        raise ValueError("upstream broke")

    errors: list[BaseException] = []

    async def failing() -> None:
        try:
            await cache.get_or_compute("2", boom)
        except ValueError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(failing)
    assert failures == 1
    assert len(errors) == 3
    assert await store.client.exists([store.key("cache", "flight", "entry", "2")]) == 0


async def test_a_miss_is_computed_once_across_stores_and_a_cancelled_holder_hands_over(
    store: shared.Store, other: shared.Store
) -> None:
    here = shared.Cache(store, name="fleet", ttl=60)
    there = shared.Cache(other, name="fleet", ttl=60)
    counter = Counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(here.get_or_compute, "9", counter.profile, 9)
        nursery.start_soon(there.get_or_compute, "9", counter.profile, 9)
    assert counter.calls == 1

    started = trio.Event()

    async def slow(user: int) -> Profile:
        started.set()
        await trio.sleep(10)
        return Profile(user, "never")

    got: list[Profile] = []

    async def wait_there() -> None:
        got.append(await there.get_or_compute("10", counter.profile, 10))

    holder = trio.CancelScope()

    async def hold() -> None:
        with holder:
            await here.get_or_compute("10", slow, 10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold)
        await started.wait()  # `here` holds the lock and computes
        nursery.start_soon(wait_there)
        await trio.sleep(0.1)  # `there` polls, and waits
        assert not got
        holder.cancel()  # the lock is given up: `there` takes over
    assert got == [Profile(10, "user-10")]
    assert counter.calls == 2


async def test_stale_values_are_served_while_one_refresh_runs(store: shared.Store) -> None:
    cache = shared.Cache(store, name="swr", ttl=0.3, stale_ttl=5.0)
    counter = Counter()
    await cache.get_or_compute("1", counter.profile, 1)
    await trio.sleep(0.35)
    assert await cache.get_or_compute("1", counter.profile, 1) == Profile(1, "user-1")
    assert await cache.get_or_compute("1", counter.profile, 1) == Profile(1, "user-1")
    await eventually(lambda: counter.calls == 2, within=1.0)  # one refresh, in the background
    stats = await cache.statistics()
    assert stats.stale_hits == 2
    await trio.sleep(0.1)  # the refresh (0.05 s) has stored its value: fresh again
    assert await cache.get_or_compute("1", counter.profile, 1) == Profile(1, "user-1")
    assert (await cache.statistics()).hits == 1
    assert counter.calls == 2


async def test_invalidate_and_clear_delete_entries(store: shared.Store) -> None:
    cache = shared.Cache(store, name="drop", ttl=60)
    counter = Counter()
    for user in (1, 2, 3):
        await cache.get_or_compute(str(user), counter.profile, user)
    await cache.invalidate("1")
    await cache.get_or_compute("1", counter.profile, 1)
    assert counter.calls == 4
    await cache.clear()
    for user in (1, 2, 3):
        await cache.get_or_compute(str(user), counter.profile, user)
    assert counter.calls == 7


@pytest.mark.slow
async def test_local_mode_caches_in_process_while_redis_is_gone(own_redis: RedisServer) -> None:
    async with shared.Store.from_url(
        own_redis.url, prefix=new_prefix(), on_unavailable="local", op_timeout=0.3
    ) as store:
        cache = shared.Cache(store, name="outage", ttl=60)
        counter = Counter()
        own_redis.kill()
        assert await cache.get_or_compute("1", counter.profile, 1) == Profile(1, "user-1")
        assert await cache.get_or_compute("1", counter.profile, 1) == Profile(1, "user-1")
        assert counter.calls == 1
        assert (await cache.statistics()).local == 2
        own_redis.start()
        await eventually(lambda: store.available, within=1.5)
        await cache.get_or_compute("1", counter.profile, 1)  # Redis is empty: a miss
        assert counter.calls == 2


@pytest.mark.slow
async def test_raise_mode_raises(own_redis: RedisServer) -> None:
    async with shared.Store.from_url(own_redis.url, prefix=new_prefix(), op_timeout=0.3) as store:
        cache = shared.Cache(store, name="raise", ttl=60)
        own_redis.kill()
        with pytest.raises(rs.StoreUnavailable, match="script 'cache' failed"):
            await cache.get_or_compute("1", Counter().profile, 1)
