"""The rate limiter's Lua decisions against reference models, on a real Redis driven by a
fake server clock (``ARGV[1]``, which production leaves empty).

The models are written from the contract, not from the scripts: the sliding window tries
every candidate time and counts the costs in ``(t - per, t]``; the token bucket is GCRA in
exact fractions. Each example runs against fresh keys; hypothesis drives batches of
requests (with and without ``max_wait``), give-backs, time and corrupted keys.

The machine runs in a worker thread (hypothesis is synchronous) and calls the store in the
test's trio run through ``trio.from_thread.run``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any, TypeVar

import pytest
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

WINDOW = script("ratelimit_window")
WINDOW_GIVEBACK = script("ratelimit_window_giveback")
BUCKET = script("ratelimit_bucket")
BUCKET_GIVEBACK = script("ratelimit_bucket_giveback")

#: Server times at the scale of today's clock (microseconds since the epoch), and small ones.
EPOCHS = st.sampled_from([1_000_000, 1_796_279_241_000_000])
SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_names = itertools.count()


class Machine(RuleBasedStateMachine):
    """Shared plumbing: a store, a fake clock, calls into the test's trio run."""

    store: shared.Store

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.name = f"model{next(_names)}"

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def run() -> T:  # coredis commands return awaitables, not coroutines
            return await fn(*args)

        return trio.from_thread.run(run)

    def run(self, script_: Any, keys: list[str], args: list[Any]) -> Any:
        self.store._clock = lambda: self.now
        return self.call(self.store.run, script_, keys, args)

    @rule(micros=st.sampled_from([0, 1, 999, 1000, 1001, 250_000, 333_333, 1_000_000, 3_000_000]))
    def advance(self, micros: int) -> None:
        self.now += micros


# ------------------------------------------------------------------ sliding window


class WindowModel:
    """Admissions as (time, cost) by member; the earliest time a cost fits, by brute force."""

    def __init__(self, capacity: float, per: int) -> None:
        self.capacity = capacity
        self.per = per
        self.live: dict[str, tuple[int, int]] = {}
        self.history: dict[str, tuple[int, int]] = {}  # every admission not given back

    def decide(self, now: int, member: str, cost: int, max_wait: int) -> tuple[bool, int]:
        self.live = {m: e for m, e in self.live.items() if e[0] > now - self.per}
        last = max((at for at, _ in self.live.values()), default=None)
        start = now if last is None or last < now else last
        candidates = sorted({start} | {at + self.per for at, _ in self.live.values()})
        at = next(
            t
            for t in candidates
            if t >= start
            and sum(c for a, c in self.live.values() if a > t - self.per) + cost <= self.capacity
        )
        wait = at - now
        if max_wait >= 0 and wait > max_wait:
            return False, wait
        self.live[member] = self.history[member] = (at, cost)
        return True, wait

    def give_back(self, member: str) -> None:
        self.live.pop(member, None)
        self.history.pop(member, None)


class WindowMachine(Machine):
    @initialize(
        capacity=st.sampled_from([1, 2, 3, 5, 2.5]),
        per=st.sampled_from([1000, 250_000, 1_000_000]),
        epoch=EPOCHS,
    )
    def configure(self, capacity: float, per: int, epoch: int) -> None:
        self.model = WindowModel(capacity, per)
        self.now = epoch
        self.keys = [
            self.store.key("ratelimit", self.name, "log"),
            self.store.key("ratelimit", self.name, "meta"),
        ]
        self.members = itertools.count()
        self.admitted: list[str] = []
        # Keys of the wrong type (dropped at the next decision), and an unreadable total
        # (counted again at the next decision, when the log holds entries).
        self.foreign: set[str] = set()
        self.garbage = False

    @rule(
        requests=st.lists(
            st.tuples(st.integers(1, 5), st.sampled_from([-1, -1, 0, 1000, 500_000])),
            min_size=1,
            max_size=4,
        )
    )
    def decide(self, requests: list[tuple[int, int]]) -> None:
        batch = [
            (f"p:{next(self.members)}", min(cost, int(self.model.capacity)), wait)
            for cost, wait in requests
        ]
        args: list[Any] = [repr(float(self.model.capacity)), self.model.per]
        for member, cost, max_wait in batch:
            args += [member, cost, max_wait]
        reply = self.run(WINDOW, self.keys, args)
        assert reply[0] == int(bool(self.foreign) or (self.garbage and bool(self.model.live)))
        self.foreign.clear()
        self.garbage = False
        assert reply[1] == self.now
        for index, (member, cost, max_wait) in enumerate(batch):
            expected = self.model.decide(self.now, f"{member}|{cost}", cost, max_wait)
            assert (bool(reply[2 + 2 * index]), reply[3 + 2 * index]) == expected
            if expected[0]:
                self.admitted.append(f"{member}|{cost}")

    @precondition(lambda self: self.admitted)
    @rule(data=st.data())
    def give_back(self, data: st.DataObject) -> None:
        members = data.draw(st.lists(st.sampled_from(self.admitted), min_size=1, max_size=3))
        unique = list(dict.fromkeys(members))
        # The log holds what the model holds: both drop what left the window at decisions.
        in_log = [member for member in unique if member in self.model.live]
        assert self.run(WINDOW_GIVEBACK, self.keys, unique) == len(in_log)
        for member in unique:
            self.model.give_back(member)
            self.admitted.remove(member)

    @rule(which=st.sampled_from(["log type", "meta type", "meta value"]))
    def corrupt(self, which: str) -> None:
        log, meta = self.keys
        if which == "log type":
            self.call(self.store.client.delete, [log])
            self.call(self.store.client.set, log, "not a sorted set")
            self.model.live.clear()
            self.model.history.clear()
            self.admitted.clear()
        elif which == "meta type":
            self.call(self.store.client.delete, [meta])
            self.call(self.store.client.set, meta, "not a hash")
        else:
            self.call(self.store.client.delete, [meta])
            self.call(self.store.client.hset, meta, {"used": "garbage"})
        if which == "log type":
            self.foreign.add("log")
        else:
            self.foreign.discard("meta")
            self.garbage = which == "meta value"
            if not self.garbage:
                self.foreign.add("meta")

    @invariant()
    def no_window_holds_more_than_capacity(self) -> None:
        if not hasattr(self, "model"):
            return
        times = sorted(self.model.history.values())
        for at, _ in times:
            load = sum(c for a, c in times if at - self.model.per < a <= at)
            assert load <= self.model.capacity


# -------------------------------------------------------------------- token bucket


class BucketModel:
    """GCRA in exact arithmetic: a theoretical arrival time, one token per interval."""

    def __init__(self, rate: float, per: int, burst: float | None) -> None:
        self.interval = Fraction(per) / Fraction(rate)
        self.capacity = Fraction(max(rate, 1.0) if burst is None else burst)
        self.tat = Fraction(0)
        # Admissions since the bucket was last full: the script rounds each one up to a
        # whole microsecond, so it may be that many microseconds more careful.
        self.in_debt = 0

    def wait(self, now: int, cost: int) -> Fraction:
        later = max(self.tat, Fraction(now)) + cost * self.interval
        return max(Fraction(0), later - self.capacity * self.interval - now)

    def take(self, now: int, cost: int) -> None:
        if self.tat < now:
            self.in_debt = 0
        self.tat = max(self.tat, Fraction(now)) + cost * self.interval
        self.in_debt += 1

    def give_back(self, now: int, cost: int) -> None:
        if self.tat > now:
            self.tat = max(Fraction(now), self.tat - cost * self.interval)


class BucketMachine(Machine):
    @initialize(
        rate=st.sampled_from([1, 3, 10, 2.5]),
        per=st.sampled_from([1000, 1_000_000]),
        burst=st.sampled_from([None, 1, 4, 2.5]),
        epoch=EPOCHS,
    )
    def configure(self, rate: float, per: int, burst: float | None, epoch: int) -> None:
        self.model = BucketModel(rate, per, burst)
        self.now = epoch
        self.key = [self.store.key("ratelimit", self.name, "tat")]
        self.interval = repr(per / rate)
        self.capacity = float(self.model.capacity)
        self.repaired_expected = False
        self.waiting: list[int] = []  # costs of reservations that may be given back

    @rule(
        requests=st.lists(
            st.tuples(st.integers(1, 4), st.sampled_from([-1, -1, 0, 1000, 600_000])),
            min_size=1,
            max_size=4,
        )
    )
    def decide(self, requests: list[tuple[int, int]]) -> None:
        top = math.floor(self.capacity)
        batch = [(min(cost, top), max_wait) for cost, max_wait in requests]
        args: list[Any] = [self.interval, repr(self.capacity)]
        for cost, max_wait in batch:
            args += [cost, max_wait]
        reply = self.run(BUCKET, self.key, args)
        assert reply[0] == int(self.repaired_expected)
        self.repaired_expected = False
        for index, (cost, max_wait) in enumerate(batch):
            admitted, wait = bool(reply[2 + 2 * index]), reply[3 + 2 * index]
            exact = self.model.wait(self.now, cost)
            # Never earlier than exact; later by at most a microsecond per admission in a
            # row (the script keeps its TAT in whole microseconds, rounded up), plus one
            # where doubles land a hair above a whole microsecond.
            slack = (self.model.in_debt if self.model.tat >= self.now else 0) + 1
            assert math.ceil(exact) <= wait <= math.ceil(exact) + slack, (wait, float(exact))
            if max_wait < 0 or abs(exact - max_wait) > slack:
                assert admitted == (max_wait < 0 or math.ceil(exact) <= max_wait)
            if admitted:  # on the boundary the script's float arithmetic decides
                self.model.take(self.now, cost)
                if wait > 0:
                    self.waiting.append(cost)

    @precondition(lambda self: self.waiting)
    @rule()
    def give_back(self) -> None:
        cost = self.waiting.pop()
        self.run(BUCKET_GIVEBACK, self.key, [self.interval, cost])
        self.model.give_back(self.now, cost)

    @rule()
    def corrupt(self) -> None:
        self.call(self.store.client.delete, self.key)
        self.call(self.store.client.rpush, self.key[0], ["not a string"])
        self.model.tat = Fraction(0)
        self.waiting.clear()
        self.repaired_expected = True

    @invariant()
    def bucket_agrees(self) -> None:
        if not hasattr(self, "model") or self.repaired_expected:
            return
        stored = self.call(self.store.client.get, self.key[0])
        if self.model.tat <= self.now:
            assert stored is None or int(stored) <= self.now + self.model.in_debt
        else:
            assert stored is not None
            assert 0 <= int(stored) - self.model.tat <= self.model.in_debt


@pytest.mark.parametrize("machine", [WindowMachine, BucketMachine], ids=["window", "bucket"])
async def test_the_scripts_agree_with_the_models(
    machine: type[Machine], store: shared.Store
) -> None:
    bound = type(machine.__name__, (machine,), {"store": store})
    await trio.to_thread.run_sync(
        functools.partial(run_state_machine_as_test, bound, settings=SETTINGS)
    )
