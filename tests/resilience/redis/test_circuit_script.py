"""The shared breaker's Lua decisions against a reference model of the fleet's circuit, on a
real Redis under a fake server clock.

Three processes (tokens p1, p2, p3) send the script's operations directly: flushes of
made-up outcomes (current and stale epochs, successes and failures of any age, window
counts), probe requests, probe outcomes, isolate and reset, while time moves. The model is
written from the rules in ``_circuit.py``'s docstring: fleet-wide consecutive failures by
outcome time with the veto of another's later success, ratio windows with leave-one-out,
open ending by the clock, leased probes with the failed prober's turn skipped once,
``success_threshold`` successes closing, every transition bumping the epoch.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
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
CIRCUIT = script("circuit")
PROCS = ("p1", "p2", "p3")
LEASE = 1_000_000
FAIRNESS = 100_000
_names = itertools.count()

SETTINGS = settings(
    max_examples=40,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@attrs.define
class Config:
    threshold: int
    failure_ratio: float | None
    slow_ratio: float | None
    window_kind: str
    window_size: int
    minimum: int
    success_threshold: int
    max_probes: int
    veto: int

    def argv(self) -> list[Any]:
        return [
            self.threshold,
            "" if self.failure_ratio is None else repr(self.failure_ratio),
            "" if self.slow_ratio is None else repr(self.slow_ratio),
            self.window_kind,
            self.window_size,
            self.minimum,
            self.success_threshold,
            self.max_probes,
            LEASE,
            FAIRNESS,
            self.veto,
            60_000,
        ]


FAMILIES = {
    "consecutive": st.builds(
        Config,
        threshold=st.integers(1, 3),
        failure_ratio=st.none(),
        slow_ratio=st.none(),
        window_kind=st.just(""),
        window_size=st.just(0),
        minimum=st.just(1),
        success_threshold=st.integers(1, 2),
        max_probes=st.integers(1, 2),
        veto=st.sampled_from([500_000, 10_000_000]),
    ),
    "consecutive_slow": st.builds(  # with a slow-call ratio over a count window
        Config,
        threshold=st.integers(1, 3),
        failure_ratio=st.none(),
        slow_ratio=st.just(0.5),
        window_kind=st.just("count"),
        window_size=st.sampled_from([3, 5]),
        minimum=st.integers(1, 3),
        success_threshold=st.integers(1, 2),
        max_probes=st.just(1),
        veto=st.just(10_000_000),
    ),
    "ratio_count": st.builds(
        Config,
        threshold=st.just(0),
        failure_ratio=st.sampled_from([0.5, 1.0]),
        slow_ratio=st.none() | st.just(0.5),
        window_kind=st.just("count"),
        window_size=st.sampled_from([3, 5]),
        minimum=st.integers(1, 3),
        success_threshold=st.integers(1, 2),
        max_probes=st.integers(1, 2),
        veto=st.just(10_000_000),
    ),
    "ratio_time": st.builds(
        Config,
        threshold=st.just(0),
        failure_ratio=st.just(0.5),
        slow_ratio=st.none() | st.just(0.5),
        window_kind=st.just("time"),
        window_size=st.sampled_from([1_000_000, 3_000_000]),
        minimum=st.integers(1, 3),
        success_threshold=st.just(1),
        max_probes=st.integers(1, 2),
        veto=st.just(10_000_000),
    ),
}


@attrs.define
class Model:
    """The fleet's circuit, as the docstring of ``_circuit.py`` describes it."""

    config: Config
    st: str = "closed"
    ep: int = 0
    iso: int = 0
    oa: int = 0
    ou: int = 0
    opens: int = 0
    ps: int = 0
    ho: int = 0
    lfp: str = ""
    ls: int = 0
    lsb: str = ""
    life: list[int] = attrs.Factory(lambda: [0, 0, 0, 0, 0])
    failures: list[tuple[int, str]] = attrs.Factory(list)  # (time, member), sorted
    entries: list[tuple[str, int, int, int]] = attrs.Factory(list)  # count window, newest first
    slices: dict[int, list[int]] = attrs.Factory(dict)  # time window
    leases: dict[str, int] = attrs.Factory(dict)
    runs: dict[str, int] = attrs.Factory(dict)
    seen: dict[str, int] = attrs.Factory(dict)
    own: dict[str, tuple[int, int, int, int]] = attrs.Factory(dict)

    def transition(self, to: str) -> None:
        self.st = to
        self.ep += 1
        self.ps = 0
        self.leases.clear()

    def clear_counts(self) -> None:
        self.failures.clear()
        self.entries.clear()
        self.slices.clear()
        self.own.clear()

    def close(self) -> None:
        self.transition("closed")
        self.iso = self.oa = self.ou = self.opens = 0
        self.clear_counts()

    def open(self, now: int, duration: int) -> None:
        self.transition("open")
        self.opens += 1
        self.oa = now
        self.ou = now + duration
        self.clear_counts()

    def tick(self, now: int) -> None:
        if self.st == "open" and not self.iso and now >= self.ou:
            self.transition("half_open")
            self.ho = now
        if self.st == "half_open":
            self.leases = {lease: until for lease, until in self.leases.items() if until > now}

    def window(
        self, now: int, proc: str, added: tuple[int, int, int]
    ) -> tuple[int, int, int, dict[str, tuple[int, int, int]]]:
        c, f, s = added
        shares: dict[str, tuple[int, int, int]] = {}
        if self.config.window_kind == "time":
            width = self.config.window_size / 100
            current = math.floor(now / width)
            if c > 0:
                totals = self.slices.setdefault(current, [0, 0, 0])
                for i, value in enumerate(added):
                    totals[i] += value
            self.slices = {k: v for k, v in self.slices.items() if k > current - 100}
            sums = [sum(v[i] for v in self.slices.values()) for i in range(3)]
            for who, (oc, of, os, t) in self.own.items():
                if t > now - self.config.window_size:
                    shares[who] = (oc, of, os)
            return sums[0], sums[1], sums[2], shares
        if c > 0:
            self.entries.insert(0, (proc, c, f, s))
        kept: list[tuple[str, int, int, int]] = []
        tc = tf = ts = 0
        for who, ec, ef, es in self.entries[: self.config.window_size]:
            kept.append((who, ec, ef, es))
            tc, tf, ts = tc + ec, tf + ef, ts + es
            sc, sf, ss = shares.get(who, (0, 0, 0))
            shares[who] = (sc + ec, sf + ef, ss + es)
            if tc >= self.config.window_size:
                break
        self.entries = kept
        return tc, tf, ts, shares

    def crosses(self, calls: int, failed: int, slow: int) -> bool:
        cfg = self.config
        if calls < cfg.minimum or calls <= 0:
            return False
        if cfg.failure_ratio is not None and failed / calls >= cfg.failure_ratio:
            return True
        return cfg.slow_ratio is not None and slow / calls >= cfg.slow_ratio

    def alone(self, now: int, who: str) -> bool:
        """Another's success came after ``who``'s run of failures began (recently)."""
        since = self.runs.get(who)
        return (
            since is not None
            and self.lsb != who
            and self.ls > since
            and self.ls >= now - self.config.veto
        )

    def sync(self, now: int, proc: str, flush: Flush) -> int:
        self.tick(now)
        for i, delta in enumerate(flush.life):
            self.life[i] += delta
        if flush.run_age >= 0:
            self.runs[proc] = now - flush.run_age
        else:
            self.runs.pop(proc, None)
        self.seen[proc] = now
        for who in [who for who, t in self.seen.items() if t <= now - flush.forget]:
            del self.seen[who]
            self.runs.pop(who, None)
            self.own.pop(who, None)
        if self.st != "closed" or flush.view_epoch != self.ep:
            return 0
        if flush.success_age >= 0 and now - flush.success_age > self.ls:
            self.ls, self.lsb = now - flush.success_age, proc
        trip = False
        cfg = self.config
        if cfg.threshold > 0:
            kept = [(t, m) for t, m in self.failures if t > self.ls]
            if not self.alone(now, proc):
                kept += [
                    (now - age, f"{flush.flush_id}:{i + 1}")
                    for i, age in enumerate(flush.ages)
                    if now - age > self.ls
                ]
            # A sorted set: by score, then member; the newest `threshold` kept.
            self.failures = sorted(kept)[-cfg.threshold :]
            counted = [m for _, m in self.failures if not self.alone(now, m.split(":")[0])]
            trip = len(counted) >= cfg.threshold
        if cfg.window_kind:
            if cfg.window_kind == "time":
                self.own[proc] = (*flush.own, now)
            c, f, s, shares = self.window(now, proc, flush.window)
            healthy_without_one = any(
                c - sc >= cfg.minimum and not self.crosses(c - sc, f - sf, s - ss)
                for sc, sf, ss in shares.values()
            )
            if self.crosses(c, f, s) and not healthy_without_one:
                trip = True
        if trip:
            self.open(now, flush.trip)
            self.lfp = ""
            return 1
        return 0

    def renew(self, now: int, leases: tuple[str, ...]) -> None:
        for lease in leases:
            if lease in self.leases:
                self.leases[lease] = now + LEASE

    def probe(self, now: int, proc: str, lease: str) -> int:
        self.tick(now)
        if self.st == "closed":
            return 2
        if self.st != "half_open":
            return 0
        if self.lfp == proc and now < self.ho + FAIRNESS:
            return 3
        if len(self.leases) < self.config.max_probes:
            self.leases[lease] = now + LEASE
            return 1
        return 0

    def done(
        self, now: int, proc: str, lease: str, epoch: int, outcome: str, slow: int, reopen: int
    ) -> None:
        self.tick(now)
        self.life[{"s": 0, "f": 1, "c": 2}[outcome]] += 1
        self.life[3] += slow
        held = self.leases.pop(lease, None) is not None
        if held and self.st == "half_open" and epoch == self.ep:
            slow_fails = slow == 1 and self.config.slow_ratio is not None
            if outcome == "f" or (outcome == "s" and slow_fails):
                self.open(now, reopen)
                self.lfp = proc
            elif outcome == "s":
                self.ps += 1
                self.ls, self.lsb = now, proc
                if self.ps >= self.config.success_threshold:
                    self.close()

    def isolate(self, now: int) -> None:
        self.tick(now)
        if self.st != "open":
            self.transition("open")
            self.oa = now
        self.iso, self.ou = 1, 0

    def reset(self, now: int) -> None:
        self.tick(now)
        self.close()

    def expected(self, now: int, result: int) -> list[Any]:
        streak = len(self.failures) if self.config.threshold > 0 else 0
        window = [0, 0, 0]
        if self.config.window_kind:
            window = list(self.window(now, "", (0, 0, 0))[:3])
        return [
            0,
            now,
            self.st,
            self.ep,
            self.iso,
            self.oa,
            self.ou,
            self.opens,
            len(self.leases),
            streak,
            *window,
            *self.life,
            result,
        ]


@attrs.frozen
class Flush:
    view_epoch: int
    trip: int
    forget: int
    life: tuple[int, int, int, int, int]
    window: tuple[int, int, int]
    success_age: int
    run_age: int
    own: tuple[int, int, int]
    flush_id: str
    ages: tuple[int, ...]
    leases: tuple[str, ...]

    def argv(self) -> list[Any]:
        return [
            self.view_epoch,
            self.trip,
            self.forget,
            *self.life,
            *self.window,
            self.success_age,
            self.run_age,
            *self.own,
            self.flush_id,
            len(self.ages),
            *self.ages,
            len(self.leases),
            *self.leases,
        ]


AGES = st.sampled_from([0, 1, 50_000, 300_000, 2_000_000])


class CircuitMachine(RuleBasedStateMachine):
    store: shared.Store

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_796_279_241_000_000
        self.ids = itertools.count()
        self.held: dict[str, tuple[str, int, int]] = {}  # lease -> (proc, epoch, opens)
        self.steps = 0  # isolate and reset are allowed one step in six: they wipe a lot

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args)

    def run(self, op: str, proc: str, *args: Any) -> list[Any]:
        self.store._clock = lambda: self.now
        self.steps += 1
        reply = self.call(
            self.store.run, CIRCUIT, self.keys, [op, proc, *self.model.config.argv(), *args]
        )
        return [value.decode() if isinstance(value, bytes) else value for value in reply]

    configs: st.SearchStrategy[Config]

    @initialize(data=st.data())
    def configure(self, data: st.DataObject) -> None:
        config = data.draw(self.configs)
        self.model = Model(config)
        name = f"circuit{next(_names)}"
        self.keys = [
            self.store.key("circuit", name, part)
            for part in ("state", "failures", "window", "probes", "runs", "seen", "own")
        ]

    @rule(micros=st.sampled_from([1, 50_000, 100_000, 400_000, 1_000_000, 5_000_000]))
    def advance(self, micros: int) -> None:
        self.now += micros
        self.steps += 1

    @rule(
        proc=st.sampled_from(PROCS),
        stale=st.booleans(),
        outcomes=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=4),
        success_age=st.sampled_from([-1, -1, 0, 0, 10_000, 1_000_000]),
        run_age=st.sampled_from([-1, 0, 600_000, 600_000, 20_000_000]),
        ages=st.lists(AGES, max_size=3),
        trip=st.sampled_from([0, 200_000, 1_000_000]),
        data=st.data(),
    )
    def sync(
        self,
        proc: str,
        stale: bool,
        outcomes: list[tuple[bool, bool]],
        success_age: int,
        run_age: int,
        ages: list[int],
        trip: int,
        data: st.DataObject,
    ) -> None:
        failed = sum(f for f, _ in outcomes)
        slow = sum(s for _, s in outcomes)
        mine = [lease for lease, (who, _, _) in self.held.items() if who == proc]
        flush = Flush(
            view_epoch=self.model.ep - 1 if stale else self.model.ep,
            trip=trip,
            forget=data.draw(st.sampled_from([3_000_000, 60_000_000])),
            life=(len(outcomes) - failed, failed, 0, slow, data.draw(st.integers(0, 2))),
            window=(len(outcomes), failed, slow),
            success_age=success_age,
            run_age=run_age,
            own=(len(outcomes) + 1, failed, slow),
            flush_id=f"{proc}:{next(self.ids)}",
            ages=tuple(ages),
            leases=tuple(data.draw(st.lists(st.sampled_from(mine), unique=True)) if mine else []),
        )
        reply = self.run("sync", proc, *flush.argv())
        result = self.model.sync(self.now, proc, flush)
        self.model.renew(self.now, flush.leases)
        assert reply == self.model.expected(self.now, result)

    # The flush is what most decisions are about: drawn three times as often.
    sync_again = sync
    sync_more = sync

    @precondition(lambda self: hasattr(self, "model") and self.model.st != "closed")
    @rule(proc=st.sampled_from(PROCS))
    def probe(self, proc: str) -> None:
        lease = f"{proc}:lease{next(self.ids)}"
        reply = self.run("probe", proc, lease)
        result = self.model.probe(self.now, proc, lease)
        assert reply == self.model.expected(self.now, result)
        if result == 1:
            self.held[lease] = (proc, self.model.ep, self.model.opens)

    probe_again = probe

    @precondition(lambda self: self.held)
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["s", "s", "f", "c"]),
        slow=st.sampled_from([0, 0, 1]),
        reopen=st.sampled_from([100_000, 2_000_000]),
    )
    def done(self, data: st.DataObject, outcome: str, slow: int, reopen: int) -> None:
        lease = data.draw(st.sampled_from(sorted(self.held)))
        proc, epoch, _ = self.held.pop(lease)
        reply = self.run("done", proc, lease, epoch, outcome, slow, reopen)
        self.model.done(self.now, proc, lease, epoch, outcome, slow, reopen)
        assert reply == self.model.expected(self.now, 0)

    @precondition(lambda self: self.steps % 6 == 5)
    @rule()
    def isolate(self) -> None:
        reply = self.run("isolate", "p1")
        self.model.isolate(self.now)
        assert reply == self.model.expected(self.now, 0)

    @precondition(lambda self: self.steps % 6 == 5)
    @rule()
    def reset(self) -> None:
        reply = self.run("reset", "p2")
        self.model.reset(self.now)
        assert reply == self.model.expected(self.now, 0)

    @invariant()
    def probes_never_exceed_the_limit(self) -> None:
        if hasattr(self, "model"):
            assert len(self.model.leases) <= self.model.config.max_probes


@pytest.mark.parametrize("family", sorted(FAMILIES))
async def test_the_circuit_script_agrees_with_the_model(store: shared.Store, family: str) -> None:
    bound = type(
        f"CircuitMachine_{family}",
        (CircuitMachine,),
        {"store": store, "configs": FAMILIES[family]},
    )
    await trio.to_thread.run_sync(
        functools.partial(run_state_machine_as_test, bound, settings=SETTINGS)
    )


@pytest.mark.parametrize("which", ["state", "failures", "probes", "runs"])
async def test_unreadable_circuit_state_is_dropped_and_said(
    store: shared.Store, which: str
) -> None:
    config = Config(3, None, None, "", 0, 1, 1, 1, 10_000_000)
    parts = ("state", "failures", "window", "probes", "runs", "seen", "own")
    keys = [store.key("circuit", f"bad-{which}", p) for p in parts]
    target = keys[parts.index(which)]
    await store.client.set(target, "not what the script keeps")
    reply = await store.run(CIRCUIT, keys, ["reset", "p1", *config.argv()])
    assert reply[0] == 1
    assert reply[2] == b"closed"
