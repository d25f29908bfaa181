"""Lanes across processes on a real Redis: a consumer SIGKILLed mid-run, a consumer stopped
by SIGTERM mid-batch, Redis restarted under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import trio

import kernel
from tests.kernel.lanes.conftest import Placed, placed
from tests.resilience.redis.helpers import eventually
from tests.resilience.redis.server import RedisServer

ROOT = Path(__file__).resolve().parents[3]


def _start(log: Path, *args: str) -> subprocess.Popen[str]:
    """The program with ``args``; its stdout piped, its stderr into ``log``."""
    with log.open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.kernel.lanes.lane_program", *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )


def _close(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def _wait(predicate: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within:g} s")
        time.sleep(0.02)


@pytest.mark.slow
def test_1000_events_3_consumers_one_killed_nothing_lost(
    redis: RedisServer, tmp_path: Path
) -> None:
    prefix, count = f"crash{os.getpid()}", 1000
    outs = [tmp_path / f"consumer{n}.jsonl" for n in range(3)]
    consumers = [
        _start(out.with_suffix(".log"), "consume", redis.url, prefix, str(out)) for out in outs
    ]
    producer = None
    try:
        for consumer in consumers:
            assert consumer.stdout is not None
            assert consumer.stdout.readline().strip() == "ready"
        producer = _start(tmp_path / "producer.log", "produce", redis.url, prefix, str(count))
        victim = consumers[0]
        _wait(lambda: len(_records(outs[0])) >= 40, within=30)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert producer.wait(timeout=60) == 0, (tmp_path / "producer.log").read_text()

        def done() -> bool:
            return len({r["order"] for out in outs for r in _records(out)}) == count

        _wait(done, within=60)
        for consumer in consumers[1:]:
            consumer.send_signal(signal.SIGTERM)
        for consumer in consumers[1:]:
            assert consumer.wait(timeout=30) == 0
    finally:
        for process in [*consumers, *([producer] if producer else [])]:
            _close(process)
    runs = [r for out in outs for r in _records(out)]
    killed_pid = victim.pid
    by_order: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_order[run["order"]].append(run)
    assert sorted(by_order) == list(range(count))  # nothing lost
    duplicated = 0
    for order, order_runs in by_order.items():
        assert len({r["message_id"] for r in order_runs}) == 1, order  # a stable message id
        if len(order_runs) > 1:  # only what the killed consumer had taken and not acked
            duplicated += 1
            assert [r["pid"] for r in order_runs].count(killed_pid) >= 1, order_runs
            assert max(r["attempt"] for r in order_runs) >= 2
    assert {r["pid"] for r in runs} - {killed_pid}  # the others did consume
    assert len([r for r in runs if r["pid"] == killed_pid]) < count  # killed mid-run
    assert duplicated <= 16  # at most the killed consumer's batch


@pytest.mark.slow
def test_a_consumer_stopped_mid_batch_leaves_its_unfinished_runs_to_another(
    redis: RedisServer, tmp_path: Path
) -> None:
    """SIGTERM while a batch runs: the runs that end within the drain budget (2 s) are
    acknowledged, those cut at its deadline stay pending and another consumer process
    delivers them (attempt 2, same message id); nothing is lost, nothing runs twice to its
    end."""
    prefix, count = f"drain{os.getpid()}", 16  # one batch
    first_out, second_out = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first = _start(tmp_path / "first.log", "consume-slow", redis.url, prefix, str(first_out))
    second = producer = None
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "ready"
        producer = _start(tmp_path / "producer.log", "produce", redis.url, prefix, str(count))
        assert producer.wait(timeout=30) == 0, (tmp_path / "producer.log").read_text()

        def started() -> int:
            return sum(r.get("phase") == "start" for r in _records(first_out))

        _wait(lambda: started() == count, within=20)  # the whole batch in flight
        first.send_signal(signal.SIGTERM)
        second = _start(tmp_path / "second.log", "consume", redis.url, prefix, str(second_out))
        # 30 s runs cut at the 2 s drain deadline: the process ends long before they would.
        assert first.wait(timeout=15) == 0, (tmp_path / "first.log").read_text()
        odd = set(range(1, count, 2))
        _wait(lambda: {r["order"] for r in _records(second_out)} >= odd, within=20)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0, (tmp_path / "second.log").read_text()
    finally:
        for process in (first, second, producer):
            if process is not None:
                _close(process)
    first_runs = _records(first_out)
    ids = {r["order"]: r["message_id"] for r in first_runs if r.get("phase") == "start"}
    finished = sorted(r["order"] for r in first_runs if "phase" not in r)
    assert finished == list(range(0, count, 2))  # the short runs finished in the drain
    later = _records(second_out)
    assert sorted(r["order"] for r in later) == sorted(odd)  # only the cut ones, once each
    for run in later:
        assert run["message_id"] == ids[run["order"]]  # the same entry, delivered again
        assert run["attempt"] == 2
        assert run["pid"] == second.pid


@pytest.mark.slow
async def test_redis_restarted_under_load(own_redis: RedisServer, tmp_path: Path) -> None:
    seen: list[int] = []

    @kernel.hook("count", on=placed)
    async def count(emission: kernel.Emission) -> None:
        seen.append(emission.payload.amount)

    from resilience import redis as shared

    store = kernel.redis.resource(
        "redis", shared.Store.from_url(own_redis.url, prefix="restart", op_timeout=0.2)
    )
    lane = kernel.lanes.redis("orders.lane", store=store, events=[placed], group="g")
    app = kernel.App("restart", register=[placed, store, lane, count])
    async with kernel.run(app) as rt:
        for n in range(50):
            await rt.emit(placed, Placed("before", n))
        own_redis.kill()
        failed = 0
        for n in range(5):
            with pytest.raises(kernel.lanes.LaneUnavailable, match="was not written") as caught:
                await rt.emit(placed, Placed("down", 100 + n))
            assert caught.value.__cause__ is not None
            failed += 1
        own_redis.start()
        written = []
        for n in range(200, 250):
            await rt.emit(placed, Placed("after", n))
            written.append(n)
        await eventually(lambda: set(written) <= set(seen), within=20)
    assert failed == 5
    assert not {100, 101, 102, 103, 104} & set(seen)  # never reported written, never delivered


@pytest.mark.slow
async def test_with_emit_wait_an_emit_waits_for_redis(own_redis: RedisServer) -> None:
    seen: list[int] = []

    @kernel.hook("count", on=placed)
    async def count(emission: kernel.Emission) -> None:
        seen.append(emission.payload.amount)

    from resilience import redis as shared

    store = kernel.redis.resource(
        "redis", shared.Store.from_url(own_redis.url, prefix="wait", op_timeout=0.2)
    )
    lane = kernel.lanes.redis(
        "orders.lane", store=store, events=[placed], group="g", emit_wait=10.0
    )
    async with kernel.run(kernel.App("wait", register=[placed, store, lane, count])) as rt:
        await rt.emit(placed, Placed("before", 1))
        own_redis.kill()
        async with trio.open_nursery() as nursery:

            async def restart() -> None:
                await trio.sleep(0.5)
                await trio.to_thread.run_sync(own_redis.start)

            nursery.start_soon(restart)
            started = trio.current_time()
            await rt.emit(placed, Placed("during", 2))  # returns once Redis has it
            assert trio.current_time() - started >= 0.4
        await eventually(lambda: 2 in seen, within=20)
