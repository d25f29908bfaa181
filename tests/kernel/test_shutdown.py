"""Graceful shutdown in-process: rt.shutdown(), and real signals with a mock clock."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

import kernel
from tests.kernel.disposal import messages


@pytest.fixture
def lines() -> Iterator[list[str]]:
    with messages() as seen:
        yield seen


def build(log: list[str], seconds: float) -> tuple[kernel.App, kernel.Task, kernel.Event]:
    @kernel.resource("db")
    async def db() -> Any:
        yield "db"
        log.append(f"dispose db at {trio.current_time():g}")

    @kernel.task("long", deps={"db": db})
    async def long(*, db: str) -> str:
        await trio.sleep(seconds)
        log.append(f"long finished at {trio.current_time():g}")
        return "done"

    ping = kernel.event("ping")

    @kernel.hook("on-disposing", on=kernel.events.disposing)
    async def on_disposing(emission: kernel.Emission) -> None:
        log.append(f"disposing at {trio.current_time():g}")

    return kernel.App("svc", register=[db, long, ping, on_disposing]), long, ping


async def test_in_flight_calls_finish_within_the_budget(autojump_clock, lines) -> None:
    log: list[str] = []
    app, long, ping = build(log, seconds=2)
    async with kernel.run(app, drain_timeout=5) as rt:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rt.run_task, long)
            await trio.testing.wait_all_tasks_blocked()
            rt.shutdown()
            await trio.sleep(0.5)
            assert rt.shutting_down
            with pytest.raises(kernel.ShuttingDown, match="task 'long' refused"):
                await rt.run_task(long)
            with pytest.raises(kernel.ShuttingDown, match="event 'ping' refused"):
                await rt.emit(ping)
            await trio.sleep_forever()
        pytest.fail("the body is cancelled by the shutdown")  # pragma: no cover
    assert log == ["disposing at 0", "long finished at 2", "dispose db at 2"]
    assert "shutdown: draining 1 call(s) in flight for up to 5 s" in lines
    assert "shutdown: nothing in flight" in lines


async def test_calls_past_the_budget_are_cancelled_and_named(autojump_clock, lines) -> None:
    log: list[str] = []
    app, long, _ = build(log, seconds=60)
    async with kernel.run(app, drain_timeout=3) as rt, trio.open_nursery() as nursery:
        nursery.start_soon(rt.run_task, long)
        nursery.start_soon(rt.run_task, long)
        await trio.testing.wait_all_tasks_blocked()
        rt.shutdown()
        await trio.sleep_forever()
    assert log == ["disposing at 0", "dispose db at 3"]
    assert "shutdown: cancelling calls still in flight: long x2" in lines


async def test_nothing_in_flight_shuts_down_at_once(autojump_clock, lines) -> None:
    log: list[str] = []
    app, _, _ = build(log, seconds=1)
    async with kernel.run(app) as rt:
        rt.shutdown()
        await trio.sleep_forever()
    assert log == ["disposing at 0", "dispose db at 0"]
    assert lines[:3] == [
        "shutdown: requested by rt.shutdown()",
        "shutdown: intake stopped",
        "shutdown: nothing in flight",
    ]


async def test_sigterm_starts_it_and_a_second_signal_skips_the_drain(autojump_clock, lines) -> None:
    log: list[str] = []
    app, long, _ = build(log, seconds=100)
    running = kernel.run(app, shutdown_signals=True, drain_timeout=50)
    async with running as rt, trio.open_nursery() as nursery:
        nursery.start_soon(rt.run_task, long)
        await trio.testing.wait_all_tasks_blocked()
        os.kill(os.getpid(), signal.SIGTERM)
        await trio.sleep(10)
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep_forever()
    assert log == ["disposing at 0", "dispose db at 10"]
    assert "shutdown: SIGTERM received" in lines
    assert "shutdown: SIGINT received again, skipping the drain" in lines


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [(-1, ValueError, "drain_timeout must be >= 0"), ("5", TypeError, "must be a number")],
)
async def test_drain_timeout_is_checked(value: Any, error: type[Exception], message: str) -> None:
    app, _, _ = build([], seconds=1)
    with pytest.raises(error, match=message):
        async with kernel.run(app, drain_timeout=value):
            pass  # pragma: no cover


def test_main_serves_until_shut_down_and_returns() -> None:
    log: list[str] = []
    app, long, _ = build(log, seconds=0.01)

    async def serve(rt: kernel.Runtime) -> None:
        await rt.run_task(long)
        rt.shutdown()
        await trio.sleep_forever()

    kernel.main(app, serve=serve, drain_timeout=1)
    assert [line.split(" at ")[0] for line in log] == ["long finished", "disposing", "dispose db"]


@pytest.mark.slow
def test_main_waits_for_a_signal_by_default() -> None:
    log: list[str] = []
    app, _, _ = build(log, seconds=1)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    kernel.main(app)
    assert [line.split(" at ")[0] for line in log] == ["disposing", "dispose db"]


async def test_a_service_bundles_the_app_and_its_run_options(autojump_clock) -> None:
    log: list[str] = []
    app, _, _ = build(log, seconds=1)
    service = kernel.Service(app=app, drain_timeout=2, middleware=[])
    assert service.options() == {
        "shutdown_signals": True,
        "drain_timeout": 2,
        "parallel_init": False,
        "middleware": (),
        "log": None,
        "tracing": None,
        "metrics": False,
        "sentry": None,
    }
    async with kernel.Service(app=app, shutdown_signals=False).run() as rt:
        assert rt.graph.root.id == "svc"
    with pytest.raises(TypeError, match=r"Service: app must be a kernel\.App"):
        kernel.Service(app="svc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Service: drain_timeout must be >= 0"):
        kernel.Service(app=app, drain_timeout=-1)
    assert kernel.Service(app=app, drain_timeout=timedelta(seconds=3)).drain_timeout == 3.0


def test_main_takes_a_service_and_overrides() -> None:
    log: list[str] = []
    app, _, _ = build(log, seconds=0.01)

    async def serve(rt: kernel.Runtime) -> None:
        rt.shutdown()
        await trio.sleep_forever()

    kernel.main(kernel.Service(app=app, shutdown_signals=False), serve=serve, drain_timeout=1)
    assert [line.split(" at ")[0] for line in log] == ["disposing", "dispose db"]
