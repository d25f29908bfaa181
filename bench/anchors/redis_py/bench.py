"""Python's Redis rate limiters measured with the shape and the method of ``python -m bench``.

Run by ``bench/anchors/redis_limiters.py`` with the Python of a venv of its own (never the
project's: ``limits`` pins coredis < 6, the project uses coredis 6), on a throwaway
``redis-server`` the runner starts. asyncio, one caller, a limit never reached:

- ``limits_moving_window``: ``await MovingWindowRateLimiter(storage).hit(item, "bench")``,
  ``limits``' exact moving window over ``async+redis://`` (coredis 5);
- ``pyrate_redis``: ``await Limiter(RedisBucket).try_acquire_async("bench")``,
  ``pyrate-limiter``'s Redis bucket (a sliding log in a sorted set) over ``redis.asyncio``.

Timing as ``bench/anchors/dbos_py/bench.py``: calibrate, warm up, ``reps`` rounds, GC off
while timing; prints one JSON object (raw per-call samples) on stdout.

    python bench.py --url redis://127.0.0.1:6379/0 --shapes limits_moving_window,pyrate_redis \
        --settings '{"reps": 15, "target_rep_ns": 40000000, "warmup_reps": 1}'
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

DEFAULTS: dict[str, int] = {
    "reps": 15,
    "target_rep_ns": 40_000_000,
    "warmup_reps": 1,
    "max_calls": 10_000_000,
}
RATE = 10_000_000  # per second: never reached

Loop = Callable[[int], Awaitable[None]]


async def limits_loop(url: str) -> Loop:
    from limits import RateLimitItemPerSecond  # type: ignore[import-not-found]
    from limits.aio.strategies import MovingWindowRateLimiter  # type: ignore[import-not-found]
    from limits.storage import storage_from_string  # type: ignore[import-not-found]

    storage = storage_from_string(url.replace("redis://", "async+redis://", 1))
    limiter = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(RATE)

    async def loop(n: int) -> None:
        for _ in range(n):
            if not await limiter.hit(item, "bench"):
                raise RuntimeError("limits refused a hit under its limit")

    return loop


async def pyrate_loop(url: str) -> Loop:
    # (Installed or not: schemathesis, a dev dependency, brings pyrate-limiter along.)
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket  # type: ignore[import-not-found, unused-ignore]
    from redis.asyncio import Redis  # type: ignore[import-not-found]

    bucket = await RedisBucket.init([Rate(RATE, Duration.SECOND)], Redis.from_url(url), "bench")
    limiter = Limiter(bucket)

    async def loop(n: int) -> None:
        for _ in range(n):
            if not await limiter.try_acquire_async("bench"):
                raise RuntimeError("pyrate-limiter refused an acquire under its limit")

    return loop


FACTORIES = {"limits_moving_window": limits_loop, "pyrate_redis": pyrate_loop}


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
    calls = 1
    elapsed = await timed(loop, calls)
    while elapsed * 8 < settings["target_rep_ns"] and calls < settings["max_calls"]:
        calls = min(calls * 4, settings["max_calls"])
        elapsed = await timed(loop, calls)
    for _ in range(2):
        calls = calls_for(settings, calls, elapsed)
        elapsed = await timed(loop, calls)
    return calls_for(settings, calls, elapsed)


async def measure_all(loops: dict[str, Loop], settings: dict[str, int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    calls: dict[str, int] = {}
    for name, loop in loops.items():
        try:
            calls[name] = await calibrate(loop, settings)
            for _ in range(settings["warmup_reps"]):
                await loop(calls[name])
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
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
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


async def run(url: str, shapes: list[str], settings: dict[str, int]) -> dict[str, Any]:
    loops: dict[str, Loop] = {}
    errors: dict[str, Any] = {}
    for name in shapes:
        try:
            loops[name] = await FACTORIES[name](url)
        except Exception as exc:
            errors[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {**errors, **await measure_all(loops, settings)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--shapes", default=",".join(FACTORIES))
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args(argv)
    settings = {**DEFAULTS, **json.loads(args.settings)}
    shapes = args.shapes.split(",")
    unknown = sorted(set(shapes) - set(FACTORIES))
    if unknown:
        print(f"unknown shapes: {', '.join(unknown)}", file=sys.stderr)
        return 2
    scenarios = asyncio.run(run(args.url, shapes, settings))
    versions = {
        name: metadata.version(name) for name in ("limits", "coredis", "pyrate-limiter", "redis")
    }
    print(
        json.dumps({"versions": versions, "python": sys.version.split()[0], "scenarios": scenarios})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
