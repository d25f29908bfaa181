"""A hypothesis state machine: the breaker against a small reference model, one call at a time.

The machine runs synchronously inside the test's trio run (so ``trio.current_time()``
works) and each rule drives its coroutine by hand with ``send(None)``: no rule may block,
which also checks that the breaker never checkpoints on its own. Time is a MockClock
without autojump that only the rules move; the model keeps the same time as a plain float.
A fresh ``trio.run`` per rule would work too but costs ~0.7 ms a step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from resilience import CircuitBreaker, CircuitOpen, Window

T = TypeVar("T")


class Boom(Exception):
    pass


class Interrupted(BaseException):
    pass


class Model:
    """What the contract says a breaker does, for calls made one after another."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.threshold = options.get("failure_threshold", 5)
        self.reset_timeout = options.get("reset_timeout", 30.0)
        self.success_threshold = options.get("success_threshold", 1)
        self.failure_ratio = options.get("failure_ratio")
        self.slow_duration = options.get("slow_call_duration")
        self.slow_ratio = options.get("slow_call_ratio")
        window = options.get("window") or Window.count(100)
        self.window_kind, self.window_size = window.kind, window.size
        self.minimum = options.get("minimum_calls", 10)
        if self.window_kind == "count":
            self.minimum = min(self.minimum, self.window_size)

        self.state = "closed"
        self.isolated = False
        self.in_row = 0  # consecutive failures while closed
        self.history: list[tuple[float, bool, bool]] = []  # (end, failed, slow) while closed
        self.opens = 0
        self.open_until = 0.0
        self.probe_successes = 0

    def current_state(self, now: float) -> str:
        if self.state == "open" and not self.isolated and now >= self.open_until:
            self.state = "half_open"
            self.probe_successes = 0
        return self.state

    def admit(self, now: float) -> tuple[bool, float | None]:
        """(admitted, retry_after of the rejection)."""
        if self.current_state(now) != "open":
            return True, None
        return False, None if self.isolated else self.open_until - now

    def finish(self, end: float, failed: bool, duration: float) -> None:
        slow = self.slow_duration is not None and duration >= self.slow_duration
        if self.state == "half_open":
            if failed or (slow and self.slow_ratio is not None):
                self.open(end)
            else:
                self.probe_successes += 1
                if self.probe_successes >= self.success_threshold:
                    self.close()
            return
        self.in_row = self.in_row + 1 if failed else 0
        self.history.append((end, failed, slow))
        if self.failure_ratio is None and self.in_row >= self.threshold:
            self.open(end)
            return
        window = self.window(end)
        if len(window) < self.minimum:
            return
        failures = sum(1 for _, f, _ in window if f)
        slow_calls = sum(1 for _, _, s in window if s)
        if (self.failure_ratio is not None and failures / len(window) >= self.failure_ratio) or (
            self.slow_ratio is not None and slow_calls / len(window) >= self.slow_ratio
        ):
            self.open(end)

    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        if self.window_kind == "count":
            return self.history[-int(self.window_size) :]
        # 100 slices of size/100 seconds, aligned on multiples of the slice width.
        current = math.floor(now * 100 / self.window_size)
        return [
            c for c in self.history if math.floor(c[0] * 100 / self.window_size) > current - 100
        ]

    def open(self, now: float) -> None:
        self.opens += 1
        duration = self.reset_timeout
        if callable(duration):
            duration = duration(self.opens)
        self.state = "open"
        self.open_until = now + duration

    def close(self) -> None:
        self.state = "closed"
        self.in_row = 0
        self.history = []
        self.opens = 0

    def isolate(self) -> None:
        self.isolated = True
        self.state = "open"

    def reset(self) -> None:
        self.isolated = False
        self.close()


class CircuitMachine(RuleBasedStateMachine):
    """Subclassed per configuration, with OPTIONS (breaker kwargs) and CLOCK set."""

    OPTIONS: dict[str, Any]
    CLOCK: trio.testing.MockClock

    def __init__(self) -> None:
        super().__init__()
        self.cb = CircuitBreaker(**self.OPTIONS)
        self.model = Model(self.OPTIONS)
        self.now = self.CLOCK.current_time()

    def run(self, afn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        coro = afn()
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        coro.close()
        raise AssertionError("a rule's action reached a checkpoint")

    async def observe(self) -> tuple[Any, ...]:
        stats = self.cb.statistics()
        return (
            trio.current_time(),
            self.cb.state.value,
            stats.isolated,
            stats.consecutive_opens,
            stats.consecutive_failures,
            stats.probes_in_flight,
        )

    def check(self, observed: tuple[Any, ...]) -> None:
        model = self.model
        expected = (
            self.now,
            model.current_state(self.now),
            model.isolated,
            model.opens,
            model.in_row,
            0,
        )
        assert observed == expected

    def make_call(self, duration: float, fail: bool) -> None:
        async def fn() -> str:
            self.CLOCK.jump(duration)  # the call takes `duration` seconds
            if fail:
                raise Boom
            return "ok"

        async def action() -> tuple[bool, float | None, tuple[Any, ...]]:
            try:
                assert await self.cb.call(fn) == "ok"
            except CircuitOpen as exc:
                return False, exc.retry_after, await self.observe()
            except Boom:
                pass
            return True, None, await self.observe()

        admitted, retry_after, observed = self.run(action)
        assert (admitted, retry_after) == self.model.admit(self.now)
        if admitted:
            self.now += duration
            self.model.finish(self.now, fail, duration)
        self.check(observed)

    @rule()
    def call_succeeds(self) -> None:
        self.make_call(0.0, fail=False)

    @rule()
    def call_fails(self) -> None:
        self.make_call(0.0, fail=True)

    @rule(duration=st.sampled_from([0.25, 0.5, 1.0, 1.5, 3.0]), fail=st.booleans())
    def call_is_slow(self, duration: float, fail: bool) -> None:
        self.make_call(duration, fail)

    @rule()
    def call_is_interrupted(self) -> None:
        """A BaseException that is not an Exception: what trio.Cancelled goes through.

        (Real cancel scopes are in test_circuit.py: here nothing may reach a checkpoint.)
        """

        async def interrupted() -> None:
            raise Interrupted

        async def action() -> tuple[bool, tuple[Any, ...]]:
            admitted = True
            try:
                await self.cb.call(interrupted)
            except CircuitOpen:
                admitted = False
            except Interrupted:
                pass
            return admitted, await self.observe()

        admitted, observed = self.run(action)
        assert admitted == self.model.admit(self.now)[0]
        self.check(observed)

    # Dyadic durations keep every time exact in binary floating point.
    @rule(
        seconds=st.sampled_from([1 / 64, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0]), look=st.booleans()
    )
    def advance_time(self, seconds: float, look: bool) -> None:
        """Move time; without ``look``, the next call is what notices a move to half-open."""
        self.now += seconds
        if not look:
            self.CLOCK.jump(seconds)
            return

        async def action() -> tuple[Any, ...]:
            self.CLOCK.jump(seconds)
            return await self.observe()

        self.check(self.run(action))

    @rule(isolate=st.booleans())
    def isolate_or_reset(self, isolate: bool) -> None:
        async def action() -> tuple[Any, ...]:
            if isolate:
                self.cb.isolate()
            else:
                self.cb.reset()
            return await self.observe()

        observed = self.run(action)
        if isolate:
            self.model.isolate()
        else:
            self.model.reset()
        self.check(observed)


CONFIGURATIONS = [
    pytest.param(
        {"failure_threshold": 3, "reset_timeout": lambda n: 2.0 * n, "success_threshold": 2},
        id="consecutive-growing-break",
    ),
    pytest.param(
        {
            "failure_threshold": 2,
            "reset_timeout": 5.0,
            "slow_call_duration": 1.0,
            "slow_call_ratio": 0.5,
            "window": Window.count(4),
            "minimum_calls": 2,
        },
        id="consecutive-slow-ratio",
    ),
    pytest.param(
        {
            "failure_ratio": 0.5,
            "window": Window.count(4),
            "minimum_calls": 3,
            "reset_timeout": 3.0,
        },
        id="ratio-count-window",
    ),
    pytest.param(
        {
            "failure_ratio": 0.6,
            "window": Window.time(5.0),
            "minimum_calls": 3,
            "reset_timeout": 2.5,
            "success_threshold": 2,
            "slow_call_duration": 1.0,
            "slow_call_ratio": 0.75,
        },
        id="ratio-time-window-slow",
    ),
]

SETTINGS = settings(
    max_examples=75,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("options", CONFIGURATIONS)
async def test_breaker_agrees_with_the_model(
    mock_clock: trio.testing.MockClock, options: dict[str, Any]
) -> None:
    machine = type(
        "CircuitMachineRun", (CircuitMachine,), {"OPTIONS": options, "CLOCK": mock_clock}
    )
    run_state_machine_as_test(machine, settings=SETTINGS)
