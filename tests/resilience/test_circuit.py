from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

from resilience import (
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    CircuitStatistics,
    Event,
    Window,
    _observe,
)
from resilience._circuit_window import TIME_SLICES

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Boom(Exception):
    pass


async def ok() -> str:
    return "ok"


async def boom() -> None:
    raise Boom


async def sleeper(seconds: float, fail: bool = False) -> str:
    await trio.sleep(seconds)
    if fail:
        raise Boom
    return "slept"


async def fail_times(cb: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            await cb.call(boom)


async def rejected(cb: CircuitBreaker) -> CircuitOpen:
    with pytest.raises(CircuitOpen) as info:
        await cb.call(ok)
    return info.value


def transitions(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.data["old"], e.data["new"]) for e in events if e.kind == "circuit.state_changed"]


# ------------------------------------------------------------------ consecutive mode


async def test_consecutive_failures_open_then_half_open_then_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=3, reset_timeout=10.0)
    assert cb.state is CLOSED
    await trio.sleep(1)
    await fail_times(cb, 2)
    assert cb.state is CLOSED
    await fail_times(cb, 1)
    assert cb.state is OPEN
    assert cb.statistics().opened_at == 1.0
    assert cb.statistics().open_until == 11.0
    assert (await rejected(cb)).retry_after == 10.0
    await trio.sleep(4)
    error = await rejected(cb)
    assert error.retry_after == 6.0
    assert "retry after 6 s" in str(error)
    await trio.sleep_until(11.0 - 2**-20)
    assert cb.state is OPEN
    await trio.sleep_until(11.0)
    assert cb.state is HALF_OPEN
    assert await cb.call(ok) == "ok"
    assert cb.state is CLOSED
    assert cb.statistics().opened_at is None


async def test_a_call_notices_the_end_of_the_open_state_itself(
    autojump_clock: trio.testing.MockClock, events: list[Event]
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=2.0)
    await fail_times(cb, 1)
    await trio.sleep_until(2.0)  # nobody reads `state`: the call makes the move
    assert await cb.call(ok) == "ok"
    assert transitions(events) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


async def test_a_success_resets_the_consecutive_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=3)
    await fail_times(cb, 2)
    assert cb.statistics().consecutive_failures == 2
    await cb.call(ok)
    assert cb.statistics().consecutive_failures == 0
    await fail_times(cb, 2)
    assert cb.state is CLOSED
    await fail_times(cb, 1)
    assert cb.state is OPEN


async def test_failed_probe_reopens_and_success_threshold_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(
        failure_threshold=1, reset_timeout=timedelta(seconds=5), success_threshold=2
    )
    await fail_times(cb, 1)
    await trio.sleep(5)
    await fail_times(cb, 1)  # the probe fails
    assert cb.state is OPEN
    assert cb.statistics().opened_at == 5.0
    assert (await rejected(cb)).retry_after == 5.0
    await trio.sleep(5)
    await cb.call(ok)
    assert cb.state is HALF_OPEN
    await cb.call(ok)
    assert cb.state is CLOSED
    assert trio.current_time() == 10.0


async def test_zero_reset_timeout_is_half_open_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=0)
    await fail_times(cb, 1)
    assert cb.state is HALF_OPEN


async def test_growing_break_durations_from_a_callable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[int] = []

    def backoff(consecutive_opens: int) -> float:
        seen.append(consecutive_opens)
        return 10.0 * 2.0 ** (consecutive_opens - 1)

    cb = CircuitBreaker(failure_threshold=2, reset_timeout=backoff)
    await fail_times(cb, 2)  # opens at 0 for 10 s
    assert (await rejected(cb)).retry_after == 10.0
    await trio.sleep(10)
    await fail_times(cb, 1)  # probe fails at 10: open for 20 s
    assert cb.statistics().consecutive_opens == 2
    assert (await rejected(cb)).retry_after == 20.0
    await trio.sleep(20)
    await fail_times(cb, 1)  # probe fails at 30: open for 40 s
    assert (await rejected(cb)).retry_after == 40.0
    await trio.sleep(39)
    assert cb.state is OPEN
    await trio.sleep(1)
    assert trio.current_time() == 70.0
    await cb.call(ok)  # closes: the count of openings restarts
    assert cb.statistics().consecutive_opens == 0
    await fail_times(cb, 2)
    assert (await rejected(cb)).retry_after == 10.0
    assert seen == [1, 2, 3, 1]


async def test_callable_reset_timeout_may_return_a_timedelta(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=lambda n: timedelta(minutes=n))
    await fail_times(cb, 1)
    assert (await rejected(cb)).retry_after == 60.0


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (-1.0, ValueError, "CircuitBreaker: reset_timeout(1) must return seconds >= 0, got -1.0"),
        (math.nan, ValueError, "CircuitBreaker: reset_timeout(1) must return seconds >= 0"),
        ("10", TypeError, "CircuitBreaker: reset_timeout(1) must return seconds, got '10'"),
        (True, TypeError, "CircuitBreaker: reset_timeout(1) must return seconds, got True"),
    ],
)
async def test_a_bad_break_duration_names_the_argument_and_leaves_the_state(
    autojump_clock: trio.testing.MockClock, value: object, error: type[Exception], message: str
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=lambda n: value)
    with pytest.raises(error) as info:
        await cb.call(boom)
    assert str(info.value).startswith(message)
    assert isinstance(info.value.__context__, Boom)
    assert cb.state is CLOSED
    assert cb.statistics().consecutive_opens == 0


# ------------------------------------------------------------------ half-open probes


async def open_until_half_open(cb: CircuitBreaker) -> None:
    await fail_times(cb, cb.failure_threshold)
    await trio.sleep(cb.reset_timeout)  # type: ignore[arg-type]
    assert cb.state is HALF_OPEN


async def test_half_open_admits_n_concurrent_probes_and_rejects_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=3)
    await open_until_half_open(cb)
    release = trio.Event()

    async def probe() -> str:
        await release.wait()
        return "probed"

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(cb.call, probe)
        await trio.testing.wait_all_tasks_blocked()
        assert cb.statistics().probes_in_flight == 3
        error = await rejected(cb)
        assert error.retry_after is None
        assert "3 probe slot(s) are taken" in str(error)
        release.set()
    # success_threshold=1: the first finished probe closed the circuit; the other two were
    # probes of a period that had ended and changed nothing.
    assert cb.state is CLOSED
    assert cb.statistics().successes == 3
    assert cb.statistics().probes_in_flight == 0


async def test_a_cancelled_probe_gives_its_slot_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=2)
    await open_until_half_open(cb)
    async with trio.open_nursery() as nursery:
        scopes = [trio.CancelScope(), trio.CancelScope()]

        async def probe(scope: trio.CancelScope) -> None:
            with scope:
                await cb.call(trio.sleep_forever)

        for scope in scopes:
            nursery.start_soon(probe, scope)
        await trio.testing.wait_all_tasks_blocked()
        await rejected(cb)
        scopes[0].cancel()
        await trio.testing.wait_all_tasks_blocked()
        stats = cb.statistics()
        assert (stats.probes_in_flight, stats.cancellations, stats.state) == (1, 1, HALF_OPEN)
        assert (stats.successes, stats.failures) == (0, 1)
        assert await cb.call(ok) == "ok"  # the freed slot admits a probe, which closes
        assert cb.state is CLOSED
        scopes[1].cancel()
    assert cb.statistics().cancellations == 2
    assert cb.state is CLOSED


async def test_a_failed_probe_reopens_and_the_other_probes_no_longer_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=2)
    await open_until_half_open(cb)
    release = trio.Event()

    async def slow_ok() -> None:
        await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cb.call, slow_ok)
        await trio.testing.wait_all_tasks_blocked()
        await fail_times(cb, 1)  # the second probe fails: open again
        assert cb.state is OPEN
        assert cb.statistics().probes_in_flight == 0
        release.set()
    assert cb.state is OPEN  # the first probe's late success belongs to an ended period
    await trio.sleep(1)
    assert cb.state is HALF_OPEN


async def test_cancellation_in_closed_state_is_neither_success_nor_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=2)
    await fail_times(cb, 1)
    with trio.move_on_after(1):
        await cb.call(trio.sleep_forever)
    stats = cb.statistics()
    assert (stats.consecutive_failures, stats.successes, stats.cancellations) == (1, 0, 1)
    assert stats.calls == 2
    await fail_times(cb, 1)
    assert cb.state is OPEN


async def test_a_call_finishing_while_open_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=10.0)

    async def late_failure() -> None:
        with pytest.raises(Boom):
            await cb.call(sleeper, 2, True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late_failure)
        await trio.testing.wait_all_tasks_blocked()
        await fail_times(cb, 1)  # opens at 0
    assert cb.statistics().opened_at == 0.0  # not re-opened at 2 by the late failure
    assert cb.statistics().failures == 2


# ------------------------------------------------------------------ ratio mode


async def test_ratio_mode_over_a_count_window(autojump_clock: trio.testing.MockClock) -> None:
    cb = CircuitBreaker(failure_ratio=0.5, window=Window.count(4), minimum_calls=4)
    await fail_times(cb, 3)  # 3 calls < minimum_calls
    assert cb.state is CLOSED
    await cb.call(ok)  # F F F S: 3/4 >= 0.5
    assert cb.state is OPEN
    cb.reset()
    for _ in range(5):
        await cb.call(ok)
    stats = cb.statistics()
    assert (stats.window_calls, stats.window_failures) == (4, 0)
    await fail_times(cb, 1)  # window S S S F: 1/4
    await cb.call(ok)  # S S F S
    assert cb.state is CLOSED
    await fail_times(cb, 1)  # S F S F: 2/4 >= 0.5
    assert cb.state is OPEN
    assert cb.statistics().window_failures == 2


async def test_ratio_mode_ignores_failure_threshold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, failure_ratio=1.0, minimum_calls=3)
    await fail_times(cb, 2)
    assert cb.state is CLOSED
    await fail_times(cb, 1)
    assert cb.state is OPEN


async def test_count_window_caps_minimum_calls_at_its_size(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_ratio=1.0, window=Window.count(2))  # minimum_calls=10
    await fail_times(cb, 2)
    assert cb.state is OPEN


async def test_ratio_mode_default_window_is_the_last_100_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_ratio=0.5)
    for _ in range(150):
        await cb.call(ok)
    assert cb.statistics().window_calls == 100
    await fail_times(cb, 49)
    assert cb.state is CLOSED
    await fail_times(cb, 1)
    assert cb.state is OPEN


async def test_ratio_mode_over_a_time_window(autojump_clock: trio.testing.MockClock) -> None:
    cb = CircuitBreaker(failure_ratio=0.5, window=Window.time(10), minimum_calls=3)
    await fail_times(cb, 1)  # t=0
    await trio.sleep(5)
    await cb.call(ok)  # t=5
    await trio.sleep(5)
    # t=10: the failure at 0 has left the window; 2 calls < minimum_calls.
    await fail_times(cb, 1)
    assert cb.state is CLOSED
    assert cb.statistics().window_calls == 2
    await trio.sleep(1)
    await fail_times(cb, 1)  # t=11: S F F
    assert cb.state is OPEN
    assert cb.statistics().opened_at == 11.0


async def test_time_window_resolution_is_a_hundredth(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_ratio=1.0, window=Window.time(10), minimum_calls=2)
    await trio.sleep(0.05)
    await fail_times(cb, 1)  # in the slice [0, 0.1)
    await trio.sleep(9.94)  # t=9.99: still in the window
    assert cb.statistics().window_calls == 1
    await trio.sleep(0.01)  # t=10.0: its slice has left, although it is only 9.95 s old
    assert cb.statistics().window_calls == 0
    await fail_times(cb, 1)
    assert cb.state is CLOSED
    assert TIME_SLICES == 100


async def test_time_window_counts_calls_sharing_a_slice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_ratio=0.6, window=Window.time(1), minimum_calls=5)
    for _ in range(3):
        await cb.call(ok)
    await fail_times(cb, 3)
    stats = cb.statistics()
    assert (stats.window_calls, stats.window_failures, stats.state) == (6, 3, CLOSED)
    await fail_times(cb, 1)  # 4/7 < 0.6
    assert cb.state is CLOSED
    await fail_times(cb, 1)  # 5/8 >= 0.6
    assert cb.state is OPEN


async def test_closing_clears_the_window(autojump_clock: trio.testing.MockClock) -> None:
    cb = CircuitBreaker(failure_ratio=0.5, window=Window.count(10), minimum_calls=2)
    await fail_times(cb, 2)
    assert cb.statistics().window_calls == 2  # kept while open, for inspection
    await trio.sleep(30)
    await cb.call(ok)
    stats = cb.statistics()
    assert (stats.state, stats.window_calls, stats.window_failures) == (CLOSED, 0, 0)


# ------------------------------------------------------------------ slow calls


async def test_slow_call_ratio_opens_the_circuit(autojump_clock: trio.testing.MockClock) -> None:
    cb = CircuitBreaker(
        slow_call_duration=1.0, slow_call_ratio=0.5, window=Window.count(4), minimum_calls=4
    )
    await cb.call(sleeper, 1.0)  # slow (>= the duration)
    await cb.call(sleeper, 0.5)
    await cb.call(ok)
    assert cb.state is CLOSED
    assert cb.statistics().slow_calls == 1
    await cb.call(sleeper, 2.0)  # 2 slow of 4
    assert cb.state is OPEN
    stats = cb.statistics()
    assert (stats.slow_calls, stats.window_slow_calls, stats.successes) == (2, 2, 4)
    assert stats.opened_at == 3.5


async def test_a_slow_success_resets_consecutive_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=2, slow_call_duration=1.0, slow_call_ratio=1.0)
    await fail_times(cb, 1)
    await cb.call(sleeper, 5.0)
    assert cb.statistics().consecutive_failures == 0
    await fail_times(cb, 1)
    assert cb.state is CLOSED
    await fail_times(cb, 1)
    assert cb.state is OPEN


async def test_slow_failures_count_as_slow_and_as_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_ratio=1.0, slow_call_duration=1.0, minimum_calls=2)
    with pytest.raises(Boom):
        await cb.call(sleeper, 1.0, True)
    stats = cb.statistics()
    assert (stats.failures, stats.slow_calls, stats.window_slow_calls) == (1, 1, 1)
    await fail_times(cb, 1)
    assert cb.state is OPEN


async def test_slow_call_duration_alone_only_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=2, slow_call_duration=timedelta(milliseconds=500))
    for _ in range(20):
        await cb.call(sleeper, 1.0)
    stats = cb.statistics()
    assert (stats.state, stats.slow_calls, stats.window_calls) == (CLOSED, 20, 0)
    await fail_times(cb, 2)
    assert cb.state is OPEN


async def test_a_slow_probe_reopens_when_the_slow_ratio_is_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(
        failure_threshold=1, reset_timeout=5.0, slow_call_duration=1.0, slow_call_ratio=1.0
    )
    await fail_times(cb, 1)
    await trio.sleep(5)
    await cb.call(sleeper, 1.0)
    assert cb.state is OPEN
    assert cb.statistics().opened_at == 6.0
    await trio.sleep(5)
    await cb.call(sleeper, 0.5)
    assert cb.state is CLOSED


async def test_a_slow_probe_closes_without_a_slow_ratio(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=5.0, slow_call_duration=1.0)
    await fail_times(cb, 1)
    await trio.sleep(5)
    await cb.call(sleeper, 3.0)
    assert cb.state is CLOSED


# ------------------------------------------------------------------ is_failure


async def test_is_failure_selects_the_exceptions_that_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[Exception] = []

    def is_failure(exc: Exception) -> bool:
        seen.append(exc)
        return isinstance(exc, Boom)

    async def not_found() -> None:
        raise KeyError("missing")

    cb = CircuitBreaker(failure_threshold=2, is_failure=is_failure)
    await fail_times(cb, 1)
    with pytest.raises(KeyError):
        await cb.call(not_found)  # propagates, but the service answered: a success
    stats = cb.statistics()
    assert (stats.failures, stats.successes, stats.consecutive_failures) == (1, 1, 0)
    await fail_times(cb, 1)
    assert cb.state is CLOSED
    await fail_times(cb, 1)
    assert cb.state is OPEN
    assert [type(e) for e in seen] == [Boom, KeyError, Boom, Boom]


async def test_an_is_failure_that_raises_counts_a_failure_and_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def broken(exc: Exception) -> bool:
        raise RuntimeError("predicate bug")

    cb = CircuitBreaker(failure_threshold=1, is_failure=broken)
    with pytest.raises(RuntimeError, match="predicate bug") as info:
        await cb.call(boom)
    assert isinstance(info.value.__context__, Boom)
    assert cb.state is OPEN


async def test_is_failure_false_on_a_probe_is_a_successful_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(
        failure_threshold=1, reset_timeout=1.0, is_failure=lambda e: not isinstance(e, KeyError)
    )
    await open_until_half_open(cb)

    async def not_found() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        await cb.call(not_found)
    assert cb.state is CLOSED


# ------------------------------------------------------------------ isolate / reset


async def test_isolate_forces_open_until_reset(
    autojump_clock: trio.testing.MockClock, events: list[Event]
) -> None:
    cb = CircuitBreaker(name="db")
    await trio.sleep(2)
    cb.isolate()
    assert cb.state is OPEN
    stats = cb.statistics()
    assert (stats.isolated, stats.opened_at, stats.open_until) == (True, 2.0, None)
    await trio.sleep(3600)
    assert cb.state is OPEN
    error = await rejected(cb)
    assert error.retry_after is None
    assert str(error) == "circuit 'db' is isolated"
    cb.isolate()  # again: nothing changes
    cb.reset()
    assert cb.state is CLOSED
    assert not cb.statistics().isolated
    assert await cb.call(ok) == "ok"
    assert transitions(events) == [("closed", "open"), ("open", "closed")]


async def test_isolate_an_open_circuit_and_a_half_open_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=5.0, half_open_max_calls=2)
    await fail_times(cb, 1)
    cb.isolate()
    assert cb.statistics().opened_at == 0.0
    await trio.sleep(10)
    assert cb.state is OPEN
    cb.reset()
    await open_until_half_open(cb)
    async with trio.open_nursery() as nursery:
        release = trio.Event()

        async def probe() -> None:
            await release.wait()

        nursery.start_soon(cb.call, probe)
        await trio.testing.wait_all_tasks_blocked()
        cb.isolate()
        assert cb.statistics().probes_in_flight == 0
        release.set()
    assert cb.state is OPEN  # the probe's success belongs to the ended half-open period


async def test_reset_clears_counters_and_window_but_keeps_lifetime_totals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_ratio=0.9, window=Window.time(60), minimum_calls=5)
    await fail_times(cb, 3)
    cb.reset()  # already closed: only clears
    stats = cb.statistics()
    assert (stats.consecutive_failures, stats.window_calls, stats.failures) == (0, 0, 3)
    await fail_times(cb, 5)
    assert cb.state is OPEN
    cb.reset()
    stats = cb.statistics()
    assert stats.state is CLOSED
    assert (stats.consecutive_opens, stats.opened_at, stats.window_calls) == (0, None, 0)
    assert (stats.failures, stats.calls) == (8, 8)


async def test_reset_from_half_open(autojump_clock: trio.testing.MockClock) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=1.0)
    await open_until_half_open(cb)
    cb.reset()
    assert cb.state is CLOSED


# ------------------------------------------------------------------ async with


async def test_async_with_records_like_call(autojump_clock: trio.testing.MockClock) -> None:
    cb = CircuitBreaker(failure_threshold=2, reset_timeout=3.0)
    async with cb as entered:
        assert entered is cb
    assert cb.statistics().successes == 1
    for _ in range(2):
        with pytest.raises(Boom):
            async with cb:
                raise Boom
    assert cb.state is OPEN
    with pytest.raises(CircuitOpen) as info:
        async with cb:
            pytest.fail("an open circuit must not run the block")
    assert info.value.retry_after == 3.0
    await trio.sleep(3)
    async with cb:  # the probe
        assert cb.statistics().probes_in_flight == 1
        with pytest.raises(CircuitOpen):
            async with cb:
                pass
    assert cb.state is CLOSED


async def test_async_with_cancellation_frees_the_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=1.0)
    await open_until_half_open(cb)
    with trio.move_on_after(1):
        async with cb:
            await trio.sleep_forever()
    stats = cb.statistics()
    assert (stats.state, stats.probes_in_flight, stats.cancellations) == (HALF_OPEN, 0, 1)
    with pytest.raises(Boom):
        async with cb:
            raise Boom
    assert cb.state is OPEN


async def test_async_with_is_failure_and_slow_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(
        failure_threshold=1, slow_call_duration=1.0, is_failure=lambda e: isinstance(e, Boom)
    )

    async def slow_miss() -> None:
        async with cb:
            await trio.sleep(2)
            raise KeyError

    with pytest.raises(KeyError):
        await slow_miss()
    stats = cb.statistics()
    assert (stats.state, stats.successes, stats.slow_calls) == (CLOSED, 1, 1)
    async with cb:
        pass
    assert cb.statistics().successes == 2


async def test_concurrent_async_with_probes_in_many_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=10.0, half_open_max_calls=2)
    await open_until_half_open(cb)
    outcomes: list[str] = []

    async def probe(delay: float, fail: bool) -> None:
        try:
            async with cb:
                await trio.sleep(delay)
                if fail:
                    raise Boom
        except Boom:
            outcomes.append("failed")
        except CircuitOpen:
            outcomes.append("rejected")
        else:
            outcomes.append("ok")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, 2, False)
        nursery.start_soon(probe, 1, True)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(probe, 0, False)
    assert outcomes == ["rejected", "failed", "ok"]
    # The failed probe (t=11) re-opened the circuit; the late success (t=12) did not close it.
    assert cb.state is OPEN
    assert cb.statistics().opened_at == 11.0


async def test_a_closed_state_block_ending_while_another_task_probes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=5.0)
    release = trio.Event()

    async def long_block() -> None:
        async with cb:  # entered while closed
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_block)
        await trio.testing.wait_all_tasks_blocked()
        await fail_times(cb, 1)
        await trio.sleep(5)
        async with cb:  # this task's probe
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            stats = cb.statistics()
            # The long block's success was counted but is not a probe: still half-open.
            assert (stats.state, stats.successes, stats.probes_in_flight) == (HALF_OPEN, 1, 1)
    assert cb.state is CLOSED


async def test_nested_async_with_in_one_task_keeps_each_entry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=2)
    await open_until_half_open(cb)
    async with cb:  # outer probe
        with pytest.raises(Boom):
            async with cb:  # inner probe fails: re-opens
                raise Boom
        assert cb.state is OPEN
    assert cb.state is OPEN  # the outer probe's success belongs to the ended period
    await trio.sleep(1)
    async with cb:  # a probe: closes
        async with cb:  # closed-state entry nested inside a finished probe's block
            pass
        with pytest.raises(Boom):
            async with cb:
                raise Boom  # a closed-state failure: opens again (threshold 1)
    assert cb.state is OPEN
    assert cb.statistics().opened_at == 2.0


# ------------------------------------------------------------------ statistics and events


async def test_statistics_snapshot(autojump_clock: trio.testing.MockClock) -> None:
    cb = CircuitBreaker(failure_threshold=2, reset_timeout=5.0, name="api")
    await cb.call(ok)
    await fail_times(cb, 2)
    await rejected(cb)
    await rejected(cb)
    assert cb.statistics() == CircuitStatistics(
        name="api",
        state=OPEN,
        calls=3,
        successes=1,
        failures=2,
        cancellations=0,
        slow_calls=0,
        rejections=2,
        isolated=False,
        consecutive_failures=2,
        consecutive_opens=1,
        opened_at=0.0,
        open_until=5.0,
        probes_in_flight=0,
        window_calls=0,
        window_failures=0,
        window_slow_calls=0,
    )
    with pytest.raises(AttributeError):
        cb.statistics().calls = 0  # type: ignore[misc]


async def test_events_report_transitions_and_rejections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[Event] = []
    subscription = _observe.observe(seen.append)
    try:
        cb = CircuitBreaker(failure_threshold=1, reset_timeout=4.0, name="svc")
        await fail_times(cb, 1)
        await trio.sleep(1)
        await rejected(cb)
        await trio.sleep(3)
        assert cb.state is HALF_OPEN  # noticed here, at t=4
        await fail_times(cb, 1)
        await trio.sleep(4)
        await cb.call(ok)
    finally:
        subscription.unsubscribe()
    await fail_times(cb, 1)  # unsubscribed: not seen
    assert [(e.kind, e.source, dict(e.data), e.time) for e in seen] == [
        ("circuit.state_changed", "svc", {"old": "closed", "new": "open"}, 0.0),
        ("circuit.rejected", "svc", {"state": "open", "retry_after": 3.0}, 1.0),
        ("circuit.state_changed", "svc", {"old": "open", "new": "half_open"}, 4.0),
        ("circuit.state_changed", "svc", {"old": "half_open", "new": "open"}, 4.0),
        ("circuit.state_changed", "svc", {"old": "open", "new": "half_open"}, 8.0),
        ("circuit.state_changed", "svc", {"old": "half_open", "new": "closed"}, 8.0),
    ]


async def test_half_open_rejection_event(
    autojump_clock: trio.testing.MockClock, events: list[Event]
) -> None:
    cb = CircuitBreaker(failure_threshold=1, reset_timeout=1.0)
    await open_until_half_open(cb)
    async with cb:
        await rejected(cb)
    rejections = [dict(e.data) for e in events if e.kind == "circuit.rejected"]
    assert rejections == [{"state": "half_open", "retry_after": None}]


def test_state_names_are_strings() -> None:
    assert [s.value for s in CircuitState] == ["closed", "open", "half_open"]


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold must be >= 1, got 0"),
        ({"failure_threshold": 1.5}, TypeError, "failure_threshold must be an int"),
        ({"failure_threshold": True}, TypeError, "failure_threshold must be an int"),
        ({"reset_timeout": -1}, ValueError, "reset_timeout must be >= 0, got -1"),
        ({"reset_timeout": timedelta(seconds=-1)}, ValueError, "reset_timeout must be >= 0"),
        ({"reset_timeout": "30"}, TypeError, "reset_timeout must be a number of seconds"),
        ({"reset_timeout": math.nan}, ValueError, "reset_timeout must not be NaN"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls must be >= 1, got 0"),
        ({"success_threshold": 0}, ValueError, "success_threshold must be >= 1, got 0"),
        ({"failure_ratio": 0}, ValueError, "failure_ratio must be in (0, 1], got 0"),
        ({"failure_ratio": 1.5}, ValueError, "failure_ratio must be in (0, 1], got 1.5"),
        ({"failure_ratio": math.nan}, ValueError, "failure_ratio must be in (0, 1], got nan"),
        ({"failure_ratio": "0.5"}, TypeError, "failure_ratio must be a number in (0, 1]"),
        ({"failure_ratio": True}, TypeError, "failure_ratio must be a number in (0, 1]"),
        ({"failure_ratio": 0.5, "window": 10}, TypeError, "window must be Window.count(n)"),
        ({"window": Window.count(5)}, ValueError, "window is only used with failure_ratio"),
        ({"minimum_calls": 0}, ValueError, "minimum_calls must be >= 1, got 0"),
        ({"slow_call_duration": 0}, ValueError, "slow_call_duration must be > 0, got 0"),
        ({"slow_call_duration": "1"}, TypeError, "slow_call_duration must be a number"),
        (
            {"slow_call_duration": 1, "slow_call_ratio": 2},
            ValueError,
            "slow_call_ratio must be in (0, 1], got 2",
        ),
        ({"slow_call_ratio": 0.5}, ValueError, "slow_call_ratio needs slow_call_duration"),
        ({"is_failure": True}, TypeError, "is_failure must be callable or None, got True"),
        ({"name": 3}, TypeError, "name must be a str or None, got 3"),
    ],
)
def test_bad_configuration_names_the_argument(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        CircuitBreaker(**kwargs)
    assert str(info.value).startswith(f"CircuitBreaker: {message}")


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        CircuitBreaker(5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("constructor", "value", "error", "message"),
    [
        ("count", 0, ValueError, "Window.count: n must be >= 1, got 0"),
        ("count", 2.0, TypeError, "Window.count: n must be an int, got 2.0"),
        ("count", True, TypeError, "Window.count: n must be an int, got True"),
        ("time", 0, ValueError, "Window.time: seconds must be > 0, got 0"),
        ("time", -1, ValueError, "Window.time: seconds must be > 0"),
        ("time", math.inf, ValueError, "Window.time: seconds must be finite"),
        ("time", math.nan, ValueError, "Window.time: seconds must not be NaN"),
        ("time", "1", TypeError, "Window.time: seconds must be a number of seconds"),
    ],
)
def test_bad_windows_name_the_argument(
    constructor: str, value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        getattr(Window, constructor)(value)
    assert str(info.value).startswith(message)


def test_a_window_of_an_unknown_kind_is_refused() -> None:
    kind: Any = "sliding"
    with pytest.raises(ValueError, match="Window: kind must be 'count' or 'time', got 'sliding'"):
        Window(kind, 3)


def test_windows_are_frozen_values() -> None:
    assert Window.time(timedelta(seconds=90)) == Window.time(90.0)
    assert Window.time(timedelta(seconds=90)).size == 90.0
    assert Window.count(5) == Window("count", 5)
    assert hash(Window.count(5)) == hash(Window.count(5))
    with pytest.raises(AttributeError):
        Window.count(5).size = 6  # type: ignore[misc]


def test_config_is_kept_and_timedeltas_are_seconds() -> None:
    cb = CircuitBreaker(reset_timeout=timedelta(minutes=1), slow_call_duration=timedelta(seconds=2))
    assert (cb.reset_timeout, cb.slow_call_duration, cb.name) == (60.0, 2.0, None)
