"""DBOS Transact measured with the shapes and the method of ``python -m bench``.

Run by ``bench/anchors/dbos.py`` with the Python of a venv of its own where DBOS is
installed (never the project's). The workflow is ``bench/scenarios/durable.py``'s: three
steps, each returning a small dict; asyncio; a fresh SQLite system database whose
connections are set up as ``kernel.durable.SqliteStore`` sets up its own (WAL mode,
``synchronous=NORMAL``; DBOS's default, ``synchronous=FULL``, fsyncs every commit).

- ``latency_sqlite``: ``await wf(i)``, one workflow at a time, start to result.
- ``throughput_sqlite``: ``asyncio.gather`` of ``n`` calls, never fewer than `BATCH`.

Timing: per-call ns, calls per repetition calibrated to a target duration, warm-up, then
``reps`` timed rounds over all shapes, GC off while timing. Prints one JSON object on
stdout (DBOS's log lines go to stderr); ``bench/anchors/dbos.py`` computes the statistics.

    python bench.py --shapes latency_sqlite,throughput_sqlite \
        --settings '{"reps": 15, "target_rep_ns": 40000000, "warmup_reps": 1}'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from dbos import DBOS  # type: ignore[import-not-found]

#: Workflows per repetition of ``throughput_sqlite``, at least (as the Python row's).
BATCH = 16
DEFAULTS: dict[str, int] = {
    "reps": 15,
    "target_rep_ns": 40_000_000,
    "warmup_reps": 1,
    "max_calls": 10_000_000,
}

Loop = Callable[[int], Awaitable[None]]


class TunedConnection(sqlite3.Connection):
    """A SQLite connection set up as ``kernel.durable.SqliteStore`` sets up its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA journal_mode = WAL")
        self.execute("PRAGMA synchronous = NORMAL")


async def step_one(x: int) -> dict[str, int]:
    return {"one": x}


async def step_two(x: int) -> dict[str, int]:
    return {"two": x}


async def step_three(x: int) -> dict[str, int]:
    return {"three": x}


# Decorators applied as calls: DBOS registers each function by its qualified name.
one = DBOS.step()(step_one)
two = DBOS.step()(step_two)
three = DBOS.step()(step_three)


async def three_steps(x: int) -> dict[str, Any]:
    """The workflow: three steps, one after the other; their results."""
    return {"one": await one(x), "two": await two(x), "three": await three(x)}


workflow = DBOS.workflow()(three_steps)


async def latency(n: int) -> None:
    for i in range(n):
        result = await workflow(i)
        if result["three"] != {"three": i}:
            raise RuntimeError(f"wrong result: {result!r}")


class Throughput:
    """``n`` workflows at once, awaited together."""

    min_calls = BATCH

    async def __call__(self, n: int) -> None:
        results = await asyncio.gather(*(workflow(i) for i in range(n)))
        if len(results) != n:
            raise RuntimeError(f"{len(results)} results for {n} workflows")


LOOPS: dict[str, Loop] = {"latency_sqlite": latency, "throughput_sqlite": Throughput()}


async def timed(loop: Loop, calls: int) -> int:
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        await loop(calls)
        return time.perf_counter_ns() - start
    finally:
        if enabled:
            gc.enable()


def calls_for(settings: dict[str, int], calls: int, elapsed: int) -> int:
    scaled = round(calls * settings["target_rep_ns"] / max(elapsed, 1))
    return max(1, min(settings["max_calls"], scaled))


async def calibrate(loop: Loop, settings: dict[str, int]) -> int:
    """Grow the loop until it lasts an eighth of the target, then rescale twice more
    (as ``bench._timing.calibrate``), never below the loop's ``min_calls``."""
    most = settings["max_calls"]
    least = min(most, max(1, getattr(loop, "min_calls", 1)))
    calls = least
    elapsed = await timed(loop, calls)
    while elapsed * 8 < settings["target_rep_ns"] and calls < most:
        calls = min(calls * 4, most)
        elapsed = await timed(loop, calls)
    for _ in range(2):
        calls = max(least, calls_for(settings, calls, elapsed))
        elapsed = await timed(loop, calls)
    return max(least, calls_for(settings, calls, elapsed))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def measure_all(loops: dict[str, Loop], settings: dict[str, int]) -> dict[str, Any]:
    """Calibrate and warm up each loop, then time one repetition of each per round."""
    results: dict[str, Any] = {}
    calls: dict[str, int] = {}
    for name, loop in loops.items():
        try:
            calls[name] = await calibrate(loop, settings)
            for _ in range(settings["warmup_reps"]):
                await loop(calls[name])
        except Exception as exc:
            results[name] = {"error": describe(exc)}
        else:
            results[name] = {"calls_per_rep": calls[name], "samples_ns": []}
    gc.collect()
    for _ in range(settings["reps"]):
        for name, loop in loops.items():
            if "error" in results[name]:
                continue
            try:
                results[name]["samples_ns"].append(await timed(loop, calls[name]) / calls[name])
            except Exception as exc:
                results[name] = {"error": describe(exc)}
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(LOOPS))
    parser.add_argument("--settings", default="{}")
    return parser.parse_args(argv)


async def run(shapes: list[str], settings: dict[str, int]) -> dict[str, Any]:
    DBOS.launch()
    try:
        return await measure_all({name: LOOPS[name] for name in shapes}, settings)
    finally:
        DBOS.destroy()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = {**DEFAULTS, **json.loads(args.settings)}
    shapes = args.shapes.split(",")
    unknown = sorted(set(shapes) - set(LOOPS))
    if unknown:
        print(f"unknown shapes: {', '.join(unknown)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dbos-bench-") as directory:
        config: dict[str, Any] = {
            "name": "trio-runner-bench",
            "system_database_url": f"sqlite:///{Path(directory) / 'dbos.sqlite'}",
            "log_level": "WARNING",
            "db_engine_kwargs": {"connect_args": {"factory": TunedConnection}},
        }
        DBOS(config=config)
        with contextlib.redirect_stdout(sys.stderr):  # only the JSON goes to stdout
            scenarios = asyncio.run(run(shapes, settings))
    document = {
        "dbos": metadata.version("dbos"),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "settings": settings,
        "scenarios": scenarios,
    }
    print(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
