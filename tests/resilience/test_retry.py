from __future__ import annotations

from datetime import timedelta

import pytest
import tenacity
import trio

import resilience as rs
from resilience import Event, Retry
from resilience.backoff import constant, exponential


class Boom(Exception):
    pass


class Flaky:
    """Fails ``failures`` times (recording when), then returns ``"ok"``."""

    def __init__(self, failures: int, exc: type[Exception] = Boom) -> None:
        self.failures = failures
        self.exc = exc
        self.times: list[float] = []

    async def __call__(self, *args: object, **kwargs: object) -> str:
        self.times.append(trio.current_time())
        if len(self.times) <= self.failures:
            raise self.exc(f"failure {len(self.times)}")
        return "ok"


async def test_success_path_calls_once_and_returns(autojump_clock) -> None:
    flaky = Flaky(0)
    assert await Retry().call(flaky, 1, key="v") == "ok"
    assert flaky.times == [0.0]


async def test_always_failing_with_four_attempts_takes_exactly_three_seconds(
    autojump_clock,
) -> None:
    flaky = Flaky(100)
    with pytest.raises(Boom, match="failure 4"):
        await Retry(attempts=4, wait=constant(1.0)).call(flaky)
    assert flaky.times == [0.0, 1.0, 2.0, 3.0]
    assert trio.current_time() == 3.0


async def test_recovers_after_failures(autojump_clock) -> None:
    flaky = Flaky(2)
    assert await Retry(attempts=3, wait=constant(0.5)).call(flaky) == "ok"
    assert flaky.times == [0.0, 0.5, 1.0]


async def test_last_exception_propagates_unchanged(autojump_clock) -> None:
    raised: list[Exception] = []

    async def fail() -> None:
        exc = Boom(len(raised))
        raised.append(exc)
        raise exc

    with pytest.raises(Boom) as info:
        await Retry(attempts=3, wait=constant(0)).call(fail)
    assert info.value is raised[-1]
    assert len(raised) == 3


async def test_exponential_backoff_without_jitter_has_exact_times(autojump_clock) -> None:
    flaky = Flaky(4)
    retry = Retry(attempts=5, wait=exponential(0.5, 10.0, jitter=None))
    assert await retry.call(flaky) == "ok"
    assert flaky.times == [0.0, 0.5, 1.5, 3.5, 7.5]


async def test_any_tenacity_wait_stop_and_retry_objects(autojump_clock) -> None:
    flaky = Flaky(100, ValueError)
    retry = Retry(
        attempts=None,
        wait=tenacity.wait_fixed(2) + tenacity.wait_fixed(1),
        stop=tenacity.stop_after_delay(7),
        on=tenacity.retry_if_exception_type(ValueError),
    )
    with pytest.raises(ValueError, match="failure 4"):
        await retry.call(flaky)
    # tenacity's stop_after_delay sees trio time: attempts at 0, 3, 6 and 9 (9 >= 7: stop).
    assert flaky.times == [0.0, 3.0, 6.0, 9.0]


async def test_tenacity_retry_object_can_refuse(autojump_clock) -> None:
    flaky = Flaky(100, KeyError)
    retry = Retry(on=tenacity.retry_if_exception_type(ValueError), wait=constant(1))
    with pytest.raises(KeyError):
        await retry.call(flaky)
    assert flaky.times == [0.0]


async def test_on_exception_types_and_predicate(autojump_clock) -> None:
    only_boom = Retry(on=(Boom, KeyError), wait=constant(0))
    flaky = Flaky(100, ValueError)
    with pytest.raises(ValueError, match="failure 1"):
        await only_boom.call(flaky)

    by_message = Retry(on=lambda exc: "failure 1" in str(exc), wait=constant(0))
    flaky = Flaky(100)
    with pytest.raises(Boom, match="failure 2"):
        await by_message.call(flaky)


async def test_retry_after_overrides_the_backoff(autojump_clock) -> None:
    class Throttled(Exception):
        def __init__(self, after: float | None) -> None:
            super().__init__("throttled")
            self.after = after

    hints = iter([5.0, None])
    times: list[float] = []

    async def throttled() -> str:
        times.append(trio.current_time())
        if len(times) < 3:
            raise Throttled(next(hints))
        return "ok"

    retry = Retry(
        attempts=3,
        wait=constant(1.0),
        retry_after=lambda exc: exc.after if isinstance(exc, Throttled) else None,
    )
    assert await retry.call(throttled) == "ok"
    assert times == [0.0, 5.0, 6.0]  # the hint, then the backoff


async def test_total_timeout_stops_before_a_sleep_past_the_budget(autojump_clock) -> None:
    flaky = Flaky(100)
    with pytest.raises(Boom, match="failure 3"):
        await Retry(attempts=None, wait=constant(2.0), timeout=timedelta(seconds=5)).call(flaky)
    assert flaky.times == [0.0, 2.0, 4.0]  # a sleep from 4 to 6 would end past 5


async def test_timeout_counts_from_the_first_attempt(autojump_clock) -> None:
    calls: list[float] = []

    async def slow_then_fail() -> None:
        calls.append(trio.current_time())
        await trio.sleep(3)
        raise Boom

    with pytest.raises(Boom):
        await Retry(attempts=None, wait=constant(1.0), timeout=5.0).call(slow_then_fail)
    assert calls == [0.0, 4.0]  # at 3+1=4 a retry fits; at 7 the budget is spent


async def test_cancelled_is_never_retried(autojump_clock) -> None:
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await trio.sleep(10)

    with trio.move_on_after(1) as scope:
        await Retry(attempts=5, wait=constant(0)).call(slow)
    assert scope.cancelled_caught
    assert calls == 1


async def test_outer_cancel_during_backoff_ends_at_once(autojump_clock) -> None:
    flaky = Flaky(100)
    with trio.move_on_after(2.5) as scope:
        await Retry(attempts=10, wait=constant(100.0)).call(flaky)
    assert scope.cancelled_caught
    assert trio.current_time() == 2.5
    assert flaky.times == [0.0]


async def test_base_exceptions_propagate_without_retry(autojump_clock) -> None:
    calls = 0

    async def interrupt() -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await Retry(wait=constant(0)).call(interrupt)
    assert calls == 1


async def test_events_report_attempts_and_giving_up(autojump_clock, events: list[Event]) -> None:
    flaky = Flaky(100)
    with pytest.raises(Boom):
        await Retry(attempts=3, wait=constant(1), name="upstream").call(flaky)
    assert [(e.kind, e.source, e.time) for e in events] == [
        ("retry.attempt", "upstream", 0.0),
        ("retry.attempt", "upstream", 1.0),
        ("retry.gave_up", "upstream", 2.0),
    ]
    assert events[0].data["attempt"] == 1
    assert events[0].data["delay"] == 1
    assert str(events[2].data["error"]) == "failure 3"
    assert events[2].data["attempts"] == 3


async def test_budget_exhaustion_is_reported(autojump_clock, events: list[Event]) -> None:
    with pytest.raises(Boom):
        await Retry(attempts=None, wait=constant(10), timeout=1).call(Flaky(100))
    assert [e.kind for e in events] == ["retry.gave_up"]


async def test_fast_mode_waits_zero_and_nests(autojump_clock) -> None:
    flaky = Flaky(2)
    with rs.testing.fast(), rs.testing.fast():
        assert await Retry(attempts=3, wait=constant(60)).call(flaky) == "ok"
    assert flaky.times == [0.0, 0.0, 0.0]
    flaky = Flaky(1)
    assert await Retry(attempts=2, wait=constant(60)).call(flaky) == "ok"
    assert flaky.times == [0.0, 60.0]


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"attempts": 0}, ValueError, "Retry: attempts must be >= 1"),
        ({"attempts": 2.5}, TypeError, "Retry: attempts must be an int"),
        ({"attempts": True}, TypeError, "Retry: attempts must be an int"),
        ({"wait": 3}, TypeError, "Retry: wait must be a backoff"),
        ({"stop": 3}, TypeError, "Retry: stop must be a tenacity stop"),
        ({"on": trio.Cancelled}, ValueError, "Retry: on must name Exception subclasses"),
        ({"on": (ValueError, KeyboardInterrupt)}, ValueError, "KeyboardInterrupt"),
        ({"on": "ValueError"}, TypeError, "Retry: on must be exception types"),
        ({"on": (ValueError, "x")}, TypeError, "Retry: on must be exception types"),
        ({"timeout": -1}, ValueError, "Retry: timeout must be >= 0"),
        ({"retry_after": 5}, TypeError, "Retry: retry_after must be a callable"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, exc, message) -> None:
    with pytest.raises(exc, match=message):
        Retry(**kwargs)
