"""`RateLimiter`: a token bucket or a true sliding window, per key, with FIFO waiters."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Any

import attrs
import trio

from resilience import _observe
from resilience._errors import RateLimited
from resilience._ratelimit_algorithms import (
    BucketSpec,
    KeyState,
    Reservation,
    WindowSpec,
)
from resilience.validate import (
    fail,
    optional_name,
    optional_non_negative_duration,
    positive_duration,
    positive_int,
    to_seconds,
)

__all__ = ["RateLimiter", "RateLimiterStatistics"]

_ALGORITHMS = ("sliding_window", "token_bucket")


def _check_number(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(instance, attribute.name, f"must be an int or a float, got {value!r}", TypeError)
    if not math.isfinite(value):
        fail(instance, attribute.name, f"must be finite, got {value!r}")


def _positive_number(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _check_number(instance, attribute, value)
    if value <= 0:
        fail(instance, attribute.name, f"must be > 0, got {value!r}")


def _optional_burst(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _check_number(instance, attribute, value)
        if value < 1:
            fail(instance, attribute.name, f"must be >= 1, got {value!r}")


def _finite_duration(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not math.isfinite(value):
        fail(instance, attribute.name, f"must be finite, got {value!r}")


def _algorithm(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in _ALGORITHMS:
        choices = ", ".join(repr(name) for name in _ALGORITHMS)
        fail(instance, attribute.name, f"must be one of {choices}, got {value!r}")


@attrs.frozen
class RateLimiterStatistics:
    """Counts since creation: admitted and rejected acquisitions (calls, not cost), the
    admitted ones that had to wait, and the keys currently tracked."""

    admitted: int
    rejected: int
    waited: int
    keys: int


# Validators run at construction only (``on_setattr=NO_OP``): the configuration is read
# once, into ``_spec``, and the counters written on every call stay plain slot writes
# (attrs' validating ``__setattr__`` would cost more than the whole fast path).
@attrs.define(eq=False, kw_only=True, on_setattr=attrs.setters.NO_OP)
class RateLimiter:
    """Admit at most ``rate`` cost per ``per`` seconds, separately for each key.

    ``algorithm="token_bucket"`` (default): a bucket of ``burst`` tokens (default ``rate``,
    at least 1), full at first, refilled continuously at ``rate / per`` tokens per second;
    an admission of cost ``c`` takes ``c`` tokens. Over any interval of length ``d`` at most
    ``burst + rate * d / per`` cost is admitted.

    ``algorithm="sliding_window"``: a true sliding log. The cost admitted in any half-open
    interval ``(t - per, t]`` never exceeds ``rate``: a cost admitted at ``t`` counts
    until ``t + per``, exclusive. ``burst`` must be ``None`` or equal to ``rate``, and
    ``rate >= 1``. Memory per key grows with the number of admissions in a window.

    Waiters on one key are served in arrival order: a later caller, whatever its cost,
    never overtakes an earlier one (``try_acquire`` fails while anybody waits on the key).
    ``max_wait`` bounds the wait (``None``: unbounded; ``0``: reject whenever a wait would
    be needed); the wait is known exactly at arrival, so a caller is rejected at once with
    `RateLimited` rather than after waiting.

    At most ``max_keys`` keys are tracked; a new key drops the least recently used key
    that has nobody waiting (a key with waiters is never dropped, so the table may exceed
    ``max_keys`` by the keys that have waiters). A dropped key starts afresh (full bucket,
    empty log) if it comes back.

    Events: ``ratelimit.waited`` when a caller is admitted after waiting (``delay``: the
    wait); ``ratelimit.rejected`` when `acquire` raises `RateLimited` or `try_acquire`
    returns ``False`` (``retry_after``: the wait `acquire` would have needed).
    `statistics` counts calls, not cost.

    Time is ``trio.current_time()``: use a limiter within one ``trio.run`` (each run has
    its own clock). Configure at construction: assignments are not validated, and
    ``rate``, ``per``, ``burst`` and ``algorithm`` are only read then.
    """

    rate: float = attrs.field(validator=_positive_number)
    per: float = attrs.field(
        default=1.0, converter=to_seconds, validator=[positive_duration, _finite_duration]
    )
    burst: float | None = attrs.field(default=None, validator=_optional_burst)
    algorithm: str = attrs.field(default="token_bucket", validator=_algorithm)
    max_wait: float | None = attrs.field(
        default=None, converter=to_seconds, validator=optional_non_negative_duration
    )
    max_keys: int = attrs.field(default=10_000, validator=positive_int)
    name: str | None = attrs.field(default=None, validator=optional_name)

    _spec: BucketSpec | WindowSpec = attrs.field(init=False, repr=False)
    _max_cost: int = attrs.field(init=False, repr=False)
    _states: OrderedDict[Hashable, KeyState] = attrs.field(
        init=False, repr=False, factory=OrderedDict
    )
    _admitted: int = attrs.field(default=0, init=False, repr=False)
    _rejected: int = attrs.field(default=0, init=False, repr=False)
    _waited: int = attrs.field(default=0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.algorithm == "token_bucket":
            capacity = max(self.rate, 1.0) if self.burst is None else self.burst
            self._spec = BucketSpec(capacity=capacity, refill=self.rate / self.per)
            self._max_cost = math.floor(capacity)
            return
        if self.rate < 1:
            fail(self, "rate", f"must be >= 1 with algorithm='sliding_window', got {self.rate!r}")
        if self.burst is not None and self.burst != self.rate:
            fail(
                self,
                "burst",
                f"must be None or equal to rate with algorithm='sliding_window', "
                f"got {self.burst!r} (rate {self.rate!r})",
            )
        self._spec = WindowSpec(capacity=self.rate, per=self.per)
        self._max_cost = math.floor(self.rate)

    async def acquire(self, key: Hashable = None, cost: int = 1) -> None:
        """Wait until ``cost`` may be admitted for ``key``, then admit it.

        Raises `RateLimited` at once, without waiting, when the wait would exceed
        ``max_wait``; its ``retry_after`` is that wait (after it, the same request is
        admitted at once if nothing else was). ``cost`` must be an int in
        ``[1, capacity]`` (capacity: ``burst`` for the token bucket, ``rate`` for the
        sliding window), else `ValueError` (`TypeError` for a non-int).

        Not a checkpoint when admitted at once (the fast path: no cancellation check, no
        yield). A checkpoint when it waits; cancellation while waiting admits nothing and
        gives the reservation back: callers queued behind move up, in the same order.
        """
        if type(cost) is not int or cost < 1 or cost > self._max_cost:
            self._bad_cost(cost)
        now = trio.current_time()
        # The fast path is inlined here and in try_acquire: each call costs ~50 ns.
        states = self._states
        state = states.get(key)
        if state is None:
            state = self._add(key, now)
        else:
            states.move_to_end(key)
        if state.take(now, cost):
            self._admitted += 1
            return
        await self._wait(state, key, cost, now)

    def try_acquire(self, key: Hashable = None, cost: int = 1) -> bool:
        """Admit ``cost`` for ``key`` if possible without waiting; say whether it did.

        Never waits; returns ``False`` while anybody waits on ``key``. ``cost`` is
        checked as in `acquire`. Must be called inside a trio run (it reads the clock).
        """
        if type(cost) is not int or cost < 1 or cost > self._max_cost:
            self._bad_cost(cost)
        now = trio.current_time()
        states = self._states
        state = states.get(key)
        if state is None:
            state = self._add(key, now)
        else:
            states.move_to_end(key)
        if state.take(now, cost):
            self._admitted += 1
            return True
        self._rejected += 1
        if _observe.active:
            retry_after = state.schedule(now, cost) - now
            _observe.emit(
                "ratelimit.rejected", self.name, key=key, cost=cost, retry_after=retry_after
            )
        return False

    def statistics(self) -> RateLimiterStatistics:
        """The current counts."""
        return RateLimiterStatistics(
            admitted=self._admitted,
            rejected=self._rejected,
            waited=self._waited,
            keys=len(self._states),
        )

    def _add(self, key: Hashable, now: float) -> KeyState:
        """Track a new key, first dropping the least recently used idle key if full."""
        states = self._states
        if len(states) >= self.max_keys:
            for old_key, old_state in states.items():
                if not old_state.waiters:
                    del states[old_key]  # and stop iterating at once
                    break
        state = states[key] = self._spec.new_state(now)
        return state

    def _bad_cost(self, cost: object) -> None:
        if type(cost) is not int:
            fail(self, "cost", f"must be an int, got {cost!r}", TypeError)
        which = "burst" if isinstance(self._spec, BucketSpec) else "rate"
        fail(self, "cost", f"must be >= 1 and <= {which} ({self._spec.capacity:g}), got {cost!r}")

    async def _wait(self, state: KeyState, key: Hashable, cost: int, now: float) -> None:
        at = state.schedule(now, cost)
        delay = at - now
        if self.max_wait is not None and delay > self.max_wait:
            self._reject(key, cost, delay)
        state.commit(at, cost)
        waiters = state.waiters
        if waiters is None:
            waiters = state.waiters = deque()
        scope = trio.CancelScope(deadline=math.inf if waiters else at)
        reservation = Reservation(cost, at, scope)
        waiters.append(reservation)
        try:
            with scope:
                await trio.sleep_forever()
        except BaseException:
            self._withdraw(state, waiters, reservation)
            raise
        # Only the head of the queue has a deadline, so this is the head: admitted.
        waiters.popleft()
        self._wake_head(state)
        self._admitted += 1
        self._waited += 1
        if _observe.active:
            delay = trio.current_time() - now
            _observe.emit("ratelimit.waited", self.name, key=key, cost=cost, delay=delay)

    def _withdraw(
        self, state: KeyState, waiters: deque[Reservation], reservation: Reservation
    ) -> None:
        """Take back a leaving waiter's reservation; re-reserve those queued behind it."""
        now = trio.current_time()
        behind: list[Reservation] = []
        while (newest := waiters.pop()) is not reservation:
            behind.append(newest)
        behind.reverse()
        state.rollback(now, [reservation, *behind])
        for waiter in behind:
            waiter.at = state.schedule(now, waiter.cost)
            state.commit(waiter.at, waiter.cost)
            waiters.append(waiter)
        self._wake_head(state)

    @staticmethod
    def _wake_head(state: KeyState) -> None:
        waiters = state.waiters
        if waiters:
            head = waiters[0]
            head.scope.deadline = head.at
        else:
            state.waiters = None

    def _reject(self, key: Hashable, cost: int, retry_after: float) -> None:
        self._rejected += 1
        if _observe.active:
            _observe.emit(
                "ratelimit.rejected", self.name, key=key, cost=cost, retry_after=retry_after
            )
        label = "rate limiter" if self.name is None else f"rate limiter {self.name!r}"
        raise RateLimited(
            f"{label}: key {key!r} would wait {retry_after:g} s for cost {cost}, "
            f"more than max_wait={self.max_wait:g} s",
            retry_after=retry_after,
        )
