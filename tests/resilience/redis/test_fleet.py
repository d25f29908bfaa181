"""The fleet's guarantees, with real processes on one Redis (``fleet_program.py``: four of
them run the same schedule together; ``holder_program.py``: one that is SIGKILLed).

- sliding window: no interval of length ``per`` holds more than ``rate`` admissions of all
  processes together, and over the run at least ``rate * T / per - rate`` are admitted;
- token bucket: never more than ``burst + rate * d / per`` in any interval of length ``d``;
- a cache miss asked by every process at once is computed once;
- a bulkhead of 3 shared by 4 processes never has more than 3 holders;
- a breaker: every process refuses within ``2 * sync_interval`` of the call that crossed
  the threshold; after the break, one probe at a time runs fleet-wide;
- a SIGKILLed holder's permit, or cache lock, comes back within its lease.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from resilience import redis as shared
from tests.resilience.redis import fleet_program as program
from tests.resilience.redis.conftest import new_prefix
from tests.resilience.redis.server import RedisServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
WORKERS = 4
STARTUP = 4.0  # seconds for the processes to start (2 shared cores): the schedule waits


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def fleet(redis: RedisServer) -> tuple[list[dict[str, Any]], str]:
    prefix = new_prefix()
    start = time.time() + STARTUP
    processes = [
        _spawn("tests.resilience.redis.fleet_program", redis.url, prefix, str(i), str(start))
        for i in range(WORKERS)
    ]
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err[-3000:]
            outputs.append(json.loads(out))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return outputs, prefix


def _admissions(outputs: list[dict[str, Any]], phase: str) -> list[float]:
    return sorted(t for out in outputs for t in out[phase])


def test_a_sliding_window_holds_for_the_fleet(fleet: tuple[list[dict[str, Any]], str]) -> None:
    times = _admissions(fleet[0], "window")
    rate, per = 20, 0.5
    for i, at in enumerate(times):
        within = sum(1 for other in times[: i + 1] if other > at - per)
        assert within <= rate, f"{within} admissions in ({at - per}, {at}]"
    # It does not under-admit either: over T seconds, at least rate * T / per - rate.
    span = program.HAMMER - 0.1
    admitted = sum(1 for at in times if at <= times[0] + span)
    assert admitted >= rate * span / per - rate
    assert all(len(out["window"]) > 0 for out in fleet[0])  # everyone got some


def test_a_token_bucket_holds_for_the_fleet(fleet: tuple[list[dict[str, Any]], str]) -> None:
    times = _admissions(fleet[0], "bucket")
    rate, per, burst = 20, 0.5, 5
    for i in range(len(times)):
        for j in range(i, len(times)):
            # (times are float seconds of server microseconds: 1e-3 of a token of slack)
            assert j - i + 1 <= burst + rate * (times[j] - times[i]) / per + 1e-3
    assert len(times) >= rate * (program.HAMMER - 0.1) / per


def test_a_cache_miss_of_every_process_is_computed_once(
    fleet: tuple[list[dict[str, Any]], str], redis: RedisServer
) -> None:
    outputs, prefix = fleet
    assert len({json.dumps(out["cache"]) for out in outputs}) == 1

    async def computed() -> Any:
        async with shared.Store.from_url(redis.url, prefix=prefix) as store:
            return await store.client.get(f"{prefix}:computed")

    assert trio.run(computed) == b"1"


def test_a_bulkhead_of_three_never_has_four_holders(
    fleet: tuple[list[dict[str, Any]], str],
) -> None:
    edges = sorted(
        (t, step)
        for out in fleet[0]
        for entered, left in out["bulkhead"]
        for t, step in ((entered, 1), (left, -1))
    )
    holders = most = 0
    for _, step in edges:
        holders += step
        most = max(most, holders)
    assert most == 3


def test_a_breaker_trips_for_the_fleet_and_probes_one_at_a_time(
    fleet: tuple[list[dict[str, Any]], str],
) -> None:
    assert all(out["late"] < 0 for out in fleet[0]), [out["late"] for out in fleet[0]]
    seen = [out["breaker"] for out in fleet[0]]
    failures = sorted(t for s in seen for t in s["failed"])
    crossed = failures[4]  # the fifth failure of the fleet crossed the threshold
    for s in seen:
        assert s["rejected_at"] is not None
        # Within 2 * sync_interval of the crossing call (plus a call, and a loaded machine).
        assert s["rejected_at"] - crossed <= 2 * 0.1 + 0.15
    ran = sorted(t for s in seen for t in s["ran"])
    first = ran[0]
    # The first probe takes 0.3 s; no other call runs meanwhile anywhere.
    assert [t for t in ran if first <= t < first + 0.3] == [first]
    assert len(ran) > WORKERS  # closed again: everyone calls through


@pytest.mark.parametrize("what", ["bulkhead", "cache"])
async def test_a_sigkilled_holder_gives_back_within_its_lease(
    redis: RedisServer, what: str
) -> None:
    prefix = new_prefix()
    process = _spawn("tests.resilience.redis.holder_program", redis.url, prefix, what)
    try:
        assert process.stdout is not None
        line = await trio.to_thread.run_sync(process.stdout.readline)
        assert line.strip() == "held", process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGKILL)
        killed = trio.current_time()
        async with shared.Store.from_url(redis.url, prefix=prefix) as store:
            if what == "bulkhead":
                bulkhead = shared.Bulkhead(
                    store, name="killed", max_concurrent=1, max_queued=1, queue_timeout=3.0
                )
                async with bulkhead:
                    pass
            else:
                cache = shared.Cache(store, name="killed", ttl=60, lock_lease=0.5)

                async def value() -> str:
                    return "taken over"

                assert await cache.get_or_compute("key", value) == "taken over"
        assert trio.current_time() - killed <= 0.5 + 0.3
    finally:
        process.kill()
        process.communicate()  # reaps it, and closes its pipes
