"""Kernel rows, in the same shapes as the BlueLibs Runner anchor rows beside them.

``run_task`` with no middleware and with five pass-throughs, ``emit`` to one hook (all
over one running app), and whole ``kernel.run`` + dispose cycles of an app of 100
independent resources and of a chain of 10 dependent ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import kernel
from bench._scenario import Scenario
from bench._timing import Loop
from bench.scenarios.pipeline import passthrough


async def body(x: int) -> int:
    """The task body: the same work as the bare callee ``f``."""
    return x


basic = kernel.task("bench.basic")(body)
passthrough5 = kernel.task("bench.passthrough5", middleware=[passthrough] * 5)(body)
ping = kernel.event("bench.ping")


@kernel.hook("bench.on_ping", on=ping)
async def on_ping(emission: kernel.Emission) -> None:
    """The one hook: does nothing."""


app = kernel.App("bench.app", register=[basic, passthrough5, ping, on_ping])


def _constant(k: int) -> kernel.Resource:
    async def init() -> int:
        return k

    return kernel.resource(f"bench.hundred.r{k}")(init)


hundred = kernel.App("bench.hundred", register=[_constant(k) for k in range(100)])


def _chain(length: int) -> list[kernel.Resource]:
    chain: list[kernel.Resource] = []
    for k in range(length):
        if not chain:

            async def first() -> int:
                return 0

            chain.append(kernel.resource(f"bench.chain.r{k}")(first))
        else:

            async def next_link(previous: int) -> int:
                return previous + 1

            chain.append(
                kernel.resource(f"bench.chain.r{k}", deps={"previous": chain[-1]})(next_link)
            )
    return chain


chain = kernel.App("bench.chain", register=_chain(10))


def _task_loop(task: kernel.Task) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Loop]:
        async with kernel.run(app) as rt:
            run_task = rt.run_task

            async def loop(n: int) -> None:
                for i in range(n):
                    await run_task(task, i)

            yield loop

    return setup


@asynccontextmanager
async def run_task_metrics() -> AsyncIterator[Loop]:
    """``rt.run_task`` with ``metrics=`` on. The runtime is started inside each repetition:
    with metrics on, a runtime listens to every resilience primitive's events process-wide,
    and the scenarios' setups stay open together, so a runtime kept open here would slow
    every other row's primitives down. One start-up per repetition is noise (< 1 %)."""
    registry = kernel.metrics.MetricsRegistry()

    async def loop(n: int) -> None:
        async with kernel.run(app, metrics=registry) as rt:
            run_task = rt.run_task
            for i in range(n):
                await run_task(basic, i)

    yield loop


@asynccontextmanager
async def emit_one_hook() -> AsyncIterator[Loop]:
    """``await rt.emit(ping, i)`` with one hook listening."""
    async with kernel.run(app) as rt:
        emit = rt.emit

        async def loop(n: int) -> None:
            for i in range(n):
                await emit(ping, i)

        yield loop


def _start_loop(root: kernel.App) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Loop]:
        async def loop(n: int) -> None:
            for _ in range(n):
                async with kernel.run(root):
                    pass

        yield loop

    return setup


SCENARIOS = (
    Scenario(
        id="kernel.run_task",
        shape="run_task",
        label="kernel: run_task",
        group="kernel",
        who="ours",
        setup=_task_loop(basic),
    ),
    Scenario(
        id="kernel.run_task_metrics",
        shape="run_task_metrics",
        label="kernel: run_task, metrics on (over metrics off)",
        group="kernel",
        who="ours",
        baseline="kernel.run_task",
        setup=run_task_metrics,
        note="metrics off adds nothing: the runtime wraps no measuring around the task",
    ),
    Scenario(
        id="kernel.run_task_passthrough5",
        shape="passthrough5",
        label="kernel: run_task + 5 middleware",
        group="kernel",
        who="ours",
        setup=_task_loop(passthrough5),
    ),
    Scenario(
        id="kernel.emit_one_hook",
        shape="emit_one_hook",
        label="kernel: emit to one hook",
        group="kernel",
        who="ours",
        setup=emit_one_hook,
    ),
    Scenario(
        id="kernel.run_dispose_100",
        shape="run_dispose_100",
        label="kernel: run+dispose 100 resources",
        group="kernel",
        who="ours",
        baseline=None,
        setup=_start_loop(hundred),
    ),
    Scenario(
        id="kernel.chain_10",
        shape="chain_10",
        label="kernel: chain of 10 resources (run+dispose)",
        group="kernel",
        who="ours",
        baseline=None,
        setup=_start_loop(chain),
    ),
)
