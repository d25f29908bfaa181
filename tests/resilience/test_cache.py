from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from resilience import Cache, CacheStatistics, Event, observe

DEFAULT = object()


class Source:
    """An async function that counts its calls and returns ``"<key>#<call number>"``."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.delay = delay
        self.error = error
        self.calls = 0
        self.result: Any = DEFAULT  # returned instead of "<key>#<n>" when set

    async def __call__(self, key: str) -> Any:
        self.calls += 1
        number = self.calls
        if self.delay:
            await trio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return f"{key}#{number}" if self.result is DEFAULT else self.result


@pytest.fixture
def events():
    seen: list[Event] = []
    with observe(seen.append):
        yield seen


def kinds(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, dict(e.data)) for e in events]


def stats(cache: Cache) -> tuple[int, int, int, int, int]:
    s = cache.statistics()
    return (s.hits, s.misses, s.stale_hits, s.evictions, s.size)


# -- hits, misses, expiry ------------------------------------------------------------------


async def test_fresh_until_just_before_ttl_and_expired_at_exactly_ttl(autojump_clock):
    cache = Cache(ttl=2.0)
    source = Source()
    assert await cache.get_or_compute("k", source, "k") == "k#1"
    await trio.sleep(1.5)
    assert await cache.get_or_compute("k", source, "k") == "k#1"
    await trio.sleep(0.5)
    assert trio.current_time() == 2.0
    assert await cache.get_or_compute("k", source, "k") == "k#2"
    assert source.calls == 2
    assert stats(cache) == (1, 2, 0, 0, 1)


async def test_ttl_counts_from_the_end_of_the_computation(autojump_clock):
    cache = Cache(ttl=timedelta(seconds=1))
    source = Source(delay=3.0)
    assert await cache.get_or_compute("k", source, "k") == "k#1"
    assert trio.current_time() == 3.0
    await trio.sleep(0.999)
    assert await cache.get_or_compute("k", source, "k") == "k#1"
    await trio.sleep(0.001)
    assert await cache.get_or_compute("k", source, "k") == "k#2"
    assert trio.current_time() == 7.0


async def test_passes_args_and_kwargs_named_like_the_parameters(autojump_clock):
    cache = Cache(ttl=1)

    async def fn(*args: object, **kwargs: object) -> tuple[object, ...]:
        return (*args, *sorted(kwargs.items()))

    result = await cache.get_or_compute("k", fn, 1, 2, key="x", fn="y")
    assert result == (1, 2, ("fn", "y"), ("key", "x"))


async def test_a_hit_is_not_a_checkpoint(autojump_clock):
    cache = Cache(ttl=1)
    await cache.get_or_compute("k", Source(), "k")
    with trio.CancelScope() as scope:
        scope.cancel()
        assert await cache.get_or_compute("k", Source(), "k") == "k#1"
    assert not scope.cancelled_caught


# -- LRU -----------------------------------------------------------------------------------


async def test_lru_evicts_the_least_recently_used(autojump_clock, events):
    cache = Cache(ttl=10, max_size=2, name="lru")
    source = Source()
    await cache.get_or_compute("a", source, "a")
    await cache.get_or_compute("b", source, "b")
    await cache.get_or_compute("a", source, "a")  # a is now the most recently used
    await cache.get_or_compute("c", source, "c")  # evicts b
    assert stats(cache) == (1, 3, 0, 1, 2)
    assert await cache.get_or_compute("a", source, "a") == "a#1"
    assert await cache.get_or_compute("b", source, "b") == "b#4"  # evicts c
    assert await cache.get_or_compute("a", source, "a") == "a#1"
    evicted = [e for e in events if e.kind == "cache.evicted"]
    assert [(e.source, dict(e.data)) for e in evicted] == [
        ("lru", {"key": "b"}),
        ("lru", {"key": "c"}),
    ]


async def test_expired_entries_leave_without_counting_as_evictions(autojump_clock):
    cache = Cache(ttl=1, max_size=1)
    source = Source()
    await cache.get_or_compute("a", source, "a")
    await trio.sleep(1)
    assert stats(cache)[4] == 1  # still stored until looked up or evicted
    assert await cache.get_or_compute("a", source, "a") == "a#2"
    assert stats(cache) == (0, 2, 0, 0, 1)
    assert await cache.get_or_compute("b", source, "b") == "b#3"
    assert stats(cache) == (0, 3, 0, 1, 1)
    await trio.sleep(1)
    source.error = ValueError("down")
    with pytest.raises(ValueError, match="down"):
        await cache.get_or_compute("b", source, "b")
    assert stats(cache) == (0, 4, 0, 1, 0)  # the expired entry left on lookup


# -- single flight and hand-over -----------------------------------------------------------


async def test_concurrent_misses_run_fn_once(autojump_clock):
    cache = Cache(ttl=10)
    source = Source(delay=1.0)
    results: list[str] = []

    async def call() -> None:
        results.append(await cache.get_or_compute("k", source, "k"))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(call)
    assert results == ["k#1"] * 5
    assert source.calls == 1
    assert trio.current_time() == 1.0
    assert stats(cache) == (0, 5, 0, 0, 1)


async def test_without_single_flight_every_miss_computes(autojump_clock):
    cache = Cache(ttl=10, single_flight=False)
    source = Source(delay=1.0)
    results: list[str] = []

    async def call() -> None:
        results.append(await cache.get_or_compute("k", source, "k"))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(call)
    assert sorted(results) == ["k#1", "k#2", "k#3"]
    assert source.calls == 3
    assert stats(cache) == (0, 3, 0, 0, 1)
    assert await cache.get_or_compute("k", source, "k") == results[-1]  # the last one stored


async def test_a_waiter_takes_over_when_the_computing_caller_is_cancelled(autojump_clock):
    cache = Cache(ttl=10)
    source = Source(delay=1.0)
    results: list[tuple[float, str]] = []
    leader_scope = trio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await cache.get_or_compute("k", source, "k")
        assert leader_scope.cancelled_caught

    async def waiter() -> None:
        await trio.sleep(0.1)
        value = await cache.get_or_compute("k", source, "k")
        results.append((trio.current_time(), value))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        nursery.start_soon(waiter)
        nursery.start_soon(waiter)
        await trio.sleep(0.5)
        leader_scope.cancel()
    # one waiter recomputed from 0.5 to 1.5; the other waited for it
    assert results == [(1.5, "k#2"), (1.5, "k#2")]
    assert source.calls == 2
    assert await cache.get_or_compute("k", source, "k") == "k#2"
    assert stats(cache) == (1, 3, 0, 0, 1)


async def test_hand_over_repeats_when_the_new_computing_caller_is_cancelled_too(autojump_clock):
    cache = Cache(ttl=10)
    source = Source(delay=1.0)
    scopes = [trio.CancelScope() for _ in range(3)]
    outcomes: dict[int, str] = {}
    computing: list[int] = []  # which caller ran fn, in order

    async def fn(i: int) -> Any:
        computing.append(i)
        return await source(f"caller{i}")

    async def call(i: int) -> None:
        await trio.sleep(0.1 * i)
        with scopes[i]:
            outcomes[i] = await cache.get_or_compute("k", fn, i)
            return
        outcomes[i] = f"cancelled at {trio.current_time()}"

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(call, i)
        await trio.sleep(0.5)
        scopes[computing[-1]].cancel()  # a waiter takes over (0.5 -> 1.5)
        await trio.sleep(0.5)
        scopes[computing[-1]].cancel()  # the last one takes over (1.0 -> 2.0)
    first, second, third = computing
    assert first == 0
    assert sorted(computing) == [0, 1, 2]
    assert outcomes == {
        first: "cancelled at 0.5",
        second: "cancelled at 1.0",
        third: f"caller{third}#3",
    }
    assert trio.current_time() == 2.0


async def test_a_cancelled_waiter_leaves_the_computation_alone(autojump_clock):
    cache = Cache(ttl=10)
    source = Source(delay=1.0)
    results: list[str] = []

    async def leader() -> None:
        results.append(await cache.get_or_compute("k", source, "k"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.5) as scope:
            await cache.get_or_compute("k", source, "k")
        assert scope.cancelled_caught
    assert results == ["k#1"]
    assert source.calls == 1


async def test_a_cancelled_computation_is_not_cached(autojump_clock):
    cache = Cache(ttl=10)
    source = Source(delay=1.0)
    with trio.move_on_after(0.5):
        await cache.get_or_compute("k", source, "k")
    assert stats(cache)[4] == 0
    assert await cache.get_or_compute("k", source, "k") == "k#2"


async def test_an_exception_reaches_the_waiters_and_is_not_cached(autojump_clock):
    cache = Cache(ttl=10)
    error = KeyError("boom")
    source = Source(delay=1.0, error=error)
    raised: list[BaseException] = []

    async def call() -> None:
        try:
            await cache.get_or_compute("k", source, "k")
        except KeyError as exc:
            raised.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(call)
    assert len(raised) == 3
    assert all(exc is error for exc in raised)
    assert source.calls == 1
    assert stats(cache) == (0, 3, 0, 0, 0)
    source.error = None
    assert await cache.get_or_compute("k", source, "k") == "k#2"
    assert trio.current_time() == 2.0


# -- stale-while-revalidate ----------------------------------------------------------------


async def test_stale_entry_refreshes_once_in_the_background(autojump_clock, events):
    source = Source(delay=1.0)
    async with Cache(ttl=1, stale_ttl=5, name="swr") as cache:
        assert await cache.get_or_compute("k", source, "k") == "k#1"  # stored at 1.0
        await trio.sleep(1.0)
        assert await cache.get_or_compute("k", source, "k") == "k#1"  # stale: refresh 2 -> 3
        assert trio.current_time() == 2.0
        await trio.sleep(0.5)
        assert await cache.get_or_compute("k", source, "k") == "k#1"  # refresh already running
        assert source.calls == 2
        await trio.sleep(0.6)
        assert await cache.get_or_compute("k", source, "k") == "k#2"  # fresh until 4.0
        assert source.calls == 2
        assert stats(cache) == (1, 1, 2, 0, 1)
    assert [e.kind for e in events] == [
        "cache.miss",
        "cache.stale_hit",
        "cache.stale_hit",
        "cache.hit",
    ]
    assert trio.current_time() == 3.1


async def test_a_stale_hit_counts_as_a_use_for_lru(autojump_clock):
    source = Source(delay=1.0)
    async with Cache(ttl=1, stale_ttl=10, max_size=2) as cache:
        await cache.get_or_compute("a", source, "a")  # stored at 1.0
        await cache.get_or_compute("b", source, "b")  # stored at 2.0
        await trio.sleep(0.5)
        source.delay = 100.0
        assert await cache.get_or_compute("a", source, "a") == "a#1"  # stale; refresh runs
        await trio.testing.wait_all_tasks_blocked()
        source.delay = 0.0
        await cache.get_or_compute("c", source, "c")  # evicts b, not a
        assert await cache.get_or_compute("a", source, "a") == "a#1"
        assert await cache.get_or_compute("b", source, "b") == "b#5"
        cache.clear()


async def test_concurrent_stale_hits_start_one_refresh(autojump_clock):
    source = Source(delay=1.0)
    results: list[str] = []
    async with Cache(ttl=1, stale_ttl=5) as cache:
        await cache.get_or_compute("k", source, "k")
        await trio.sleep(1.0)

        async def call() -> None:
            results.append(await cache.get_or_compute("k", source, "k"))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(call)
        assert trio.current_time() == 2.0  # nobody waited for the refresh
        assert results == ["k#1"] * 5
        await trio.sleep(1.5)
        assert await cache.get_or_compute("k", source, "k") == "k#2"
    assert source.calls == 2


async def test_stale_inline_refresh_without_a_scope(autojump_clock):
    cache = Cache(ttl=1, stale_ttl=5)
    source = Source(delay=1.0)
    results: list[tuple[float, str]] = []
    await cache.get_or_compute("k", source, "k")  # stored at 1.0
    await trio.sleep(1.0)

    async def call(delay: float) -> None:
        await trio.sleep(delay)
        value = await cache.get_or_compute("k", source, "k")
        results.append((trio.current_time(), value))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, 0.0)  # refreshes inline, 2.0 -> 3.0
        nursery.start_soon(call, 0.5)  # gets the stale value at once
    assert results == [(2.5, "k#1"), (3.0, "k#2")]
    assert source.calls == 2
    assert stats(cache) == (0, 1, 2, 0, 1)


async def test_stale_entry_expires_after_stale_ttl(autojump_clock):
    cache = Cache(ttl=1, stale_ttl=2)
    source = Source()
    await cache.get_or_compute("k", source, "k")
    await trio.sleep(2.999)
    assert await cache.get_or_compute("k", source, "k") == "k#2"  # inline refresh
    await trio.sleep(3.0)  # 0.0 + 2.999 + 3.0: past fresh + stale
    assert await cache.get_or_compute("k", source, "k") == "k#3"
    assert stats(cache) == (0, 2, 1, 0, 1)


async def test_failed_background_refresh_keeps_the_stale_entry(autojump_clock, events):
    error = RuntimeError("backend down")
    source = Source(delay=1.0)
    async with Cache(ttl=1, stale_ttl=10, name="c") as cache:
        await cache.get_or_compute("k", source, "k")  # stored at 1.0
        source.error = error
        await trio.sleep(1.0)
        assert await cache.get_or_compute("k", source, "k") == "k#1"  # refresh fails at 3.0
        await trio.sleep(2.0)
        assert await cache.get_or_compute("k", source, "k") == "k#1"  # a new refresh starts
        await trio.testing.wait_all_tasks_blocked()
        assert source.calls == 3
        source.error = None
        await trio.sleep(1.5)
        assert await cache.get_or_compute("k", source, "k") == "k#3"
    failed = [e for e in events if e.kind == "cache.refresh_failed"]
    assert len(failed) == 1  # the second refresh ran after the backend recovered
    assert failed[0].source == "c"
    assert dict(failed[0].data) == {"key": "k", "error": error}
    assert failed[0].time == 3.0


async def test_failed_inline_refresh_returns_the_stale_value(autojump_clock, events):
    cache = Cache(ttl=1, stale_ttl=10)
    source = Source()
    await cache.get_or_compute("k", source, "k")
    await trio.sleep(1.0)
    source.error = ValueError("nope")
    assert await cache.get_or_compute("k", source, "k") == "k#1"
    assert kinds(events)[-1] == ("cache.refresh_failed", {"key": "k", "error": source.error})
    source.error = None
    assert await cache.get_or_compute("k", source, "k") == "k#3"


async def test_refresh_failures_need_no_listener(autojump_clock):
    source = Source()
    cache = Cache(ttl=1, stale_ttl=10)
    await cache.get_or_compute("k", source, "k")
    await trio.sleep(1.0)
    source.error = OSError("down")
    assert await cache.get_or_compute("k", source, "k") == "k#1"  # inline
    async with cache:
        assert await cache.get_or_compute("k", source, "k") == "k#1"  # in the background
        await trio.testing.wait_all_tasks_blocked()
    assert source.calls == 3
    assert stats(cache) == (0, 1, 2, 0, 1)


async def test_cancelled_inline_refresh_keeps_the_stale_entry(autojump_clock):
    cache = Cache(ttl=1, stale_ttl=10)
    source = Source(delay=1.0)
    await cache.get_or_compute("k", source, "k")  # stored at 1.0
    await trio.sleep(1.0)
    with trio.move_on_after(0.5) as scope:
        await cache.get_or_compute("k", source, "k")
    assert scope.cancelled_caught
    assert await cache.get_or_compute("k", source, "k") == "k#3"  # refreshes inline again
    assert trio.current_time() == 3.5


async def test_a_miss_joins_the_running_refresh(autojump_clock):
    source = Source(delay=1.0)
    async with Cache(ttl=1, stale_ttl=1) as cache:
        await cache.get_or_compute("k", source, "k")  # stored at 1.0, stale until 3.0
        await trio.sleep(1.0)
        source.delay = 5.0
        assert await cache.get_or_compute("k", source, "k") == "k#1"  # refresh 2.0 -> 7.0
        await trio.sleep(1.0)
        assert await cache.get_or_compute("k", source, "k") == "k#2"  # expired: waits
        assert trio.current_time() == 7.0
    assert source.calls == 2
    assert stats(cache) == (0, 2, 1, 0, 1)


async def test_leaving_the_scope_cancels_running_refreshes(autojump_clock):
    source = Source(delay=1.0)
    async with Cache(ttl=1, stale_ttl=100) as cache:
        await cache.get_or_compute("k", source, "k")  # stored at 1.0
        await trio.sleep(1.0)
        source.delay = 10.0
        assert await cache.get_or_compute("k", source, "k") == "k#1"
        await trio.sleep(0.5)
    assert trio.current_time() == 2.5
    assert stats(cache)[4] == 1
    source.delay = 1.0
    assert await cache.get_or_compute("k", source, "k") == "k#3"  # inline now
    assert trio.current_time() == 3.5


async def test_a_waiter_on_a_cancelled_refresh_takes_over(autojump_clock):
    source = Source(delay=1.0)
    results: list[str] = []
    cache = Cache(ttl=1, stale_ttl=1)
    async with trio.open_nursery() as outer, cache:
        await cache.get_or_compute("k", source, "k")  # stored at 1.0, stale until 3.0
        await trio.sleep(1.0)
        source.delay = 5.0
        await cache.get_or_compute("k", source, "k")  # refresh 2.0 -> 7.0
        await trio.sleep(1.0)

        async def miss() -> None:
            results.append(await cache.get_or_compute("k", source, "k"))

        outer.start_soon(miss)
        await trio.testing.wait_all_tasks_blocked()
        # the refresh was cancelled at 3.0; the waiter computes 3.0 -> 8.0
    assert results == ["k#3"]
    assert trio.current_time() == 8.0


async def test_the_scope_lets_the_body_exception_through_unwrapped(autojump_clock):
    cache = Cache(ttl=1, stale_ttl=10)
    source = Source()
    error = ZeroDivisionError("in the body")

    async def body() -> None:
        async with cache:
            await cache.get_or_compute("k", source, "k")
            await trio.sleep(1.0)
            source.delay = 5.0
            await cache.get_or_compute("k", source, "k")  # a refresh starts
            await trio.testing.wait_all_tasks_blocked()
            raise error

    with pytest.raises(ZeroDivisionError) as info:
        await body()
    assert info.value is error
    assert trio.current_time() == 1.0  # the refresh was cancelled, not awaited
    assert source.calls == 2


async def test_the_scope_opens_once_at_a_time(autojump_clock):
    cache = Cache(ttl=1)
    async with cache:
        with pytest.raises(RuntimeError, match="Cache: its async with block is already open"):
            await cache.__aenter__()
    async with cache as again:
        assert again is cache


# -- cache_none ----------------------------------------------------------------------------


@pytest.mark.parametrize(("cache_none", "calls"), [(True, 1), (False, 2)])
async def test_cache_none(autojump_clock, cache_none, calls):
    cache = Cache(ttl=10, cache_none=cache_none)
    source = Source()
    source.result = None
    assert await cache.get_or_compute("k", source, "k") is None
    assert await cache.get_or_compute("k", source, "k") is None
    assert source.calls == calls
    assert stats(cache)[4] == 2 - calls


async def test_a_none_result_removes_the_older_entry(autojump_clock):
    cache = Cache(ttl=1, stale_ttl=10, cache_none=False)
    source = Source()
    await cache.get_or_compute("k", source, "k")
    await trio.sleep(1.0)
    source.result = None
    assert await cache.get_or_compute("k", source, "k") is None  # inline refresh gives None
    assert stats(cache)[4] == 0


# -- invalidate and clear ------------------------------------------------------------------


async def test_invalidate_and_clear(autojump_clock):
    cache = Cache(ttl=10)
    source = Source()
    for key in "abc":
        await cache.get_or_compute(key, source, key)
    cache.invalidate("a")
    cache.invalidate("missing")
    assert stats(cache)[4] == 2
    assert await cache.get_or_compute("a", source, "a") == "a#4"
    assert await cache.get_or_compute("b", source, "b") == "b#2"
    cache.clear()
    assert stats(cache) == (1, 4, 0, 0, 0)
    assert await cache.get_or_compute("b", source, "b") == "b#5"


@pytest.mark.parametrize("drop", ["invalidate", "clear"])
async def test_a_computation_running_across_an_invalidation_is_not_stored(autojump_clock, drop):
    cache = Cache(ttl=10)
    source = Source(delay=1.0)
    results: list[tuple[float, str]] = []

    async def call(delay: float) -> None:
        await trio.sleep(delay)
        value = await cache.get_or_compute("k", source, "k")
        results.append((trio.current_time(), value))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, 0.0)  # computes 0.0 -> 1.0
        nursery.start_soon(call, 0.2)  # waits for it: asked before the invalidation
        await trio.sleep(0.5)
        if drop == "invalidate":
            cache.invalidate("k")
        else:
            cache.clear()
        nursery.start_soon(call, 0.0)  # asks after: computes 0.5 -> 1.5
    assert sorted(results) == [(1.0, "k#1"), (1.0, "k#1"), (1.5, "k#2")]
    assert await cache.get_or_compute("k", source, "k") == "k#2"


async def test_an_older_computation_never_overwrites_a_newer_one(autojump_clock):
    cache = Cache(ttl=10)
    slow, fast = Source(delay=2.0), Source(delay=0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.get_or_compute, "k", slow, "slow")  # 0.0 -> 2.0
        await trio.sleep(0.1)
        cache.invalidate("k")
        nursery.start_soon(cache.get_or_compute, "k", fast, "fast")  # 0.1 -> 0.6, stored
    assert await cache.get_or_compute("k", fast, "fast") == "fast#1"


async def test_invalidation_without_single_flight_voids_every_running_computation(
    autojump_clock,
):
    cache = Cache(ttl=10, single_flight=False)
    source = Source(delay=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.get_or_compute, "k", source, "k")
        nursery.start_soon(cache.get_or_compute, "k", source, "k")
        await trio.sleep(0.5)
        cache.invalidate("k")
    assert stats(cache)[4] == 0
    assert await cache.get_or_compute("k", source, "k") == "k#3"


async def test_an_invalidated_background_refresh_is_not_stored(autojump_clock):
    source = Source(delay=1.0)
    async with Cache(ttl=1, stale_ttl=10) as cache:
        await cache.get_or_compute("k", source, "k")
        await trio.sleep(1.0)
        await cache.get_or_compute("k", source, "k")  # refresh 2.0 -> 3.0
        await trio.sleep(0.5)
        cache.invalidate("k")
        await trio.sleep(1.0)
        assert stats(cache)[4] == 0


# -- statistics, events, configuration -----------------------------------------------------


async def test_statistics_is_a_frozen_snapshot(autojump_clock):
    cache = Cache(ttl=1)
    first = cache.statistics()
    assert first == CacheStatistics(hits=0, misses=0, stale_hits=0, evictions=0, size=0)
    await cache.get_or_compute("k", Source(), "k")
    assert first.size == 0
    assert cache.statistics().size == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        first.hits = 3  # type: ignore[misc]


async def test_events(autojump_clock, events):
    cache = Cache(ttl=1, stale_ttl=1, max_size=1, name="named")
    source = Source()
    await cache.get_or_compute("a", source, "a")
    await cache.get_or_compute("a", source, "a")
    await trio.sleep(1.0)
    await cache.get_or_compute("a", source, "a")
    await cache.get_or_compute("b", source, "b")
    assert kinds(events) == [
        ("cache.miss", {"key": "a"}),
        ("cache.hit", {"key": "a"}),
        ("cache.stale_hit", {"key": "a"}),
        ("cache.miss", {"key": "b"}),
        ("cache.evicted", {"key": "a"}),
    ]
    assert {e.source for e in events} == {"named"}
    assert [e.time for e in events] == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_repr_shows_the_configuration_only():
    assert repr(Cache(ttl=2, name="x")) == (
        "Cache(ttl=2, max_size=1024, stale_ttl=0.0, single_flight=True, cache_none=True, name='x')"
    )


def test_durations_accept_timedelta():
    cache = Cache(ttl=timedelta(milliseconds=1500), stale_ttl=timedelta(seconds=2))
    assert (cache.ttl, cache.stale_ttl) == (1.5, 2.0)


@pytest.mark.parametrize(
    ("options", "exc", "message"),
    [
        ({"ttl": 0}, ValueError, "Cache: ttl must be > 0, got 0"),
        ({"ttl": -1.0}, ValueError, "Cache: ttl must be > 0"),
        ({"ttl": timedelta(0)}, ValueError, "Cache: ttl must be > 0"),
        ({"ttl": math.nan}, ValueError, "Cache: ttl must not be NaN"),
        ({"ttl": "1"}, TypeError, "Cache: ttl must be a number of seconds"),
        ({"ttl": True}, TypeError, "Cache: ttl must be a number of seconds"),
        ({"ttl": 1, "max_size": 0}, ValueError, "Cache: max_size must be >= 1, got 0"),
        ({"ttl": 1, "max_size": 2.0}, TypeError, "Cache: max_size must be an int"),
        ({"ttl": 1, "max_size": True}, TypeError, "Cache: max_size must be an int"),
        ({"ttl": 1, "stale_ttl": -0.5}, ValueError, "Cache: stale_ttl must be >= 0"),
        ({"ttl": 1, "stale_ttl": None}, TypeError, "Cache: stale_ttl must be a number"),
        ({"ttl": 1, "single_flight": 1}, TypeError, "Cache: single_flight must be a bool, got 1"),
        ({"ttl": 1, "cache_none": "no"}, TypeError, "Cache: cache_none must be a bool"),
        ({"ttl": 1, "name": 3}, TypeError, "Cache: name must be a str or None, got 3"),
    ],
)
def test_bad_configuration_names_the_argument(options, exc, message):
    with pytest.raises(exc, match=f"^{message}"):
        Cache(**options)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        Cache(1)  # type: ignore[call-arg]
