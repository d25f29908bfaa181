"""`shared.CircuitBreaker` on a real Redis, in real time (short intervals): options, the
closed state without round trips, tripping and its reach to other stores, the veto of a
lonely failing process, fleet-wide probes, isolate/reset, async with, and outages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

import resilience as rs
from resilience import redis as shared
from tests.resilience.redis.conftest import new_prefix
from tests.resilience.redis.helpers import eventually
from tests.resilience.redis.server import RedisServer

INTERVAL = 0.05


class Down(Exception):
    pass


async def ok() -> str:
    return "ok"


async def down() -> None:
    raise Down("refused")


@pytest.fixture
async def other(store: shared.Store, redis: RedisServer) -> AsyncIterator[shared.Store]:
    """A second store on the same prefix: another process, as far as Redis can tell."""
    async with shared.Store.from_url(redis.url, prefix=store.prefix, op_timeout=2.0) as opened:
        yield opened


def breaker(
    store: shared.Store, name: str = "payments", **options: object
) -> shared.CircuitBreaker:
    options.setdefault("sync_interval", INTERVAL)
    return shared.CircuitBreaker(store, name=name, **options)  # type: ignore[arg-type]


async def fail(cb: shared.CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Down):
            await cb.call(down)


async def test_options_are_checked_as_the_in_process_breaker_checks_them(
    store: shared.Store,
) -> None:
    with pytest.raises(ValueError, match="CircuitBreaker: failure_threshold must be >= 1"):
        breaker(store, failure_threshold=0)
    with pytest.raises(ValueError, match="CircuitBreaker: sync_interval must be > 0"):
        breaker(store, sync_interval=0)
    with pytest.raises(ValueError, match="slow_call_ratio needs slow_call_duration"):
        breaker(store, slow_call_ratio=0.5)
    with pytest.raises(TypeError, match="CircuitBreaker: store must be"):
        shared.CircuitBreaker(None, name="x")  # type: ignore[arg-type]


async def test_closed_calls_cost_no_round_trip_of_their_own(store: shared.Store) -> None:
    cb = breaker(store)
    assert await cb.call(ok) == "ok"  # the first call refreshes the view
    syncs = cb._syncs
    for _ in range(200):
        assert await cb.call(ok) == "ok"
    # Only the background sync talks to Redis: a few times per interval, not per call.
    assert cb._syncs - syncs <= 3
    stats = await cb.statistics()
    assert stats.state is rs.CircuitState.CLOSED
    assert stats.successes == 201


async def test_failures_trip_the_circuit_for_every_store_within_two_intervals(
    store: shared.Store, other: shared.Store, events: list[rs.Event]
) -> None:
    here, there = breaker(store, reset_timeout=30.0), breaker(other, reset_timeout=30.0)
    assert await there.call(ok) == "ok"
    await fail(here, 5)
    crossed = trio.current_time()
    # The other process rejects within 2 * sync_interval of the call that crossed.
    await eventually(lambda: there.state is rs.CircuitState.OPEN, within=1.0, step=0.005)
    assert trio.current_time() - crossed <= 2 * INTERVAL + 0.1
    with pytest.raises(rs.CircuitOpen, match="circuit 'payments' is open") as caught:
        await there.call(ok)
    assert caught.value.retry_after == pytest.approx(30.0, abs=1.0)
    stats = await there.statistics()
    assert (stats.state, stats.failures, stats.consecutive_opens) == (rs.CircuitState.OPEN, 5, 1)
    kinds = [(e.kind, e.data.get("new")) for e in events if e.kind.startswith("circuit")]
    assert ("circuit.state_changed", "open") in kinds
    assert ("circuit.rejected", None) in kinds


async def test_one_process_failing_alone_does_not_open_the_fleet_circuit(
    store: shared.Store, other: shared.Store
) -> None:
    lonely, healthy = breaker(store), breaker(other)
    await fail(lonely, 1)  # its run of failures begins
    assert await healthy.call(ok) == "ok"  # the service answers another process after that
    await trio.sleep(3 * INTERVAL)  # both have flushed: Redis knows
    for _ in range(10):
        assert await healthy.call(ok) == "ok"
        await fail(lonely, 3)
        await trio.sleep(INTERVAL / 2)
    await trio.sleep(2 * INTERVAL)
    assert (await healthy.statistics()).state is rs.CircuitState.CLOSED
    assert lonely.state is rs.CircuitState.CLOSED


async def test_in_ratio_mode_the_others_calls_must_fail_too(
    store: shared.Store, other: shared.Store
) -> None:
    options = {"failure_ratio": 0.5, "window": rs.Window.count(20), "minimum_calls": 4}
    lonely, healthy = breaker(store, **options), breaker(other, **options)
    for _ in range(4):  # the others' share of the window reaches minimum_calls
        assert await healthy.call(ok) == "ok"
    await trio.sleep(2 * INTERVAL)
    for _ in range(4):  # the fleet's ratio goes over 0.5, the others' stays at 0
        assert await healthy.call(ok) == "ok"
        await fail(lonely, 3)
        await trio.sleep(INTERVAL)
    assert (await lonely.statistics()).state is rs.CircuitState.CLOSED
    # When everyone fails, it opens.
    await fail(healthy, 6)
    await eventually(lambda: lonely.state is rs.CircuitState.OPEN, within=1.0)


async def test_half_open_probes_are_limited_across_the_fleet_and_a_success_closes_it(
    store: shared.Store, other: shared.Store
) -> None:
    here, there = breaker(store, reset_timeout=0.3), breaker(other, reset_timeout=0.3)
    await fail(here, 5)
    await eventually(lambda: here.state is rs.CircuitState.OPEN, within=1.0)
    await trio.sleep(0.35)
    started = trio.Event()
    release = trio.Event()
    outcomes: list[str] = []

    async def slow_ok() -> str:
        started.set()
        await release.wait()
        return "probed"

    async def probe(cb: shared.CircuitBreaker) -> None:
        try:
            outcomes.append(await cb.call(slow_ok))
        except rs.CircuitOpen:
            outcomes.append("rejected")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, here)
        await started.wait()
        await probe(there)  # the one probe lease is taken: rejected
        await probe(here)
        release.set()
    assert sorted(outcomes) == ["probed", "rejected", "rejected"]
    await eventually(lambda: there.state is rs.CircuitState.CLOSED, within=1.0)
    assert await there.call(ok) == "ok"


async def test_a_failed_probe_reopens_for_longer_when_the_break_grows(
    store: shared.Store,
) -> None:
    cb = breaker(store, reset_timeout=lambda opens: 0.2 * opens, failure_threshold=1)
    await fail(cb, 1)
    await eventually(lambda: cb.state is rs.CircuitState.OPEN, within=1.0)
    await trio.sleep(0.25)
    await fail(cb, 1)  # the probe fails
    stats = await cb.statistics()
    assert stats.state is rs.CircuitState.OPEN
    assert stats.consecutive_opens == 2
    assert stats.open_until is not None
    assert stats.open_until - trio.current_time() == pytest.approx(0.4, abs=0.1)


async def test_a_cancelled_probe_gives_its_lease_back(store: shared.Store) -> None:
    cb = breaker(store, reset_timeout=0.2, failure_threshold=1)
    await fail(cb, 1)
    await eventually(lambda: cb.state is rs.CircuitState.OPEN, within=1.0)
    await trio.sleep(0.25)
    with trio.move_on_after(0.1):
        await cb.call(trio.sleep_forever)  # the probe, cancelled
    for _ in range(50):  # the lease comes back (in the background): the next probe runs
        try:
            assert await cb.call(ok) == "ok"
            break
        except rs.CircuitOpen:
            await trio.sleep(0.01)
    assert cb.state is rs.CircuitState.CLOSED


async def test_isolate_and_reset_act_on_the_fleet(store: shared.Store, other: shared.Store) -> None:
    here, there = breaker(store), breaker(other)
    assert await there.call(ok) == "ok"
    await here.isolate()
    await eventually(lambda: there.state is rs.CircuitState.OPEN, within=1.0)
    with pytest.raises(rs.CircuitOpen, match="is isolated") as caught:
        await there.call(ok)
    assert caught.value.retry_after is None
    assert (await there.statistics()).isolated
    await there.reset()
    # `here` made no call since it isolated: its view is stale, and its next call refreshes it.
    await trio.sleep(INTERVAL)
    assert await here.call(ok) == "ok"
    assert here.state is rs.CircuitState.CLOSED


async def test_async_with_admits_and_records_like_call(store: shared.Store) -> None:
    cb = breaker(store, failure_threshold=2)
    async with cb:
        pass
    for _ in range(2):
        with pytest.raises(Down):
            async with cb:
                raise Down("in the block")
    await eventually(lambda: cb.state is rs.CircuitState.OPEN, within=1.0)
    with pytest.raises(rs.CircuitOpen):
        async with cb:
            pass
    stats = await cb.statistics()
    assert (stats.successes, stats.failures, stats.rejections) == (1, 2, 1)


async def test_exceptions_is_failure_refuses_are_successes(store: shared.Store) -> None:
    cb = breaker(store, failure_threshold=1, is_failure=lambda exc: not isinstance(exc, Down))
    await fail(cb, 3)
    await trio.sleep(2 * INTERVAL)
    assert (await cb.statistics()).successes == 3
    assert cb.state is rs.CircuitState.CLOSED


async def test_cancelled_calls_are_neither(store: shared.Store) -> None:
    cb = breaker(store, failure_threshold=1)
    await cb.call(ok)
    with trio.move_on_after(0.01):
        await cb.call(trio.sleep_forever)
    stats = await cb.statistics()
    assert (stats.successes, stats.failures, stats.cancellations) == (1, 0, 1)
    assert stats.state is rs.CircuitState.CLOSED


@pytest.mark.slow
async def test_local_mode_breaks_in_process_while_redis_is_gone(
    own_redis: RedisServer,
) -> None:
    async with shared.Store.from_url(
        own_redis.url, prefix=new_prefix(), on_unavailable="local", op_timeout=0.3
    ) as store:
        cb = breaker(store, failure_threshold=2)
        assert await cb.call(ok) == "ok"
        own_redis.kill()
        await trio.sleep(2 * INTERVAL)  # the view goes stale
        await fail(cb, 2)  # the in-process twin counts them
        with pytest.raises(rs.CircuitOpen):
            await cb.call(ok)
        assert cb.state is rs.CircuitState.OPEN
        own_redis.start()  # an empty server: the fleet's circuit is closed
        await eventually(lambda: store.available, within=1.5)
        assert await cb.call(ok) == "ok"
        assert cb.state is rs.CircuitState.CLOSED


@pytest.mark.slow
async def test_raise_mode_raises_once_the_view_is_stale(own_redis: RedisServer) -> None:
    async with shared.Store.from_url(own_redis.url, prefix=new_prefix(), op_timeout=0.3) as store:
        cb = breaker(store)
        assert await cb.call(ok) == "ok"
        own_redis.kill()
        await trio.sleep(2 * INTERVAL)
        with pytest.raises(rs.StoreUnavailable, match="script 'circuit' failed"):
            await cb.call(ok)
