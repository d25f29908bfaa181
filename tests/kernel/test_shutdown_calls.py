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
from typing import Any

import pytest
import trio
import trio.testing
from loguru import logger

import kernel
import resilience as rs
from kernel import durable
from kernel.durable import Engine, MemoryStore

DRAIN = 3.0


class Handle:
    """A resource's value that knows whether it was disposed."""

    def __init__(self) -> None:
        self.disposed = False


def chain(log: list[str]) -> tuple[kernel.Resource, kernel.Resource, kernel.Resource]:
    def lifecycle(name: str, deps: dict[str, Any] | None) -> kernel.Resource:
        @kernel.resource(name, deps=deps)
        async def res(**_: Any) -> Any:
            handle = Handle()
            yield handle
            handle.disposed = True
            log.append(f"dispose {name} at {trio.current_time():g}")

        return res

    a = lifecycle("a", None)
    b = lifecycle("b", {"a": a})
    return a, b, lifecycle("c", {"b": b})


def using(log: list[str], c: kernel.Resource, what: str) -> Any:
    """The body of work that uses ``c``: it outlasts any drain, and says what it saw."""

    async def work(*_: Any, c: Handle) -> None:
        log.append(f"{what} started")
        try:
            await trio.sleep(60)
        finally:
            log.append(f"{what} ended at {trio.current_time():g}, c disposed: {c.disposed}")

    return work


@pytest.fixture
def lines() -> Any:
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(m.record["message"]), level="INFO")
    yield seen
    logger.remove(sink)


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
    a, b, c = chain(log)
    use = kernel.task("use", deps={"c": c})(using(log, c, "call"))

    @kernel.resource("poller")
    async def poller(scope: kernel.Scope) -> Any:
        runtime = scope.runtime
        assert runtime is not None

        async def poll() -> None:
            await runtime.wait_ready()
            await runtime.run_task(use)

        scope.supervise(poll, restart=rs.Retry(attempts=3, wait=rs.backoff.constant(1)))
        yield "poller"
        log.append(f"dispose poller at {trio.current_time():g}")

    registered = [poller, a, b, c, use] if first else [a, b, c, use, poller]
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
    a, b, c = chain(log)
    tick = kernel.event("tick")
    on_tick = kernel.hook("on-tick", on=tick, deps={"c": c})(using(log, c, "hook"))

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
    a, b, c = chain(log)
    store = MemoryStore()
    engine = durable.engine("durable", store=store)
    blocked = using(log, c, "step")

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
    a, b, c = chain(log)
    use = kernel.task("use", deps={"c": c})(using(log, c, "call"))
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
    a, b, c = chain(log)
    use = kernel.task("use", deps={"c": c})(using(log, c, "call"))

    @kernel.resource("poller")
    async def poller(scope: kernel.Scope) -> Any:
        runtime = scope.runtime
        assert runtime is not None

        async def call() -> None:
            await runtime.wait_ready()
            try:
                await runtime.run_task(use)
            except kernel.ShuttingDown as exc:  # what background work must expect
                log.append(f"poller: {exc}")

        scope.nursery.start_soon(call)
        yield "poller"

    async with kernel.run(kernel.App("app", register=[poller, a, b, c, use])):
        await trio.sleep(1)
    # No drain without a shutdown: disposal cancels at once, and waits for the call to end.
    assert log == [
        "call started",
        "call ended at 1, c disposed: False",
        "poller: call 'use' cancelled: the runtime is shutting down",
        "dispose c at 1",
        "dispose b at 1",
        "dispose a at 1",
    ]
    assert "shutdown: cancelling calls still in flight: use x1" in lines


async def test_a_failed_start_cancels_the_calls_of_what_was_up_before_disposing_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    a, b, c = chain(log)
    use = kernel.task("use", deps={"c": c})(using(log, c, "call"))
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
