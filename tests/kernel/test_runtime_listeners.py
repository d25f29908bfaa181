"""Each runtime has its own listener registry: two runtimes in one process (one trio run)
count only the resilience events of their own calls; ``rs.observe`` still sees them all."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import kernel
import middleware as mw
import resilience as rs


def _app(name: str, shared: rs.CircuitBreaker) -> tuple[kernel.App, Any, Any]:
    failures = {"left": 2}

    @kernel.task(f"{name}.flaky", middleware=[mw.retry(attempts=3, wait=rs.backoff.constant(0))])
    async def flaky() -> str:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("not yet")
        return "ok"

    @kernel.task(f"{name}.broken", middleware=[mw.circuit_breaker(shared)])
    async def broken() -> None:
        raise ConnectionError("down")

    async def poll() -> None:
        with pytest.raises(rs.TimeoutExceeded):
            await rs.Timeout(0.5, name=f"{name}.poll").call(trio.sleep, 1)

    @kernel.resource(f"{name}.poller")
    async def poller(scope: kernel.Scope) -> None:
        scope.nursery.start_soon(poll)  # a resource's background work reports to its runtime

    return kernel.App(name, register=[flaky, broken, poller]), flaky, broken


async def _exercise(
    app: kernel.App,
    flaky: Any,
    broken: Any,
    registry: mw.MetricsRegistry,
    opened: trio.Event,
    go: trio.Event,
) -> None:
    async with kernel.run(app, metrics=registry) as rt:
        assert await rt.run_task(flaky) == "ok"
        if app.id == "a":
            with pytest.raises(ConnectionError):
                await rt.run_task(broken)  # opens the breaker both apps share
            opened.set()
        else:
            await opened.wait()
            with pytest.raises(rs.CircuitOpen):
                await rt.run_task(broken)
        await go.wait()  # both runtimes are up at the same time


async def test_two_runtimes_each_count_only_their_own_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = rs.CircuitBreaker(failure_threshold=1, reset_timeout=60, name="shared")
    registries = {"a": mw.MetricsRegistry(), "b": mw.MetricsRegistry()}
    everything: list[rs.Event] = []
    opened, go = trio.Event(), trio.Event()
    with rs.observe(everything.append):
        async with trio.open_nursery() as nursery:
            for name in ("a", "b"):
                app, flaky, broken = _app(name, shared)
                nursery.start_soon(_exercise, app, flaky, broken, registries[name], opened, go)
            await trio.sleep(1)
            go.set()

    a, b = (registries[name].snapshot().primitives for name in ("a", "b"))
    assert set(a) == {"a.flaky", "a.poll", "shared"}
    assert set(b) == {"b.flaky", "b.poll", "shared"}
    assert (a["a.poll"].timeouts, b["b.poll"].timeouts) == (1, 1)
    assert (a["a.flaky"].retries, b["b.flaky"].retries) == (2, 2)
    # The breaker is shared: its transition counts where the call that tripped it ran,
    # its rejection where the rejected call ran.
    assert (a["shared"].circuit_transitions, a["shared"].circuit_state) == (1, "open")
    assert (b["shared"].circuit_transitions, b["shared"].circuit_state) == (0, "open")
    assert sorted((e.kind, e.source) for e in everything) == [
        ("circuit.rejected", "shared"),
        ("circuit.state_changed", "shared"),
        ("retry.attempt", "a.flaky"),
        ("retry.attempt", "a.flaky"),
        ("retry.attempt", "b.flaky"),
        ("retry.attempt", "b.flaky"),
        ("timeout.exceeded", "a.poll"),
        ("timeout.exceeded", "b.poll"),
    ]


async def test_a_runtime_without_metrics_or_tracing_listens_to_nothing() -> None:
    registry = mw.MetricsRegistry()
    async with kernel.run(kernel.App("quiet", register=[])):
        with rs.observe(registry.record_event):  # the user's own listener still hears it
            rs.CircuitBreaker(name="inside").isolate()
    assert registry.snapshot().primitives["inside"].circuit_transitions == 1


async def test_a_runtime_started_inside_another_counts_only_its_own() -> None:
    outer, inner = mw.MetricsRegistry(), mw.MetricsRegistry()
    async with kernel.run(kernel.App("outer", register=[]), metrics=outer):
        rs.CircuitBreaker(name="before").isolate()
        async with kernel.run(kernel.App("inner", register=[]), metrics=inner):
            rs.CircuitBreaker(name="nested").isolate()
        rs.CircuitBreaker(name="after").isolate()
    assert set(outer.snapshot().primitives) == {"before", "after"}
    assert set(inner.snapshot().primitives) == {"nested"}
