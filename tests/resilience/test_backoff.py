from __future__ import annotations

from datetime import timedelta

import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st
from tenacity import RetryCallState

from resilience import backoff


def _state(attempt: int, previous: float = 0.0) -> RetryCallState:
    state = RetryCallState(tenacity.AsyncRetrying(), None, (), {})
    state.attempt_number = attempt
    state.upcoming_sleep = previous
    return state


durations = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)
attempts = st.integers(min_value=1, max_value=10_000)


@given(seconds=durations, attempt=attempts)
def test_constant_is_exact(seconds: float, attempt: int) -> None:
    assert backoff.constant(seconds)(_state(attempt)) == seconds


@given(initial=durations, step=durations, extra=durations, attempt=attempts)
def test_linear_grows_by_step_up_to_maximum(
    initial: float, step: float, extra: float, attempt: int
) -> None:
    maximum = initial + extra
    delay = backoff.linear(initial, step, maximum)(_state(attempt))
    assert delay == min(maximum, initial + step * (attempt - 1))
    assert initial <= delay <= maximum


@given(
    initial=st.floats(min_value=0.0, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=1000.0),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    attempt=attempts,
    jitter=st.sampled_from(["full", "equal", None]),
)
def test_exponential_stays_within_documented_bounds(
    initial: float, extra: float, multiplier: float, attempt: int, jitter: backoff.Jitter
) -> None:
    wait = backoff.exponential(initial, initial + extra, multiplier, jitter)
    base = wait.base(attempt)
    assert initial <= base <= initial + extra
    delay = wait(_state(attempt))
    if jitter is None:
        assert delay == base
    elif jitter == "full":
        assert 0.0 <= delay <= base
    else:
        assert base / 2 <= delay <= base


@given(
    initial=st.floats(min_value=0.0, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=1000.0),
    attempt_gaps=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=30),
)
def test_decorrelated_jitter_stays_in_initial_maximum(
    initial: float, extra: float, attempt_gaps: list[int]
) -> None:
    maximum = initial + extra
    wait = backoff.exponential(initial, maximum, jitter="decorrelated")
    previous = 0.0
    attempt = 0
    for gap in attempt_gaps:
        attempt += gap
        delay = wait(_state(attempt, previous))
        assert initial <= delay <= maximum
        assert delay <= max(initial, 3 * (previous or initial))
        previous = delay


def test_exponential_without_jitter_doubles_then_caps() -> None:
    wait = backoff.exponential(0.5, 3.0, jitter=None)
    assert [wait(_state(n)) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_exponential_survives_float_overflow() -> None:
    wait = backoff.exponential(1.0, 60.0, multiplier=10.0, jitter=None)
    assert wait(_state(100_000)) == 60.0


def test_timedelta_is_accepted() -> None:
    assert backoff.constant(timedelta(milliseconds=250))(_state(1)) == 0.25
    assert backoff.exponential(timedelta(seconds=1), timedelta(minutes=1)).maximum == 60.0


def test_composes_with_tenacity_waits() -> None:
    combined = backoff.constant(1.0) + tenacity.wait_fixed(2)
    assert combined(_state(1)) == 3.0


@pytest.mark.parametrize(
    ("make", "exc", "message"),
    [
        (lambda: backoff.constant(-1), ValueError, "Constant: seconds must be >= 0"),
        (lambda: backoff.constant("1"), TypeError, "Constant: seconds must be a number"),
        (lambda: backoff.constant(float("nan")), ValueError, "seconds must not be NaN"),
        (lambda: backoff.linear(2, 1, 1), ValueError, "Linear: maximum must be >= initial"),
        (lambda: backoff.linear(0, -1, 1), ValueError, "Linear: step must be >= 0"),
        (lambda: backoff.exponential(jitter="gauss"), ValueError, "jitter must be one of"),  # type: ignore[arg-type]
        (lambda: backoff.exponential(multiplier=0.5), ValueError, "multiplier must be >= 1"),
        (lambda: backoff.exponential(multiplier="2"), TypeError, "multiplier must be a number"),  # type: ignore[arg-type]
        (lambda: backoff.exponential(5, 1), ValueError, "Exponential: maximum must be >= initial"),
        (lambda: backoff.exponential(initial=-0.1), ValueError, "initial must be >= 0"),
    ],
)
def test_bad_configuration_names_the_argument(make, exc, message) -> None:
    with pytest.raises(exc, match=message):
        make()
