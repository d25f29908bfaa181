from __future__ import annotations

import pytest
import trio

from resilience import Event, Hedge


class Upstream:
    """Attempt n sleeps ``latencies[n]`` then returns its number, or raises if it is negative."""

    def __init__(self, *latencies: float) -> None:
        self.latencies = list(latencies)
        self.started: list[float] = []
        self.cancelled: list[int] = []

    async def __call__(self) -> int:
        n = len(self.started)
        self.started.append(trio.current_time())
        latency = self.latencies[n]
        try:
            await trio.sleep(abs(latency))
        except trio.Cancelled:
            self.cancelled.append(n)
            raise
        if latency < 0:
            raise ConnectionError(f"attempt {n} failed")
        return n


async def test_fast_first_attempt_starts_no_hedge(autojump_clock) -> None:
    upstream = Upstream(0.5, 0.1)
    assert await Hedge(delay=1).call(upstream) == 0
    assert upstream.started == [0.0]


async def test_slow_attempt_is_hedged_and_loser_cancelled(
    autojump_clock, events: list[Event]
) -> None:
    upstream = Upstream(10, 0.5)
    assert await Hedge(delay=1, name="search").call(upstream) == 1
    assert upstream.started == [0.0, 1.0]
    assert upstream.cancelled == [0]
    assert trio.current_time() == 1.5
    assert [(e.kind, e.source, e.data["attempt"]) for e in events] == [
        ("hedge.attempt", "search", 2)
    ]


async def test_a_failed_attempt_starts_the_next_one_at_once(autojump_clock) -> None:
    upstream = Upstream(-0.2, 0.3, 0.1)
    assert await Hedge(delay=5, max_attempts=3).call(upstream) == 1
    assert upstream.started == [0.0, 0.2]
    assert trio.current_time() == 0.5


async def test_all_attempts_fail_last_error_propagates(autojump_clock) -> None:
    upstream = Upstream(-3, -1)
    with pytest.raises(ConnectionError, match="attempt 0 failed"):
        await Hedge(delay=1).call(upstream)
    assert upstream.started == [0.0, 1.0]
    assert trio.current_time() == 3.0


async def test_outer_cancellation_cancels_every_attempt(autojump_clock) -> None:
    upstream = Upstream(10, 10, 10)
    with trio.move_on_after(2.5) as scope:
        await Hedge(delay=1, max_attempts=3).call(upstream)
    assert scope.cancelled_caught
    assert sorted(upstream.cancelled) == [0, 1, 2]


async def test_single_attempt_hedge_is_a_plain_call(autojump_clock) -> None:
    upstream = Upstream(4)
    assert await Hedge(delay=1, max_attempts=1).call(upstream) == 0
    assert upstream.started == [0.0]


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"delay": -1}, ValueError, "Hedge: delay must be >= 0"),
        ({"delay": 1, "max_attempts": 0}, ValueError, "Hedge: max_attempts must be >= 1"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, exc, message) -> None:
    with pytest.raises(exc, match=message):
        Hedge(**kwargs)
