from __future__ import annotations

from datetime import timedelta

import pytest
import trio

import resilience as rs
from resilience import Event, Timeout


async def test_returns_the_result_within_the_deadline(autojump_clock) -> None:
    async def work(x: int, *, y: int) -> int:
        await trio.sleep(0.9)
        return x + y

    assert await Timeout(1.0).call(work, 1, y=2) == 3
    assert trio.current_time() == 0.9


async def test_cancels_at_the_deadline_and_raises(autojump_clock, events: list[Event]) -> None:
    cancelled = False

    async def slow() -> None:
        nonlocal cancelled
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            cancelled = True
            raise

    with pytest.raises(rs.TimeoutExceeded, match=r"within 1.5 s") as info:
        await Timeout(timedelta(seconds=1.5), name="db").call(slow)
    assert cancelled
    assert trio.current_time() == 1.5
    assert isinstance(info.value, trio.TooSlowError)
    assert isinstance(info.value, rs.ResilienceError)
    assert info.value.retry_after is None
    assert [(e.kind, e.source, dict(e.data)) for e in events] == [
        ("timeout.exceeded", "db", {"seconds": 1.5})
    ]


async def test_times_out_with_nobody_listening(autojump_clock) -> None:
    with pytest.raises(rs.TimeoutExceeded):
        await Timeout(0).call(trio.sleep, 1)
    assert trio.current_time() == 0


async def test_outer_cancellation_propagates_unchanged(autojump_clock) -> None:
    with trio.move_on_after(1) as outer:
        await Timeout(5).call(trio.sleep, 10)
    assert outer.cancelled_caught
    assert trio.current_time() == 1


async def test_errors_of_the_call_propagate(autojump_clock) -> None:
    async def fail() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await Timeout(1).call(fail)


@pytest.mark.parametrize(
    ("seconds", "exc", "message"),
    [(-1, ValueError, "Timeout: seconds must be >= 0"), ("1", TypeError, "Timeout: seconds")],
)
def test_bad_configuration_names_the_argument(seconds, exc, message) -> None:
    with pytest.raises(exc, match=message):
        Timeout(seconds)
