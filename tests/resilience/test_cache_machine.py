"""`Cache` against a reference model: a dict key -> (value, fresh until, stale until) in LRU
order, under random lookups, time jumps, invalidations and clears.

Each rule runs its async part in a fresh ``trio.run`` sharing one MockClock, which keeps
its time across runs; no trio object outlives a rule. Without an ``async with`` block a
stale entry is refreshed inline, which the model follows step by step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from resilience import Cache

KEYS = st.sampled_from("abc")
OUTCOMES = st.sampled_from(["value", "none", "error", "invalidate", "clear"])


class Boom(Exception):
    pass


class CacheMachine(RuleBasedStateMachine):
    @initialize(
        ttl=st.sampled_from([0.5, 1.0, 1.5]),
        stale_ttl=st.sampled_from([0.0, 0.0, 1.0]),
        max_size=st.integers(1, 3),
        single_flight=st.booleans(),
        cache_none=st.booleans(),
    )
    def setup(
        self,
        ttl: float,
        stale_ttl: float,
        max_size: int,
        single_flight: bool,
        cache_none: bool,
    ) -> None:
        self.clock = trio.testing.MockClock()
        self.cache = Cache(
            ttl=ttl,
            stale_ttl=stale_ttl,
            max_size=max_size,
            single_flight=single_flight,
            cache_none=cache_none,
        )
        self.model: OrderedDict[str, tuple[Any, float, float]] = OrderedDict()
        self.hits = self.misses = self.stale_hits = self.evictions = 0
        self.counter = 0

    # -- the model ---------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.current_time()

    def new_value(self) -> int:
        self.counter += 1
        return self.counter

    def store(self, key: str, value: Any) -> None:
        if value is None and not self.cache.cache_none:
            self.model.pop(key, None)
            return
        fresh_until = self.now() + self.cache.ttl
        self.model[key] = (value, fresh_until, fresh_until + self.cache.stale_ttl)
        self.model.move_to_end(key)
        if len(self.model) > self.cache.max_size:
            self.model.popitem(last=False)
            self.evictions += 1

    def lookup(self, key: str) -> str:
        """Classify the model's entry for key as "fresh", "stale" or "miss" (dropping it)."""
        entry = self.model.get(key)
        if entry is not None and self.now() < entry[1]:
            self.model.move_to_end(key)
            self.hits += 1
            return "fresh"
        if entry is not None and self.now() < entry[2]:
            self.model.move_to_end(key)
            self.stale_hits += 1
            return "stale"
        self.model.pop(key, None)
        self.misses += 1
        return "miss"

    def run(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        return trio.run(fn, clock=self.clock)

    # -- rules -------------------------------------------------------------------------

    @rule(key=KEYS, outcome=OUTCOMES)
    def get_or_compute(self, key: str, outcome: str) -> None:
        cache = self.cache
        result = None if outcome == "none" else self.new_value()
        calls = 0

        async def fn() -> Any:
            nonlocal calls
            calls += 1
            if outcome == "error":
                raise Boom
            if outcome == "invalidate":  # the key is dropped while this computation runs
                cache.invalidate(key)
            elif outcome == "clear":
                cache.clear()
            return result

        async def call() -> Any:
            try:
                return await cache.get_or_compute(key, fn)
            except Boom:
                return Boom

        old = self.model.get(key)
        state = self.lookup(key)
        got = self.run(call)
        if state == "fresh":
            assert old is not None
            assert (got, calls) == (old[0], 0)
            return
        assert calls == 1
        if outcome == "error":  # stale-if-error, or the error itself on a miss
            assert got == (old[0] if state == "stale" and old is not None else Boom)
            return
        assert got == result
        if outcome == "invalidate":
            self.model.pop(key, None)
        elif outcome == "clear":
            self.model.clear()
        else:
            self.store(key, result)

    @rule(key=KEYS, callers=st.integers(2, 4))
    def concurrent_misses(self, key: str, callers: int) -> None:
        entry = self.model.get(key)
        if entry is not None and entry[1] <= self.now() < entry[2]:
            return  # stale: which caller refreshes inline is up to the scheduler
        cache = self.cache
        landed: list[int] = []  # values in the order their computations ended

        async def main() -> list[int]:
            release = trio.Event()
            results: list[int] = []

            async def fn() -> int:
                value = self.new_value()
                await release.wait()
                landed.append(value)
                return value

            async def call() -> None:
                results.append(await cache.get_or_compute(key, fn))

            async with trio.open_nursery() as nursery:
                for _ in range(callers):
                    nursery.start_soon(call)
                await trio.testing.wait_all_tasks_blocked()
                release.set()
            return results

        states = [self.lookup(key) for _ in range(callers)]
        results = self.run(main)
        if states[0] == "fresh":
            assert entry is not None
            assert results == [entry[0]] * callers
            assert landed == []
            return
        computations = 1 if cache.single_flight else callers
        assert len(landed) == computations
        assert sorted(results) == sorted(landed * (callers // computations))
        for value in landed:
            self.store(key, value)

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.0]))
    def advance(self, seconds: float) -> None:
        self.clock.jump(seconds)

    @rule(key=KEYS)
    def invalidate(self, key: str) -> None:
        self.cache.invalidate(key)
        self.model.pop(key, None)

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.clear()

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def statistics_match(self) -> None:
        stats = self.cache.statistics()
        assert stats.size == len(self.model) <= self.cache.max_size
        assert (stats.hits, stats.misses, stats.stale_hits, stats.evictions) == (
            self.hits,
            self.misses,
            self.stale_hits,
            self.evictions,
        )


CacheMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
test_cache_machine = CacheMachine.TestCase
