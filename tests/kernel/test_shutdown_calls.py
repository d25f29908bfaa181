"""No call outlives what it uses: every call in flight, wherever it started, is cancelled (and
named) before the first resource is disposed, whatever the order of registration.

Each test has a chain of resources ``a <- b <- c`` and work that uses ``c``, started from
somewhere the body of ``kernel.run`` does not cover (a resource's supervised background
task, a hook run by a resource's emitter, a durable worker, a nursery opened outside the
runtime). The work outlasts the drain; its ``finally`` writes down whether it saw ``c``
disposed. The HTTP exposure's calls are in ``tests/kernel/exposure/test_stopping.py``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import kernel
import resilience as rs
from kernel import durable
from kernel._calls import Calls
from kernel.durable import Engine, MemoryStore
from tests.kernel.disposal import Handle, chain, messages, using

DRAIN = 3.0


def at() -> str:
    """When it is now, for the log."""
    return f" at {trio.current_time():g}"


def poller(log: list[str], use: kernel.Task, *, supervised: bool) -> kernel.Resource:
    """A resource whose background work calls ``use`` through ``scope.runtime`` once the
    app is ready: under ``scope.supervise``, or as a plain task expecting `ShuttingDown`."""

    @kernel.resource("poller")
    async def res(scope: kernel.Scope) -> Any:
        runtime = scope.runtime
        assert runtime is not None

        async def call() -> None:
            await runtime.wait_ready()
            if supervised:
                await runtime.run_task(use)
                return
            try:
                await runtime.run_task(use)
            except kernel.ShuttingDown as exc:  # what background work must expect
                log.append(f"poller: {exc}")

        if supervised:
            scope.supervise(call, restart=rs.Retry(attempts=3, wait=rs.backoff.constant(1)))
        else:
            scope.nursery.start_soon(call)
        yield "poller"
        log.append(f"dispose poller{at()}")

    return res


@pytest.fixture
def lines() -> Iterator[list[str]]:
    with messages() as seen:
        yield seen


EXPECTED_END = [
    "dispose c at 3",
    "dispose b at 3",
    "dispose a at 3",
]


@pytest.mark.parametrize("first", [True, False], ids=["caller-first", "caller-last"])
async def test_a_supervised_background_call_is_cancelled_before_any_dispose(
    autojump_clock: trio.testing.MockClock, lines: list[str], first: bool
) -> None:
    log: list[str] = []
    a, b, c = chain(log, timed=True)
    use = kernel.task("use", deps={"c": c})(using(log, "call", ended=at))
    background = poller(log, use, supervised=True)
    registered = [background, a, b, c, use] if first else [a, b, c, use, background]
    async with kernel.run(kernel.App("app", register=registered), drain_timeout=DRAIN) as rt:
        await trio.testing.wait_all_tasks_blocked()
        rt.shutdown()
        await trio.sleep_forever()
    disposals = [line for line in log if line.startswith("dispose")]
    assert log[:2] == ["call started", "call ended at 3, c disposed: False"]
    if first:
        assert disposals == [*EXPECTED_END, "dispose poller at 3"]
    else:
        assert disposals == ["dispose poller at 3", *EXPECTED_END]
    assert "shutdown: cancelling calls still in flight: use x1" in lines
    # The supervisor saw the runtime refuse, not a crash: no restart.
    assert any("stopped (call 'use' cancelled" in line for line in lines)
    assert not any("restarting supervised task" in line for line in lines)


async def test_a_hook_run_by_a_resources_emitter_is_cancelled_before_any_dispose(
    autojump_clock: trio.testing.MockClock, lines: list[str]
) -> None:
    log: list[str] = []
    a, b, c = chain(log, timed=True)
    tick = kernel.event("tick")
    on_tick = kernel.hook("on-tick", on=tick, deps={"c": c})(using(log, "hook", ended=at))

    @kernel.resource("ticker", deps={"tick": tick})
    async def ticker(scope: kernel.Scope, tick: Any) -> Any:
        runtime = scope.runtime
        assert runtime is not None

        async def emit_once() -> None:
            await runtime.wait_ready()
            await tick(None)

        scope.supervise(emit_once)
        yield "ticker"
        # Disposing: the calls were cancelled, nothing new starts.
        try:
            await tick(None)
        except kernel.ShuttingDown as exc:
            log.append(f"dispose ticker: {exc}")

    app = kernel.App("app", register=[ticker, tick, on_tick, a, b, c])
    async with kernel.run(app, drain_timeout=DRAIN) as rt:
        await trio.testing.wait_all_tasks_blocked()
        rt.shutdown()
        await trio.sleep_forever()
    assert log == [
        "hook started",
        "hook ended at 3, c disposed: False",
        *EXPECTED_END,
        "dispose ticker: event 'tick' refused: the runtime is disposing",
    ]
    assert "shutdown: draining 1 call(s) in flight for up to 3 s" in lines
    assert "shutdown: cancelling calls still in flight: event tick x1" in lines


async def test_a_durable_workflow_run_is_cancelled_before_any_dispose_and_handed_back(
    autojump_clock: trio.testing.MockClock, lines: list[str]
) -> None:
    log: list[str] = []
    a, b, c = chain(log, timed=True)
    store = MemoryStore()
    engine = durable.engine("durable", store=store)
    blocked = using(log, "step", ended=at)

    @kernel.task("flow", deps={"durable": engine, "c": c}, tags=[durable.workflow()])
    async def flow(_: None, *, durable: Engine, c: Handle) -> None:
        await durable.context().step("blocked", functools.partial(blocked, c=c))

    # The engine comes first: it is disposed after c, so its worker outlives c.
    async with kernel.run(
        kernel.App("app", register=[engine, a, b, c, flow]), drain_timeout=DRAIN
    ) as rt:
        xid = await rt.resource(engine).start(flow)
        await trio.testing.wait_all_tasks_blocked()
        rt.shutdown()
        await trio.sleep_forever()
    assert log == ["step started", "step ended at 3, c disposed: False", *EXPECTED_END]
    assert "shutdown: cancelling calls still in flight: flow x1" in lines
    execution = await store.get_execution(xid)
    assert execution is not None
    assert (execution.status, execution.owner) == ("pending", None)


async def test_a_call_from_a_nursery_outside_the_runtime_is_cancelled_before_any_dispose(
    autojump_clock: trio.testing.MockClock, lines: list[str]
) -> None:
    log: list[str] = []
    a, b, c = chain(log, timed=True)
    use = kernel.task("use", deps={"c": c})(using(log, "call", ended=at))
    outcome: list[str] = []

    async def call(rt: kernel.Runtime) -> None:
        try:
            await rt.run_task(use)
        except kernel.ShuttingDown as exc:
            outcome.append(str(exc))

    async with (
        trio.open_nursery() as outside,
        kernel.run(kernel.App("app", register=[a, b, c, use]), drain_timeout=DRAIN) as rt,
    ):
        outside.start_soon(call, rt)
        await trio.testing.wait_all_tasks_blocked()
        rt.shutdown()
        await trio.sleep_forever()
    assert log == ["call started", "call ended at 3, c disposed: False", *EXPECTED_END]
    assert outcome == ["call 'use' cancelled: the runtime is shutting down"]


async def test_leaving_the_body_cancels_the_calls_in_flight_before_any_dispose(
    autojump_clock: trio.testing.MockClock, lines: list[str]
) -> None:
    log: list[str] = []
    a, b, c = chain(log, timed=True)
    use = kernel.task("use", deps={"c": c})(using(log, "call", ended=at))
    background = poller(log, use, supervised=False)

    async with kernel.run(kernel.App("app", register=[background, a, b, c, use])):
        await trio.sleep(1)
    # No drain without a shutdown: disposal cancels at once, and waits for the call to end.
    assert log == [
        "call started",
        "call ended at 1, c disposed: False",
        "poller: call 'use' cancelled: the runtime is shutting down",
        "dispose c at 1",
        "dispose b at 1",
        "dispose a at 1",
        "dispose poller at 1",
    ]
    assert "shutdown: cancelling calls still in flight: use x1" in lines


async def test_a_failed_start_cancels_the_calls_of_what_was_up_before_disposing_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    a, b, c = chain(log, timed=True)
    use = kernel.task("use", deps={"c": c})(using(log, "call", ended=at))
    c_is_up, started = trio.Event(), trio.Event()

    @kernel.resource("poller")
    async def poller(scope: kernel.Scope) -> Any:
        runtime = scope.runtime
        assert runtime is not None

        async def call() -> None:
            await c_is_up.wait()
            started.set()
            with contextlib.suppress(kernel.ShuttingDown):
                await runtime.run_task(use)

        scope.nursery.start_soon(call)
        yield "poller"

    @kernel.resource("up", deps={"c": c})
    async def up(c: Handle) -> None:
        c_is_up.set()

    @kernel.resource("broken", deps={"up": up})
    async def broken(up: None) -> None:
        await started.wait()
        await trio.sleep(1)
        raise RuntimeError("no")

    registered = [poller, a, b, c, use, up, broken]
    with pytest.raises(kernel.ResourceInitError, match="broken"):
        async with kernel.run(kernel.App("app", register=registered)):
            pass  # pragma: no cover - the start fails
    assert log[:2] == ["call started", "call ended at 1, c disposed: False"]
    assert log[2:] == ["dispose c at 1", "dispose b at 1", "dispose a at 1"]


async def test_health_checks_are_calls_too(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    checking = trio.Event()

    async def slow_check(handle: Handle) -> None:
        checking.set()
        try:
            await trio.sleep(60)
        finally:
            log.append(f"check ended, disposed: {handle.disposed}")

    @kernel.resource("db", health=slow_check)
    async def db() -> Any:
        handle = Handle()
        yield handle
        handle.disposed = True
        log.append("dispose db")

    failures: list[str] = []

    async def probe(rt: kernel.Runtime) -> None:
        try:
            await rt.health(check_timeout=100)
        except kernel.ShuttingDown as exc:
            failures.append(str(exc))

    async with trio.open_nursery() as outside:
        async with kernel.run(kernel.App("app", register=[db]), drain_timeout=1) as rt:
            outside.start_soon(probe, rt)
            await checking.wait()
            rt.shutdown()
            await trio.sleep_forever()
        with pytest.raises(kernel.ShuttingDown, match="health check refused"):
            await rt.health()
    assert log == ["check ended, disposed: False", "dispose db"]
    assert failures == ["call 'health' cancelled: the runtime is shutting down"]


# --- the registry itself ----------------------------------------------------------------


async def _sleep(seconds: float) -> None:
    await trio.sleep(seconds)


async def test_wait_idle_waits_for_a_call_started_after_an_idle_moment(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = Calls()
    calls.stop_intake()
    gauge = calls.gauge("x")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(calls.run, "x", gauge, _sleep, 1)
        await trio.sleep(2)  # idle since 1
        nursery.start_soon(calls.run, "x", gauge, _sleep, 3)
        await trio.testing.wait_all_tasks_blocked()
        await calls.wait_idle()
        assert trio.current_time() == 5
        await calls.wait_idle()  # idle: returns at once
        assert trio.current_time() == 5


async def test_a_caller_cancelled_too_gets_its_own_cancellation() -> None:
    calls = Calls()

    async def both(outer: trio.CancelScope) -> None:
        outer.cancel()
        calls.cancel()
        await trio.sleep(1)

    with trio.CancelScope() as outer:
        await calls.run("x", calls.gauge("x"), both, outer)
    assert outer.cancelled_caught
    with pytest.raises(kernel.ShuttingDown, match="call 'x' refused: the runtime is disposing"):
        await calls.run("x", calls.gauge("x"), _sleep, 1)
    assert calls.in_flight() == {}


# --- the body's own calls, and shutdowns that meet a disposal --------------------------------


async def test_a_call_made_by_the_body_itself_is_drained(
    autojump_clock: trio.testing.MockClock, lines: list[str]
) -> None:
    log: list[str] = []
    a, b, c = chain(log, timed=True)

    @kernel.task("quick", deps={"c": c})
    async def quick(*, c: Handle) -> str:
        await trio.sleep(2)
        log.append(f"quick ended{at()}, c disposed: {c.disposed}")
        return "done"

    async def shut_down_soon(rt: kernel.Runtime) -> None:
        await trio.sleep(1)
        rt.shutdown()

    async with (
        kernel.run(kernel.App("app", register=[a, b, c, quick]), drain_timeout=DRAIN) as rt,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(shut_down_soon, rt)
        assert await rt.run_task(quick) == "done"  # in the body's own task: covered
        await trio.sleep_forever()
    assert log == [
        "quick ended at 2, c disposed: False",
        "dispose c at 2",
        "dispose b at 2",
        "dispose a at 2",
    ]
    assert "shutdown: draining 1 call(s) in flight for up to 3 s" in lines
    assert "shutdown: nothing in flight" in lines


async def test_leaving_the_body_during_the_drain_cancels_at_once(
    autojump_clock: trio.testing.MockClock, lines: list[str]
) -> None:
    log: list[str] = []
    a, b, c = chain(log, timed=True)
    use = kernel.task("use", deps={"c": c})(using(log, "call", ended=at))
    background = poller(log, use, supervised=True)
    async with kernel.run(kernel.App("app", register=[background, a, b, c, use])) as rt:
        await trio.testing.wait_all_tasks_blocked()
        rt.shutdown()
        await trio.sleep(1)  # draining (for up to 30 s), then leave
    assert log[:2] == ["call started", "call ended at 1, c disposed: False"]
    assert lines.count("shutdown: cancelling calls still in flight: use x1") == 1


async def test_a_shutdown_requested_while_disposing_changes_nothing(
    autojump_clock: trio.testing.MockClock, lines: list[str]
) -> None:
    @kernel.resource("asks")
    async def asks(scope: kernel.Scope) -> Any:
        yield "asks"
        assert scope.runtime is not None
        scope.runtime.shutdown()
        await trio.lowlevel.checkpoint()

    async with kernel.run(kernel.App("app", register=[asks])):
        pass
    assert "shutdown: requested by rt.shutdown()" in lines
    assert "shutdown: intake stopped" not in lines


async def test_a_shutdown_requested_during_the_start_leaves_the_body_no_calls(
    autojump_clock: trio.testing.MockClock, lines: list[str]
) -> None:
    @kernel.task("t")
    async def t() -> None:
        pass  # pragma: no cover - refused

    @kernel.resource("asks")
    async def asks(scope: kernel.Scope) -> str:
        assert scope.runtime is not None
        scope.runtime.shutdown()
        await trio.sleep(1)  # the shutdown runs meanwhile: nothing is in flight
        return "asks"

    refused: list[str] = []
    async with kernel.run(kernel.App("app", register=[asks, t])) as rt:
        try:
            await rt.run_task(t)
        except kernel.ShuttingDown as exc:
            refused.append(str(exc))
        await trio.sleep_forever()  # cancelled at once
    assert refused == ["task 't' refused: the runtime is shutting down"]
    assert trio.current_time() == 1
