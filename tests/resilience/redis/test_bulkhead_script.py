"""The bulkhead's Lua decisions against a reference model, on a real Redis under a fake
server clock: leases that expire unless renewed, a FIFO queue whose places expire unless
polled, releases and give-ups, from several processes."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from resilience import redis as shared
from resilience.redis._scripts import script

T = TypeVar("T")
BULKHEAD = script("bulkhead")
LEASE = 1_000_000
PLACE = 300_000
SETTINGS = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_names = itertools.count()


@attrs.define
class Model:
    max_concurrent: int
    max_queued: int
    holders: dict[str, int] = attrs.Factory(dict)  # id -> lease expiry
    queue: dict[str, int] = attrs.Factory(dict)  # id -> arrival (insertion order = FIFO)
    places: dict[str, int] = attrs.Factory(dict)  # id -> place expiry

    def step(
        self,
        now: int,
        releases: list[str],
        giveups: list[str],
        renewals: list[str],
        candidates: list[tuple[str, bool]],
    ) -> list[int]:
        self.holders = {i: t for i, t in self.holders.items() if t > now}
        for i in [i for i, t in self.places.items() if t <= now]:
            del self.places[i]
            self.queue.pop(i, None)
        for i in releases:
            self.holders.pop(i, None)
        for i in giveups:
            self.queue.pop(i, None)
            self.places.pop(i, None)
        for i in renewals:
            if i in self.holders:
                self.holders[i] = now + LEASE
        results = []
        for i, may_queue in candidates:
            free = self.max_concurrent - len(self.holders)
            order = sorted(self.queue, key=lambda q: (self.queue[q], q))
            if i in self.queue:
                if order.index(i) < free:
                    del self.queue[i]
                    del self.places[i]
                    self.holders[i] = now + LEASE
                    results.append(1)
                else:
                    self.places[i] = now + PLACE
                    results.append(2)
            elif not self.queue and free > 0:
                self.holders[i] = now + LEASE
                results.append(1)
            elif may_queue and len(self.queue) < self.max_queued:
                self.queue[i] = now
                self.places[i] = now + PLACE
                results.append(2)
            else:
                results.append(0)
        return results


class BulkheadMachine(RuleBasedStateMachine):
    store: shared.Store

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_796_279_241_000_000
        self.ids = itertools.count()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args)

    @initialize(max_concurrent=st.integers(1, 3), max_queued=st.integers(0, 3))
    def configure(self, max_concurrent: int, max_queued: int) -> None:
        self.model = Model(max_concurrent, max_queued)
        name = f"bulkhead{next(_names)}"
        self.keys = [self.store.key("bulkhead", name, p) for p in ("holders", "queue", "waiting")]
        self.known: list[str] = []

    def run(
        self,
        releases: list[str] = (),  # type: ignore[assignment]
        giveups: list[str] = (),  # type: ignore[assignment]
        renewals: list[str] = (),  # type: ignore[assignment]
        candidates: list[tuple[str, bool]] = (),  # type: ignore[assignment]
    ) -> None:
        args: list[Any] = [self.model.max_concurrent, self.model.max_queued, LEASE, PLACE, 60_000]
        for ids in (releases, giveups, renewals):
            args += [len(ids), *ids]
        args.append(len(candidates))
        for i, may_queue in candidates:
            args += [i, int(may_queue)]
        self.store._clock = lambda: self.now
        reply = self.call(self.store.run, BULKHEAD, self.keys, args)
        expected = self.model.step(
            self.now, list(releases), list(giveups), list(renewals), list(candidates)
        )
        assert reply == [0, len(self.model.holders), len(self.model.queue), *expected]

    @rule(micros=st.sampled_from([1, 100_000, 299_999, 300_000, 700_000, 1_000_000]))
    def advance(self, micros: int) -> None:
        self.now += micros

    @rule(n=st.integers(1, 3), may_queue=st.booleans())
    def arrive(self, n: int, may_queue: bool) -> None:
        fresh = [f"p{next(self.ids) % 3}:{next(self.ids)}" for _ in range(n)]
        self.known += fresh
        self.run(candidates=[(i, may_queue) for i in fresh])

    @precondition(lambda self: self.known)
    @rule(data=st.data())
    def poll(self, data: st.DataObject) -> None:
        waiting = data.draw(st.lists(st.sampled_from(self.known), max_size=3, unique=True))
        renewals = data.draw(st.lists(st.sampled_from(self.known), max_size=3, unique=True))
        self.run(renewals=renewals, candidates=[(i, True) for i in waiting])

    @precondition(lambda self: self.known)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        releases = data.draw(st.lists(st.sampled_from(self.known), max_size=2, unique=True))
        giveups = data.draw(st.lists(st.sampled_from(self.known), max_size=2, unique=True))
        self.run(releases=releases, giveups=giveups)

    @precondition(lambda self: self.model.holders if hasattr(self, "model") else False)
    @rule(data=st.data())
    def hand_over(self, data: st.DataObject) -> None:
        """A permit comes back while someone arrives: the queue, if any, goes first."""
        released = data.draw(st.sampled_from(sorted(self.model.holders)))
        fresh = f"p9:{next(self.ids)}"
        self.known.append(fresh)
        self.run(releases=[released], candidates=[(fresh, True)])

    @invariant()
    def never_more_holders_than_permits(self) -> None:
        if hasattr(self, "model"):
            assert len(self.model.holders) <= self.model.max_concurrent
            assert len(self.model.queue) <= max(self.model.max_queued, 0) or not self.model.queue


async def test_the_bulkhead_script_agrees_with_the_model(store: shared.Store) -> None:
    bound = type("BulkheadMachine", (BulkheadMachine,), {"store": store})
    await trio.to_thread.run_sync(
        functools.partial(run_state_machine_as_test, bound, settings=SETTINGS)
    )
