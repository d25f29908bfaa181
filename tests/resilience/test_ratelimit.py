from __future__ import annotations

import math
from collections.abc import Hashable
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

import resilience as rs
from resilience import Event, RateLimiter, RateLimiterStatistics

Log = list[tuple[str, float]]


async def admit(limiter: RateLimiter, log: Log, label: str, cost: int = 1, key: Hashable = None):
    """Acquire, then record the label and the time of admission (or of rejection)."""
    try:
        await limiter.acquire(key, cost)
    except rs.RateLimited as exc:
        log.append((f"{label} rejected after {exc.retry_after}", trio.current_time()))
    else:
        log.append((label, trio.current_time()))


async def start_in_order(
    nursery: trio.Nursery, limiter: RateLimiter, log: Log, *requests: tuple[str, int]
) -> None:
    """Start one `admit` per (label, cost), each queued before the next starts."""
    for label, cost in requests:
        nursery.start_soon(admit, limiter, log, label, cost)
        await trio.testing.wait_all_tasks_blocked()


# --- token bucket -------------------------------------------------------------------------


async def test_token_bucket_starts_full_then_waits_exactly(autojump_clock) -> None:
    limiter = RateLimiter(rate=2, per=1)
    log: Log = []
    async with trio.open_nursery() as nursery:
        await start_in_order(nursery, limiter, log, ("a", 1), ("b", 1), ("c", 1), ("d", 2))
    # Capacity 2 (burst defaults to rate), refilled at 2 tokens per second.
    assert log == [("a", 0), ("b", 0), ("c", 0.5), ("d", 1.5)]
    assert limiter.statistics() == RateLimiterStatistics(admitted=4, rejected=0, waited=2, keys=1)


async def test_token_bucket_refill_is_capped_at_burst(autojump_clock) -> None:
    limiter = RateLimiter(rate=1, per=timedelta(seconds=2), burst=3)
    assert limiter.try_acquire(cost=3)
    assert not limiter.try_acquire()
    await trio.sleep(1.0)  # half a token
    assert not limiter.try_acquire()
    await trio.sleep(1.0)
    assert limiter.try_acquire()
    await trio.sleep(100)  # would be 50 tokens without the cap
    assert limiter.try_acquire(cost=3)
    assert not limiter.try_acquire()


async def test_burst_defaults_to_rate_but_at_least_one(autojump_clock) -> None:
    limiter = RateLimiter(rate=0.5)  # one admission every 2 s, one at once
    log: Log = []
    async with trio.open_nursery() as nursery:
        await start_in_order(nursery, limiter, log, ("a", 1), ("b", 1), ("c", 1))
    assert log == [("a", 0), ("b", 2), ("c", 4)]
    with pytest.raises(ValueError, match=r"RateLimiter: cost must be >= 1 and <= burst \(1\)"):
        limiter.try_acquire(cost=2)


async def test_fractional_burst_admits_whole_costs_below_it(autojump_clock) -> None:
    limiter = RateLimiter(rate=1, burst=2.5)
    assert limiter.try_acquire(cost=2)
    with pytest.raises(ValueError, match=r"cost must be >= 1 and <= burst \(2\.5\), got 3"):
        limiter.try_acquire(cost=3)
    await limiter.acquire(cost=2)  # 0.5 left: waits for 1.5 more
    assert trio.current_time() == 1.5


# --- sliding window -----------------------------------------------------------------------


async def test_sliding_window_waits_for_the_oldest_admission_to_leave(autojump_clock) -> None:
    limiter = RateLimiter(rate=2, per=1, algorithm="sliding_window")
    log: Log = []
    async with trio.open_nursery() as nursery:
        await start_in_order(nursery, limiter, log, ("a", 1))
        await trio.sleep(0.25)
        await start_in_order(nursery, limiter, log, ("b", 1), ("c", 1), ("d", 2), ("e", 1))
    # a@0 and b@0.25 fill the window; c waits for a to leave (1.0), d (cost 2) for b and c
    # (2.0), e for d (3.0).
    assert log == [("a", 0), ("b", 0.25), ("c", 1.0), ("d", 2.0), ("e", 3.0)]


async def test_sliding_window_is_half_open(autojump_clock) -> None:
    # An admission at t counts in (t - per, t]: it still counts just before t + per, and
    # no longer at t + per.
    limiter = RateLimiter(rate=1, per=1, algorithm="sliding_window")
    assert limiter.try_acquire()
    await trio.sleep(1 - 2**-20)
    assert not limiter.try_acquire()
    await trio.sleep(2**-20)
    assert trio.current_time() == 1
    assert limiter.try_acquire()
    assert not limiter.try_acquire()


async def test_sliding_window_never_exceeds_rate_in_any_window(autojump_clock) -> None:
    # A caller every 0.25 s: the fourth waits for the first to leave the window, etc.
    limiter = RateLimiter(rate=3, per=1, algorithm="sliding_window")
    times: list[float] = []
    for _ in range(9):
        await limiter.acquire()
        times.append(trio.current_time())
        await trio.sleep(0.25)
    assert times == [0, 0.25, 0.5, 1.0, 1.25, 1.5, 2.0, 2.25, 2.5]


async def test_sliding_window_equal_times_are_served_in_order(autojump_clock) -> None:
    limiter = RateLimiter(rate=4, per=1, algorithm="sliding_window")
    assert limiter.try_acquire(cost=4)
    log: Log = []
    async with trio.open_nursery() as nursery:
        await start_in_order(nursery, limiter, log, *[(str(i), 1) for i in range(4)])
    assert log == [("0", 1), ("1", 1), ("2", 1), ("3", 1)]


# --- FIFO ---------------------------------------------------------------------------------


async def test_token_bucket_small_request_never_overtakes_a_big_waiting_one(
    autojump_clock,
) -> None:
    limiter = RateLimiter(rate=1, burst=3)
    assert limiter.try_acquire(cost=3)
    log: Log = []
    async with trio.open_nursery() as nursery:
        await start_in_order(nursery, limiter, log, ("big", 3), ("small", 1))
    # small alone would have had its token at 1; it queues behind big (due at 3).
    assert log == [("big", 3), ("small", 4)]


async def test_sliding_window_small_request_never_overtakes_a_big_waiting_one(
    autojump_clock,
) -> None:
    limiter = RateLimiter(rate=2, algorithm="sliding_window")
    assert limiter.try_acquire()
    log: Log = []
    async with trio.open_nursery() as nursery:
        await start_in_order(nursery, limiter, log, ("big", 2))
        # One unit is free right now, but big waits for the whole window first.
        assert not limiter.try_acquire()
        await start_in_order(nursery, limiter, log, ("small", 1))
    assert log == [("big", 1), ("small", 2)]


async def test_waiters_return_in_arrival_order(autojump_clock) -> None:
    limiter = RateLimiter(rate=8, burst=1)
    assert limiter.try_acquire()
    log: Log = []
    async with trio.open_nursery() as nursery:
        await start_in_order(nursery, limiter, log, *[(str(i), 1) for i in range(8)])
    assert log == [(str(i), (i + 1) / 8) for i in range(8)]


# --- max_wait -----------------------------------------------------------------------------


async def test_max_wait_rejects_at_once_with_the_wait_as_retry_after(autojump_clock) -> None:
    limiter = RateLimiter(rate=1, burst=1, max_wait=timedelta(seconds=2))
    log: Log = []
    async with trio.open_nursery() as nursery:
        await start_in_order(nursery, limiter, log, ("a", 1), ("b", 1), ("c", 1), ("d", 1))
    # b waits 1 s, c 2 s (== max_wait: allowed), d would wait 3 s: rejected at 0.
    assert log == [("a", 0), ("d rejected after 3.0", 0), ("b", 1), ("c", 2)]
    assert limiter.statistics() == RateLimiterStatistics(admitted=3, rejected=1, waited=2, keys=1)


async def test_max_wait_zero_rejects_whenever_a_wait_is_needed(autojump_clock) -> None:
    limiter = RateLimiter(rate=4, per=2, burst=1, max_wait=0, name="api")
    await limiter.acquire()
    with pytest.raises(rs.RateLimited) as caught:
        await limiter.acquire(key=None)
    assert caught.value.retry_after == 0.5
    assert isinstance(caught.value, rs.ResilienceError)
    assert str(caught.value) == (
        "rate limiter 'api': key None would wait 0.5 s for cost 1, more than max_wait=0 s"
    )
    assert trio.current_time() == 0
    await trio.sleep(caught.value.retry_after)
    with trio.testing.assert_no_checkpoints():
        await limiter.acquire()


async def test_max_wait_counts_the_queue_ahead(autojump_clock) -> None:
    limiter = RateLimiter(rate=2, per=10, algorithm="sliding_window", max_wait=12)
    assert limiter.try_acquire(cost=2)
    log: Log = []
    async with trio.open_nursery() as nursery:
        await trio.sleep(3)
        await start_in_order(nursery, limiter, log, ("a", 2), ("b", 1), ("c", 1))
    # a is due at 10 (7 s), b at 20 (17 s > 12): rejected, c likewise.
    assert log == [("b rejected after 17.0", 3), ("c rejected after 17.0", 3), ("a", 10)]


# --- try_acquire and checkpoints ----------------------------------------------------------


async def test_try_acquire_never_waits_and_is_not_a_checkpoint(autojump_clock) -> None:
    limiter = RateLimiter(rate=2)
    with trio.testing.assert_no_checkpoints():
        assert limiter.try_acquire()
        assert limiter.try_acquire()
        assert not limiter.try_acquire()
        assert not limiter.try_acquire()
    assert trio.current_time() == 0
    assert limiter.statistics() == RateLimiterStatistics(admitted=2, rejected=2, waited=0, keys=1)


async def test_acquire_is_a_checkpoint_only_when_it_waits(autojump_clock) -> None:
    limiter = RateLimiter(rate=1, algorithm="sliding_window")
    with trio.testing.assert_no_checkpoints():
        await limiter.acquire()
    with trio.testing.assert_checkpoints():
        await limiter.acquire()
    assert trio.current_time() == 1


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window"])
async def test_keys_are_limited_separately(autojump_clock, algorithm: str) -> None:
    limiter = RateLimiter(rate=1, algorithm=algorithm)
    assert limiter.try_acquire()  # the default key, None
    assert not limiter.try_acquire(None)
    assert limiter.try_acquire("a")
    assert limiter.try_acquire(("b", 1))
    assert not limiter.try_acquire("a")
    await limiter.acquire("c")
    assert trio.current_time() == 0
    assert limiter.statistics().keys == 4


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window"])
async def test_least_recently_used_key_is_dropped(autojump_clock, algorithm: str) -> None:
    limiter = RateLimiter(rate=1, max_keys=2, algorithm=algorithm)
    assert limiter.try_acquire("a")
    assert limiter.try_acquire("b")
    assert not limiter.try_acquire("a")  # a is now the most recently used
    assert limiter.try_acquire("c")  # drops b
    assert limiter.statistics().keys == 2
    assert not limiter.try_acquire("a")  # kept: still limited (drops nothing)
    assert limiter.try_acquire("b")  # forgotten: starts afresh (drops c)
    assert limiter.try_acquire("c")  # dropped by b: afresh (drops a)
    assert limiter.try_acquire("a")


async def test_a_key_with_waiters_is_never_dropped(autojump_clock) -> None:
    limiter = RateLimiter(rate=1, max_keys=1)
    log: Log = []
    async with trio.open_nursery() as nursery:
        await limiter.acquire("a")
        nursery.start_soon(admit, limiter, log, "a waiter", 1, "a")
        await trio.testing.wait_all_tasks_blocked()
        assert limiter.try_acquire("b")  # a has a waiter: kept, the table grows
        assert limiter.statistics().keys == 2
        assert limiter.try_acquire("c")  # drops b, the only idle key
        assert limiter.statistics().keys == 2
        assert not limiter.try_acquire("a")  # a kept its state
    assert log == [("a waiter", 1)]
    assert limiter.try_acquire("d")  # drops c (a was used more recently)
    assert not limiter.try_acquire("a")
    assert limiter.statistics().keys == 2


async def test_unhashable_key_is_a_type_error(autojump_clock) -> None:
    limiter = RateLimiter(rate=1)
    with pytest.raises(TypeError, match="unhashable"):
        limiter.try_acquire(["a"])  # type: ignore[arg-type]


# --- cancellation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "cancelled", "expected"),
    [
        ("token_bucket", "a", [("b", 1), ("c", 2)]),  # the head leaves: b, c move up
        ("token_bucket", "b", [("a", 1), ("c", 2)]),  # a middle one: c moves up
        ("token_bucket", "c", [("a", 1), ("b", 2)]),  # the last one: nobody moves
        ("sliding_window", "a", [("b", 1), ("c", 2)]),
        ("sliding_window", "b", [("a", 1), ("c", 2)]),
        ("sliding_window", "c", [("a", 1), ("b", 2)]),
    ],
)
async def test_a_cancelled_waiter_gives_its_place_back(
    autojump_clock, algorithm: str, cancelled: str, expected: Log
) -> None:
    limiter = RateLimiter(rate=1, algorithm=algorithm)
    assert limiter.try_acquire()
    log: Log = []
    async with trio.open_nursery() as nursery:
        scopes: dict[str, trio.CancelScope] = {}
        for label in "abc":
            scopes[label] = scope = trio.CancelScope()
            nursery.start_soon(cancellable, scope, limiter, log, label)
            await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(0.5)
        scopes[cancelled].cancel()
    assert log == [(f"{cancelled} cancelled", 0.5), *expected]
    # Nothing leaked: the permit of the cancelled caller is free again at 3.
    assert not limiter.try_acquire()
    await trio.sleep(3 - trio.current_time())
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    assert limiter.statistics() == RateLimiterStatistics(admitted=4, rejected=2, waited=2, keys=1)


async def cancellable(scope: trio.CancelScope, limiter: RateLimiter, log: Log, label: str) -> None:
    with scope:
        await admit(limiter, log, label)
    if scope.cancelled_caught:
        log.append((f"{label} cancelled", trio.current_time()))


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window"])
async def test_cancelled_at_its_due_time_admits_nothing(autojump_clock, algorithm: str) -> None:
    limiter = RateLimiter(rate=1, algorithm=algorithm)
    await limiter.acquire()
    with trio.move_on_at(1) as scope:
        await limiter.acquire()  # due at 1 too: the cancellation wins
    assert scope.cancelled_caught
    assert trio.current_time() == 1
    assert limiter.try_acquire()  # the permit is still there
    assert limiter.statistics() == RateLimiterStatistics(admitted=2, rejected=0, waited=0, keys=1)


async def test_cancellation_propagates_and_is_not_counted(autojump_clock, events) -> None:
    limiter = RateLimiter(rate=1, name="api")
    await limiter.acquire()
    raised = []
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await limiter.acquire()
        except trio.Cancelled as exc:
            raised.append(exc)
            raise
    assert scope.cancelled_caught
    assert len(raised) == 1
    assert limiter.statistics() == RateLimiterStatistics(admitted=1, rejected=0, waited=0, keys=1)
    assert events == []


async def test_cancelling_every_waiter_restores_the_bucket(autojump_clock) -> None:
    limiter = RateLimiter(rate=2, burst=2)
    assert limiter.try_acquire(cost=2)
    log: Log = []
    with trio.move_on_after(0.25):
        async with trio.open_nursery() as nursery:
            await start_in_order(nursery, limiter, log, ("a", 2), ("b", 1), ("c", 2))
    assert log == []
    await trio.sleep(0.75)  # 2 tokens by refill alone, as if nobody had waited
    assert limiter.try_acquire(cost=2)
    assert not limiter.try_acquire()


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window"])
async def test_a_waiter_woken_late_keeps_its_place(
    autojump_clock, events: list[Event], algorithm: str
) -> None:
    # A busy loop can wake a waiter after its time: newcomers still queue behind it.
    limiter = RateLimiter(rate=1, algorithm=algorithm)
    await limiter.acquire()
    log: Log = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(admit, limiter, log, "a")  # due at 1
        await trio.testing.wait_all_tasks_blocked()
        autojump_clock.jump(5)  # a is due but has not run yet
        assert not limiter.try_acquire()
        # Two newcomers (started in either order): one fits at 5, after a; one at 6.
        nursery.start_soon(admit, limiter, log, "b")
        nursery.start_soon(admit, limiter, log, "b")
    assert log == [("a", 5), ("b", 5), ("b", 6)]
    assert [dict(e.data) for e in events if e.kind == "ratelimit.rejected"] == [
        {"key": None, "cost": 1, "retry_after": 0}
    ]


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window"])
async def test_a_waiter_cancelled_late_gives_back_no_more_than_capacity(
    autojump_clock, algorithm: str
) -> None:
    limiter = RateLimiter(rate=1, algorithm=algorithm)
    await limiter.acquire()
    log: Log = []
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()
        nursery.start_soon(cancellable, scope, limiter, log, "a")  # due at 1
        await trio.testing.wait_all_tasks_blocked()
        autojump_clock.jump(5)
        scope.cancel()  # before a runs: it leaves at 5, admitted at no time
    assert log == [("a cancelled", 5)]
    assert limiter.try_acquire()
    assert not limiter.try_acquire()


# --- cost and configuration validation ---------------------------------------------------


@pytest.mark.parametrize(
    ("options", "cost", "error", "message"),
    [
        ({}, 0, ValueError, r"RateLimiter: cost must be >= 1 and <= burst \(3\), got 0"),
        ({}, -1, ValueError, r"cost must be >= 1 and <= burst \(3\), got -1"),
        ({}, 4, ValueError, r"cost must be >= 1 and <= burst \(3\), got 4"),
        ({"burst": 5}, 6, ValueError, r"cost must be >= 1 and <= burst \(5\), got 6"),
        (
            {"algorithm": "sliding_window"},
            4,
            ValueError,
            r"cost must be >= 1 and <= rate \(3\), got 4",
        ),
        ({}, 1.0, TypeError, r"RateLimiter: cost must be an int, got 1\.0"),
        ({}, True, TypeError, r"cost must be an int, got True"),
        ({}, "1", TypeError, r"cost must be an int, got '1'"),
    ],
)
async def test_cost_is_checked_at_call_time(
    autojump_clock, options: dict[str, Any], cost: Any, error: type[Exception], message: str
) -> None:
    limiter = RateLimiter(rate=3, **options)
    with pytest.raises(error, match=message):
        await limiter.acquire(cost=cost)
    with pytest.raises(error, match=message):
        limiter.try_acquire(cost=cost)
    assert trio.current_time() == 0
    assert limiter.statistics() == RateLimiterStatistics(admitted=0, rejected=0, waited=0, keys=0)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"rate": 0}, ValueError, "RateLimiter: rate must be > 0, got 0"),
        ({"rate": -1.5}, ValueError, "RateLimiter: rate must be > 0, got -1.5"),
        ({"rate": math.nan}, ValueError, "RateLimiter: rate must be finite, got nan"),
        ({"rate": math.inf}, ValueError, "RateLimiter: rate must be finite, got inf"),
        ({"rate": "5"}, TypeError, "RateLimiter: rate must be an int or a float, got '5'"),
        ({"rate": True}, TypeError, "RateLimiter: rate must be an int or a float, got True"),
        ({"rate": 1, "per": 0}, ValueError, "RateLimiter: per must be > 0, got 0"),
        ({"rate": 1, "per": timedelta(0)}, ValueError, "RateLimiter: per must be > 0, got 0.0"),
        ({"rate": 1, "per": math.inf}, ValueError, "RateLimiter: per must be finite, got inf"),
        ({"rate": 1, "per": "1"}, TypeError, "RateLimiter: per must be a number of seconds"),
        ({"rate": 1, "burst": 0.5}, ValueError, "RateLimiter: burst must be >= 1, got 0.5"),
        ({"rate": 1, "burst": math.inf}, ValueError, "RateLimiter: burst must be finite"),
        ({"rate": 1, "burst": "2"}, TypeError, "RateLimiter: burst must be an int or a float"),
        (
            {"rate": 1, "algorithm": "leaky_bucket"},
            ValueError,
            "RateLimiter: algorithm must be one of 'sliding_window', 'token_bucket', "
            "got 'leaky_bucket'",
        ),
        (
            {"rate": 2, "burst": 3, "algorithm": "sliding_window"},
            ValueError,
            "RateLimiter: burst must be None or equal to rate with algorithm='sliding_window', "
            "got 3 (rate 2)",
        ),
        (
            {"rate": 0.5, "algorithm": "sliding_window"},
            ValueError,
            "RateLimiter: rate must be >= 1 with algorithm='sliding_window', got 0.5",
        ),
        ({"rate": 1, "max_wait": -1}, ValueError, "RateLimiter: max_wait must be >= 0, got -1"),
        ({"rate": 1, "max_wait": "1"}, TypeError, "RateLimiter: max_wait must be a number"),
        ({"rate": 1, "max_keys": 0}, ValueError, "RateLimiter: max_keys must be >= 1, got 0"),
        ({"rate": 1, "max_keys": 1.5}, TypeError, "RateLimiter: max_keys must be an int"),
        ({"rate": 1, "name": 5}, TypeError, "RateLimiter: name must be a str or None, got 5"),
    ],
)
def test_bad_configuration_names_the_argument(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        RateLimiter(**options)
    assert str(caught.value).startswith(message)


def test_options_are_keyword_only_and_rate_is_required() -> None:
    with pytest.raises(TypeError):
        RateLimiter(5)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RateLimiter()  # type: ignore[call-arg]


def test_good_configuration_is_kept() -> None:
    limiter = RateLimiter(
        rate=2,
        per=timedelta(minutes=1),
        burst=2,
        algorithm="sliding_window",
        max_wait=timedelta(seconds=1.5),
        max_keys=3,
        name="api",
    )
    assert (limiter.rate, limiter.per, limiter.burst, limiter.max_wait) == (2, 60.0, 2, 1.5)
    assert repr(limiter) == (
        "RateLimiter(rate=2, per=60.0, burst=2, algorithm='sliding_window', max_wait=1.5, "
        "max_keys=3, name='api')"
    )


# --- events and statistics ----------------------------------------------------------------


async def test_events(autojump_clock, events: list[Event]) -> None:
    limiter = RateLimiter(rate=4, burst=1, max_wait=0.25, name="api")
    log: Log = []
    await limiter.acquire("k")  # at once: no event
    await limiter.acquire("k")  # waits 0.25 s
    assert not limiter.try_acquire("k")  # 0.25 s to go
    async with trio.open_nursery() as nursery:
        nursery.start_soon(admit, limiter, log, "queued", 1, "k")  # due at 0.5
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(rs.RateLimited):
            await limiter.acquire("k")  # behind it: 0.5 s > max_wait
    assert [(e.kind, e.source, dict(e.data), e.time) for e in events] == [
        ("ratelimit.waited", "api", {"key": "k", "cost": 1, "delay": 0.25}, 0.25),
        ("ratelimit.rejected", "api", {"key": "k", "cost": 1, "retry_after": 0.25}, 0.25),
        ("ratelimit.rejected", "api", {"key": "k", "cost": 1, "retry_after": 0.5}, 0.25),
        ("ratelimit.waited", "api", {"key": "k", "cost": 1, "delay": 0.25}, 0.5),
    ]
    assert log == [("queued", 0.5)]


async def test_statistics_count_calls_not_cost(autojump_clock) -> None:
    limiter = RateLimiter(rate=4, max_wait=0.5)
    assert limiter.statistics() == RateLimiterStatistics(admitted=0, rejected=0, waited=0, keys=0)
    await limiter.acquire("a", cost=3)
    await limiter.acquire("a", cost=3)  # waits 0.5 s for 2 tokens
    assert limiter.try_acquire("b", cost=4)
    with pytest.raises(rs.RateLimited):
        await limiter.acquire("a", cost=4)  # would wait 1 s
    assert limiter.statistics() == RateLimiterStatistics(admitted=3, rejected=1, waited=1, keys=2)
