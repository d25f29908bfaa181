"""``trio-runner lanes``: a lane's pending count and dead letters from a shell, and a replay."""

from __future__ import annotations

import json

import pytest
import trio

import kernel
from kernel._cli import main
from resilience import redis as shared
from tests.kernel.lanes.conftest import Placed, placed
from tests.kernel.lanes.test_conformance import eventually
from tests.resilience.redis.server import RedisServer, free_port


async def _bury_one(url: str) -> str:
    @kernel.hook("fails", on=placed)
    async def fails(emission: kernel.Emission) -> None:
        raise RuntimeError("no such customer")

    store = kernel.redis.resource("redis", shared.Store.from_url(url, prefix="cli"))
    lane = kernel.lanes.redis(
        "orders.lane", store=store, events=placed, group="billing", max_attempts=1
    )
    async with kernel.run(kernel.App("app", register=[placed, store, lane, fails])) as rt:
        await rt.emit(placed, Placed("A", 1))
        await eventually(lambda: rt.resource(lane).stats().dead_lettered == 1)
        [letter] = await rt.resource(lane).dead_letters()
    return letter.message_id


def test_the_command_shows_dead_letters_and_replays_one(
    redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = trio.run(_bury_one, redis.url)
    base = [
        "lanes",
        "orders.lane",
        "--url",
        redis.url,
        "--group",
        "billing",
        "--prefix",
        "cli",
    ]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "lane orders.lane (stream cli:lane:{orders.lane}:stream, group billing)" in out
    assert "pending: 0" in out
    assert f"{message_id}  order.placed  attempts 1  RuntimeError: no such customer" in out
    assert main([*base, "--replay", message_id, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["replayed"]["message_id"] == message_id
    assert report["pending"] == 1  # back on the stream, no consumer running
    assert report["dead_letters"] == []
    assert main([*base, "--replay", message_id]) == 1
    captured = capsys.readouterr()
    assert "no dead letter with message id" in captured.err
    assert "pending: 1, the oldest for " in captured.out


def test_an_unreachable_redis_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["lanes", "x", "--url", url, "--group", "g"]) == 1
    assert "trio-runner lanes: redis store" in capsys.readouterr().err
