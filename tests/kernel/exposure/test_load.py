"""Load on loopback: many requests, many in flight, against a trivial exposed task, through
``kernel.remote`` and the real ``kernel.exposure.http`` — zero errors; requests/s and
latency p50/p99 are printed (``pytest -s``), never asserted.

Also the load driver the bench's ``http`` rows use (`bench.scenarios.http.Concurrent`), and
how the bench report carries the figures it gives beyond the per-call time.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.lowlevel

from bench._execute import Results, _measure_python
from bench._scenario import Scenario
from bench._timing import Loop, Settings, calibrate
from bench.report import document, render
from bench.scenarios.http import (
    MIN_PER_REPETITION,
    SCENARIOS,
    Concurrent,
    LoadSummary,
    _percentile,
    quiet_exposure,
    remote_calls,
)

REQUESTS = 1_000
IN_FLIGHT = 32


@pytest.mark.slow
async def test_a_thousand_remote_calls_32_in_flight_without_an_error() -> None:
    with trio.fail_after(60), quiet_exposure():
        async with remote_calls(IN_FLIGHT) as load:
            await load(REQUESTS)
    # Any failed request (an HTTP error, a wrong answer) would have failed the run.
    summary = load.summary()
    assert summary is not None
    assert summary.requests == REQUESTS
    print(f"\nloopback load, kernel.remote -> kernel.exposure.http: {load.details()}")


# ---------------------------------------------------------------- the load driver


async def test_concurrent_makes_n_requests_with_a_bounded_number_in_flight() -> None:
    in_flight = peak = done = 0

    async def request() -> None:
        nonlocal in_flight, peak, done
        in_flight += 1
        peak = max(peak, in_flight)
        await trio.lowlevel.checkpoint()
        in_flight -= 1
        done += 1

    load = Concurrent(request, concurrency=3)
    assert load.summary() is None
    assert load.details() is None
    await load(10)
    assert (done, peak) == (10, 3)
    await load(1)  # fewer requests than workers: one worker
    assert (done, peak) == (11, 3)
    summary = load.summary()
    assert summary is not None
    assert summary.requests == 1  # a new size starts a new summary
    await load(1)
    summary = load.summary()
    assert summary is not None
    assert summary.requests == 2  # the same size adds up
    assert summary.wall_ns > 0
    assert 0 < summary.p50_ns <= summary.p99_ns
    load.reset()
    assert load.summary() is None
    await load(1)
    details = load.details()
    assert details is not None
    assert "requests/s; latency p50 " in details
    assert details.endswith("(1 requests, 3 in flight)")


async def test_a_failed_request_propagates() -> None:
    async def request() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ExceptionGroup) as info:
        await Concurrent(request, concurrency=2)(4)
    assert info.group_contains(ConnectionError)


def test_percentiles_are_nearest_rank_and_the_rate_is_per_second() -> None:
    samples = list(range(1, 101))
    assert [_percentile(samples, q) for q in (0.5, 0.99, 1.0)] == [50, 99, 100]
    assert _percentile([7], 0.5) == _percentile([7], 0.99) == 7
    summary = LoadSummary(requests=500, wall_ns=250_000_000, p50_ns=1, p99_ns=2)
    assert summary.per_second == 2000.0


# ---------------------------------------------------------------- in the bench report


@asynccontextmanager
async def _tiny_load() -> AsyncIterator[Loop]:
    async def request() -> None:
        await trio.lowlevel.checkpoint()

    yield Concurrent(request, concurrency=4)


@asynccontextmanager
async def _plain_loop() -> AsyncIterator[Loop]:
    async def loop(n: int) -> None:
        for _ in range(n):
            await trio.lowlevel.checkpoint()

    yield loop


async def test_the_report_prints_a_loop_s_details_with_the_notes() -> None:
    load = Scenario(
        id="http.tiny",
        label="tiny load",
        group="http",
        who="ours",
        baseline=None,
        setup=_tiny_load,
        note="a note",
    )
    plain = Scenario(
        id="http.plain", label="plain", group="http", who="ours", baseline=None, setup=_plain_loop
    )
    settings = Settings(reps=5, target_rep_ns=100_000, warmup_reps=1)
    measured = await _measure_python([load, plain], settings, lambda _: None)
    assert measured[1].details is None
    details = measured[0].details
    assert details is not None
    assert "in flight)" in details
    results = Results(measurements=tuple(measured))
    text = render(results, [], settings, title="T")
    assert f"- tiny load: a note\n- tiny load: {details}" in text
    assert "- plain:" not in text
    data = document(
        results,
        [],
        settings,
        mode="quick",
        anchor_enabled=False,
        machine={},
        versions={},
        created="now",
    )
    assert [entry["details"] for entry in data["scenarios"]] == [details, None]


async def test_calibration_never_goes_below_a_loop_s_min_calls() -> None:
    sizes: list[int] = []

    async def request() -> None:
        pass

    load = Concurrent(request, concurrency=50)
    assert load.min_calls == 50

    async def recorded(n: int) -> None:
        sizes.append(n)
        await load(n)

    recorded.min_calls = 50  # type: ignore[attr-defined]
    slow = Settings(reps=5, target_rep_ns=1, warmup_reps=1)
    assert await calibrate(recorded, slow) == 50
    assert sizes == [50, 50, 50]
    assert await calibrate(recorded, attrs.evolve(slow, max_calls=20)) == 20


@pytest.mark.parametrize("row", SCENARIOS, ids=lambda row: row.id)
async def test_the_bench_rows_keep_64_requests_in_flight(row: Scenario) -> None:
    assert (row.group, row.baseline) == ("http", None)
    assert row.id in {"http.remote_64", "http.raw_64"}
    assert row.setup is not None
    with trio.fail_after(30):
        async with row.setup() as loop:
            assert isinstance(loop, Concurrent)
            assert loop.min_calls == MIN_PER_REPETITION  # 15 repetitions: >= 5,040 requests
            assert MIN_PER_REPETITION * 15 >= 5_000
            assert loop.summary() is None  # the warm-up wave is left out
            await loop(64)
    details = loop.details()
    assert details is not None
    assert details.endswith("µs per request in this process (64 requests, 64 in flight)")


async def test_the_raw_client_replaces_a_connection_the_server_closed_while_idle() -> None:
    from bench.scenarios.http import RawClient

    connections = 0

    async def answer_once(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        data = b""
        while not data.endswith(b'{"input": [1]}'):
            data += await stream.receive_some()
        body = b'{"ok":true,"result":1}'
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await stream.aclose()  # as a keep-alive timeout would, later

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
            listeners = await nursery.start(serve, answer_once, 0)
            client = RawClient("127.0.0.1", listeners[0].socket.getsockname()[1], "/x")
            assert [await client.call([1]) for _ in range(3)] == [1, 1, 1]
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert connections == 3
