"""`Lanes`: one lane per key; in each, requests are decided in arrival order, one round trip
at a time, the requests that queue up meanwhile going together in the next round trip.

This is how a shared primitive keeps FIFO within a process without paying a round trip per
queued caller: the first caller of an idle lane is its leader and sends its request alone;
callers arriving while a round trip is in flight queue; when it returns, the oldest queued
caller becomes the leader and sends everything queued (up to ``max_batch``), oldest first.

Cancellation and failures, per ticket (a caller's request):

- cancelled while queued: it leaves the queue, nothing was sent;
- cancelled while its round trip is in flight (not the leader): when the decisions come
  back, ``abandoned(key, ticket, decision)`` gives its decision back;
- cancelled after its decision arrived: it still gets the decision (trio's ``Event.wait``
  returns once set); the cancellation takes effect at its next checkpoint;
- the leader cancelled, or the round trip failed: the decisions are unknown, and
  ``lost(key, tickets)`` gives back what the round trip may have taken. On a failure every
  ticket of the batch raises the error; on the leader's cancellation the others go back to
  the head of the queue, in order, and are sent again (with fresh ids: `Ticket.attempt`).

No Cancelled is swallowed: every cancelled caller re-raises it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, Literal, TypeVar

import attrs
import trio

__all__ = ["Lanes", "Ticket"]

I = TypeVar("I")  # noqa: E741 - the request
R = TypeVar("R")  # the decision
K = TypeVar("K", bound=Hashable)

State = Literal["queued", "lead", "flight", "done"]


@attrs.define(eq=False)
class Ticket(Generic[I, R]):
    """One caller's ``request`` and, once decided, its ``decision`` or ``error``.

    ``attempt`` is the runner's to fill (the ids it wrote for this round trip), so that a
    give-back knows what to take back."""

    request: I
    state: State = "queued"
    decision: R | None = None
    error: Exception | None = None
    abandoned: bool = False
    attempt: Any = None
    done: trio.Event | None = attrs.field(default=None, repr=False)


@attrs.define(eq=False)
class _Lane(Generic[I, R]):
    busy: bool = False
    queue: deque[Ticket[I, R]] = attrs.Factory(deque)


@attrs.define(eq=False)
class Lanes(Generic[K, I, R]):
    """See the module docstring.

    ``run(key, tickets)`` makes the round trip for ``tickets`` (oldest first) and returns
    one decision per ticket; ``lost(key, tickets)`` gives back what a failed or abandoned
    round trip may have taken; ``abandoned(key, ticket, decision)`` gives back one decision
    whose caller left. Neither give-back may raise or block (they start background work).
    """

    run: Callable[[K, Sequence[Ticket[I, R]]], Awaitable[Sequence[R]]]
    lost: Callable[[K, Sequence[Ticket[I, R]]], None]
    abandoned: Callable[[K, Ticket[I, R], R], None]
    max_batch: int = 64
    _lanes: dict[K, _Lane[I, R]] = attrs.field(init=False, factory=dict)

    def __len__(self) -> int:
        """The keys with a round trip in flight or callers queued."""
        return len(self._lanes)

    async def submit(self, key: K, request: I) -> R:
        """Decide ``request`` in ``key``'s lane; its decision (or the round trip's error).

        A checkpoint (a round trip, and maybe a wait behind the one in flight).
        """
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        ticket: Ticket[I, R] = Ticket(request)
        if lane.busy:
            lane.queue.append(ticket)
            await self._wait(key, lane, ticket)
            if ticket.state == "done":
                if ticket.error is not None:
                    raise ticket.error
                return ticket.decision  # type: ignore[return-value]
        lane.busy = True
        return await self._lead(key, lane, ticket)

    async def _wait(self, key: K, lane: _Lane[I, R], ticket: Ticket[I, R]) -> None:
        """Until ``ticket`` is decided or becomes the leader."""
        done = ticket.done = trio.Event()
        try:
            await done.wait()
        except BaseException:
            if ticket.state == "queued":
                lane.queue.remove(ticket)
            elif ticket.state == "flight":
                ticket.abandoned = True
            elif ticket.state == "lead":
                self._next(key, lane)
            # ("done" cannot be seen here: once its Event is set, trio's wait returns, and
            # a cancellation that came later waits for the caller's next checkpoint.)
            raise

    async def _lead(self, key: K, lane: _Lane[I, R], leader: Ticket[I, R]) -> R:
        batch = [leader]
        while lane.queue and len(batch) < self.max_batch:
            batch.append(lane.queue.popleft())
        for ticket in batch:
            ticket.state = "flight"
        try:
            decisions = await self.run(key, batch)
        except Exception as exc:
            self.lost(key, batch)
            for ticket in batch[1:]:
                self._settle(ticket, None, exc)
            self._next(key, lane)
            raise
        except BaseException:
            self.lost(key, batch)
            retry = [ticket for ticket in batch[1:] if not ticket.abandoned]
            for ticket in retry:
                ticket.state = "queued"
                ticket.attempt = None
            lane.queue.extendleft(reversed(retry))
            self._next(key, lane)
            raise
        if len(decisions) != len(batch):
            raise AssertionError(f"{len(decisions)} decisions for {len(batch)} requests")
        for ticket, decision in zip(batch[1:], decisions[1:], strict=True):
            if ticket.abandoned:
                self.abandoned(key, ticket, decision)
            else:
                self._settle(ticket, decision, None)
        leader.state = "done"
        self._next(key, lane)
        return decisions[0]

    @staticmethod
    def _settle(ticket: Ticket[I, R], decision: R | None, error: Exception | None) -> None:
        ticket.state = "done"
        ticket.decision, ticket.error = decision, error
        if ticket.done is not None:
            ticket.done.set()

    def _next(self, key: K, lane: _Lane[I, R]) -> None:
        """Hand the lane to the oldest queued ticket, or free it."""
        if lane.queue:
            head = lane.queue.popleft()
            head.state = "lead"
            assert head.done is not None
            head.done.set()
            return
        lane.busy = False
        if self._lanes.get(key) is lane:
            del self._lanes[key]
