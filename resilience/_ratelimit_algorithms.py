"""The per-key ledgers of `RateLimiter`'s two algorithms: pure arithmetic on times passed in.

A ledger (`KeyState`) holds one key's history and its queue of waiters' reservations. For
a cost at time ``now`` it answers four questions, without calling trio:

- `take`: admit at once? Only when nobody waits on the key (FIFO) and the limit allows.
- `schedule`: the earliest time the cost could be admitted, after every reservation
  already queued (so a new reservation never overtakes an older one).
- `commit`: record a reservation for that time; it counts against the limit from then on.
- `rollback`: forget the newest reservations (a waiter left; the limiter re-commits the
  ones that queued behind it).

Reservations are committed when a waiter starts waiting, so the limit is checked once,
at commit, and the schedule a waiter sleeps on is exact.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    import trio

__all__ = ["BucketSpec", "BucketState", "KeyState", "Reservation", "WindowSpec", "WindowState"]


@attrs.define(eq=False)
class Reservation:
    """A waiter's claim: ``cost`` admitted at time ``at``.

    The waiter sleeps in ``scope``; its deadline is ``at`` while the reservation heads its
    key's queue and infinite before, so waiters wake one after the other, in order.
    """

    cost: int
    at: float
    scope: trio.CancelScope


@attrs.define(eq=False)
class KeyState(ABC):
    """One key's ledger. ``waiters`` holds the pending reservations, oldest first."""

    waiters: deque[Reservation] | None = attrs.field(default=None, init=False)

    @abstractmethod
    def take(self, now: float, cost: int) -> bool:
        """Admit ``cost`` at ``now`` if nobody waits and the limit allows; say whether."""

    @abstractmethod
    def schedule(self, now: float, cost: int) -> float:
        """The earliest time ``>= now`` at which ``cost`` could be admitted, queueing last."""

    @abstractmethod
    def commit(self, at: float, cost: int) -> None:
        """Record a reservation of ``cost`` at ``at``, just computed by `schedule`."""

    @abstractmethod
    def rollback(self, now: float, newest: Sequence[Reservation]) -> None:
        """Forget ``newest``, the most recently committed reservations."""


@attrs.frozen
class BucketSpec:
    """Token bucket settings: ``capacity`` tokens, refilled at ``refill`` tokens per second."""

    capacity: float
    refill: float

    def new_state(self, now: float) -> BucketState:
        """A full bucket."""
        return BucketState(self, self.capacity, now)


@attrs.define(eq=False)
class BucketState(KeyState):
    """A token bucket: ``tokens`` at time ``stamp``.

    Reservations take their tokens at commit, so ``tokens`` goes negative while callers
    wait; a reservation is due when the refill has paid its share of that debt.
    """

    spec: BucketSpec
    tokens: float
    stamp: float

    def _refill(self, now: float) -> float:
        spec = self.spec
        tokens = self.tokens + (now - self.stamp) * spec.refill
        if tokens > spec.capacity:
            tokens = spec.capacity
        self.tokens = tokens
        self.stamp = now
        return tokens

    def take(self, now: float, cost: int) -> bool:
        """Admit ``cost`` at ``now`` if nobody waits and the limit allows; say whether."""
        if self.waiters:
            return False
        if self._refill(now) < cost:
            return False
        self.tokens -= cost
        return True

    def schedule(self, now: float, cost: int) -> float:
        """The earliest time ``>= now`` at which ``cost`` could be admitted, queueing last."""
        tokens = self._refill(now)
        if tokens >= cost:
            return now
        return now + (cost - tokens) / self.spec.refill

    def commit(self, at: float, cost: int) -> None:
        """Record a reservation of ``cost`` at ``at``, just computed by `schedule`."""
        self.tokens -= cost

    def rollback(self, now: float, newest: Sequence[Reservation]) -> None:
        """Forget ``newest``, the most recently committed reservations: return their tokens."""
        tokens = self._refill(now) + sum(reservation.cost for reservation in newest)
        self.tokens = min(tokens, self.spec.capacity)


@attrs.frozen
class WindowSpec:
    """Sliding window settings: at most ``capacity`` cost in any ``per`` seconds."""

    capacity: float
    per: float

    def new_state(self, now: float) -> WindowState:
        """An empty log."""
        return WindowState(self, deque(), 0)


@attrs.define(eq=False)
class WindowState(KeyState):
    """A sliding log of ``(expiry, cost)``, oldest first; ``used`` is the sum of the costs.

    A cost admitted at ``t`` counts in every window ``(s - per, s]`` that contains ``t``,
    i.e. until ``expiry = t + per``, exclusive: at ``t + per`` it no longer counts. The log
    also holds the reservations of waiters (the newest entries), so a reservation is checked
    against everything admitted or promised before it.
    """

    spec: WindowSpec
    log: deque[tuple[float, int]]
    used: int

    def _expire(self, now: float) -> None:
        log = self.log
        while log and log[0][0] <= now:
            self.used -= log.popleft()[1]

    def take(self, now: float, cost: int) -> bool:
        """Admit ``cost`` at ``now`` if nobody waits and the limit allows; say whether."""
        if self.waiters:
            return False
        self._expire(now)
        if self.used + cost > self.spec.capacity:
            return False
        self.log.append((now + self.spec.per, cost))
        self.used += cost
        return True

    def schedule(self, now: float, cost: int) -> float:
        """The earliest time ``>= now`` at which ``cost`` could be admitted, queueing last."""
        self._expire(now)
        start = now
        if self.waiters and self.waiters[-1].at > now:
            start = self.waiters[-1].at
        # Every entry was admitted or reserved at or before `start`; the oldest must expire
        # until what is left, plus `cost`, fits.
        excess = self.used + cost - self.spec.capacity
        if excess <= 0:
            return start
        for expiry, entry_cost in self.log:
            excess -= entry_cost
            if excess <= 0:
                return max(start, expiry)
        raise AssertionError("a cost above the capacity reached the window's schedule")

    def commit(self, at: float, cost: int) -> None:
        """Record a reservation of ``cost`` at ``at``, just computed by `schedule`."""
        self.log.append((at + self.spec.per, cost))
        self.used += cost

    def rollback(self, now: float, newest: Sequence[Reservation]) -> None:
        """Forget ``newest``, the most recently committed reservations: drop their entries.

        They are the newest entries of the log. An entry already expired (a waiter
        cancelled long after its time) was dropped with every older one, so fewer entries
        may remain than reservations.
        """
        log = self.log
        for _ in range(min(len(newest), len(log))):
            self.used -= log.pop()[1]
