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

    return kernel.App(name, register=[flaky, broken]), flaky, broken


async def _exercise(
    app: kernel.App,
    flaky: Any,
    broken: Any,
    registry: mw.MetricsRegistry,
    seen: list[rs.Event],
    opened: trio.Event,
    go: trio.Event,
) -> None:
    async with kernel.run(app, metrics=registry) as rt:
        rt.observe(seen.append)
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
    seen: dict[str, list[rs.Event]] = {"a": [], "b": []}
    everything: list[rs.Event] = []
    opened, go = trio.Event(), trio.Event()
    with rs.observe(everything.append):
        async with trio.open_nursery() as nursery:
            for name in ("a", "b"):
                app, flaky, broken = _app(name, shared)
                nursery.start_soon(
                    _exercise, app, flaky, broken, registries[name], seen[name], opened, go
                )
            await trio.sleep(1)
            go.set()

    a, b = (registries[name].snapshot().primitives for name in ("a", "b"))
    assert set(a) == {"a.flaky", "shared"}
    assert set(b) == {"b.flaky", "shared"}
    assert (a["a.flaky"].retries, b["b.flaky"].retries) == (2, 2)
    assert (a["shared"].circuit_transitions, a["shared"].circuit_state) == (1, "open")
    assert (b["shared"].circuit_transitions, b["shared"].circuit_state) == (0, "open")
    kinds = {name: [(e.kind, e.source) for e in events] for name, events in seen.items()}
    assert kinds["a"] == [
        ("retry.attempt", "a.flaky"),
        ("retry.attempt", "a.flaky"),
        ("circuit.state_changed", "shared"),
    ]
    assert kinds["b"] == [
        ("retry.attempt", "b.flaky"),
        ("retry.attempt", "b.flaky"),
        ("circuit.rejected", "shared"),
    ]
    assert sorted(e.kind for e in everything) == sorted(
        e.kind for events in seen.values() for e in events
    )


async def test_a_runtime_listener_ends_with_the_runtime() -> None:
    seen: list[rs.Event] = []
    async with kernel.run(kernel.App("app", register=[])) as rt:
        rt.observe(seen.append)
        rs.CircuitBreaker(name="inside").isolate()
    rs.CircuitBreaker(name="after").isolate()
    assert [(e.kind, e.source, e.data["new"]) for e in seen] == [
        ("circuit.state_changed", "inside", "open")
    ]
