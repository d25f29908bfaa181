"""Properties of `RateLimiter` over random schedules, and a reference model of try_acquire.

Each schedule runs in its own ``trio.run`` on a `MockClock`, generated up front. Gaps and
periods are multiples of 1/8 s so that the window arithmetic is exact; the token bucket
also gets a rate of 3 to exercise inexact floats, checked with a small epsilon.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable

import attrs
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resilience as rs
from resilience import RateLimiter

EPSILON = 1e-9
eighths = st.integers(0, 16).map(lambda k: k / 8)


@attrs.frozen
class Op:
    """After ``gap`` seconds: try_acquire, acquire, or acquire cancelled after a while."""

    gap: float
    kind: str
    key: Hashable
    cost: int
    cancel_after: float


@attrs.frozen
class Admission:
    key: Hashable
    time: float
    cost: int
    arrival: int  # the order in which the calls were made


@st.composite
def schedules(draw: st.DrawFn, capacity: int) -> list[Op]:
    op = st.builds(
        Op,
        gap=eighths,
        kind=st.sampled_from(["try", "acquire", "acquire", "cancelled"]),
        key=st.sampled_from(["a", "b"]),
        cost=st.integers(1, capacity),
        cancel_after=st.integers(1, 24).map(lambda k: k / 8),
    )
    return draw(st.lists(op, max_size=40))


max_waits = st.one_of(st.none(), st.sampled_from([0.0, 0.25, 1.0, 3.0]))


def run_schedule(limiter: RateLimiter, ops: list[Op]) -> list[Admission]:
    """Run ``ops``; return the admissions in the order they happened.

    Also checks on the way that a rejection's retry_after exceeds max_wait and that no
    caller waits longer than max_wait.
    """
    admissions: list[Admission] = []
    retry_afters: list[float | None] = []
    arrivals = itertools.count()

    async def call(op: Op) -> None:
        deadline = op.cancel_after if op.kind == "cancelled" else math.inf
        with trio.move_on_after(deadline):
            arrival = next(arrivals)
            start = trio.current_time()
            try:
                await limiter.acquire(op.key, op.cost)
            except rs.RateLimited as exc:
                retry_afters.append(exc.retry_after)
                return
            now = trio.current_time()
            admissions.append(Admission(op.key, now, op.cost, arrival))
            if limiter.max_wait is not None:
                assert now - start <= limiter.max_wait + EPSILON

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for op in ops:
                await trio.sleep(op.gap)
                if op.kind == "try":
                    arrival = next(arrivals)
                    if limiter.try_acquire(op.key, op.cost):
                        now = trio.current_time()
                        admissions.append(Admission(op.key, now, op.cost, arrival))
                else:
                    nursery.start_soon(call, op)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for retry_after in retry_afters:
        assert limiter.max_wait is not None
        assert retry_after is not None
        assert retry_after > limiter.max_wait
    return admissions


def per_key(admissions: list[Admission]) -> dict[Hashable, list[Admission]]:
    keyed: dict[Hashable, list[Admission]] = {}
    for admission in admissions:
        keyed.setdefault(admission.key, []).append(admission)
    return keyed


def assert_fifo(admissions: list[Admission]) -> None:
    """On each key, calls are admitted in the order they were made."""
    for log in per_key(admissions).values():
        arrivals = [admission.arrival for admission in log]
        assert arrivals == sorted(arrivals)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.integers(1, 5),
    per=st.sampled_from([0.5, 1.0, 1.5, 2.0]),
    max_wait=max_waits,
    data=st.data(),
)
def test_sliding_window_never_admits_more_than_rate_in_any_window(
    rate: int, per: float, max_wait: float | None, data: st.DataObject
) -> None:
    limiter = RateLimiter(rate=rate, per=per, algorithm="sliding_window", max_wait=max_wait)
    admissions = run_schedule(limiter, data.draw(schedules(rate)))
    for log in per_key(admissions).values():
        for admission in log:
            # Every window (t - per, t] ending at an admission; the others hold no more.
            in_window = sum(
                other.cost for other in log if admission.time - per < other.time <= admission.time
            )
            assert in_window <= rate, (admission, log)
    assert_fifo(admissions)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1, 2, 3, 4]),
    per=st.sampled_from([0.5, 1.0, 2.0]),
    burst=st.sampled_from([None, 1, 1.5, 2, 3, 5]),
    max_wait=max_waits,
    data=st.data(),
)
def test_token_bucket_admits_at_most_burst_plus_refill(
    rate: float, per: float, burst: float | None, max_wait: float | None, data: st.DataObject
) -> None:
    limiter = RateLimiter(rate=rate, per=per, burst=burst, max_wait=max_wait)
    capacity = max(rate, 1) if burst is None else burst
    admissions = run_schedule(limiter, data.draw(schedules(math.floor(capacity))))
    for log in per_key(admissions).values():
        # Admissions are in time order: [t_i, t_j] holds exactly log[i..j] (and any
        # interval holds a contiguous run of them).
        for i, first in enumerate(log):
            admitted = 0
            for last in log[i:]:
                admitted += last.cost
                bound = capacity + rate * (last.time - first.time) / per
                assert admitted <= bound + EPSILON, (first, last, log)
    assert_fifo(admissions)


# --- try_acquire against a reference model -------------------------------------------------


class Model:
    """Least recently used keys, each with a token count or a list of admissions."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.keys: dict[Hashable, list[float] | list[tuple[float, int]]] = {}

    def try_acquire(self, key: Hashable, cost: int, now: float) -> bool:
        limiter = self.limiter
        if key in self.keys:
            state = self.keys.pop(key)
        else:
            if len(self.keys) == limiter.max_keys:
                del self.keys[next(iter(self.keys))]
            state = [] if limiter.algorithm == "sliding_window" else [self.capacity, now]
        self.keys[key] = state  # most recently used last
        if limiter.algorithm == "sliding_window":
            window: list[tuple[float, int]] = state  # type: ignore[assignment]
            used = sum(c for t, c in window if now - limiter.per < t <= now)
            if used + cost > limiter.rate:
                return False
            window.append((now, cost))
            return True
        bucket: list[float] = state  # type: ignore[assignment]
        tokens, last = bucket
        tokens = min(self.capacity, tokens + (now - last) * limiter.rate / limiter.per)
        admitted = tokens >= cost
        bucket[:] = [tokens - cost if admitted else tokens, now]
        return admitted

    @property
    def capacity(self) -> float:
        limiter = self.limiter
        if limiter.algorithm == "sliding_window":
            return limiter.rate
        return max(limiter.rate, 1) if limiter.burst is None else limiter.burst


class TryAcquireMachine(RuleBasedStateMachine):
    """try_acquire, on a few keys and a shared MockClock, agrees with `Model`."""

    @initialize(
        algorithm=st.sampled_from(["token_bucket", "sliding_window"]),
        rate=st.sampled_from([0.5, 1, 2, 2.5, 3, 4]),
        per=st.sampled_from([0.5, 1.0, 2.0]),
        burst=st.sampled_from([None, 1, 1.5, 2, 4]),
        max_keys=st.integers(1, 3),
    )
    def create(
        self, algorithm: str, rate: float, per: float, burst: float | None, max_keys: int
    ) -> None:
        if algorithm == "sliding_window":
            rate, burst = max(rate, 1), None
        self.limiter = RateLimiter(
            rate=rate, per=per, burst=burst, algorithm=algorithm, max_keys=max_keys
        )
        self.model = Model(self.limiter)
        # MockClock keeps its time across trio.run calls; each rule is one short run.
        self.clock = trio.testing.MockClock()
        self.now = 0.0
        self.admitted = self.rejected = 0

    @rule(seconds=eighths)
    def advance(self, seconds: float) -> None:
        self.clock.jump(seconds)
        self.now += seconds

    @rule(key=st.sampled_from(["a", "b", "c", None]), cost=st.integers(1, 5))
    def try_acquire(self, key: Hashable, cost: int) -> None:
        cost = min(cost, math.floor(self.model.capacity))

        async def attempt() -> bool:
            assert trio.current_time() == self.now
            return self.limiter.try_acquire(key, cost)

        admitted = trio.run(attempt, clock=self.clock)
        assert admitted == self.model.try_acquire(key, cost, self.now)
        if admitted:
            self.admitted += 1
        else:
            self.rejected += 1

    @invariant()
    def statistics_agree(self) -> None:
        statistics = self.limiter.statistics()
        assert statistics.keys == len(self.model.keys)
        assert (statistics.admitted, statistics.rejected) == (self.admitted, self.rejected)
        assert statistics.waited == 0


TryAcquireMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
test_try_acquire_agrees_with_the_reference_model = TryAcquireMachine.TestCase
