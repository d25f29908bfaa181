"""Unauthenticated health probes cannot amplify load; a client stalling mid-body is dropped."""

from __future__ import annotations

import pytest
import trio

import kernel
from kernel.exposure import ExposureConfig
from tests.kernel.exposure.servers import AUTH, TOKEN, serving


def counted_check() -> tuple[kernel.Resource, list[int]]:
    runs: list[int] = []

    async def check(value: object) -> None:
        runs.append(1)
        await trio.sleep(0.01)

    @kernel.resource("db", health=check)
    async def db() -> str:
        return "db"

    return db, runs


async def test_concurrent_probes_share_one_health_run() -> None:
    db, runs = counted_check()
    async with serving(db, health_cache=30) as (_, exposure, client):
        async with trio.open_nursery() as nursery:
            for path in ["/health"] * 10 + ["/ready"] * 10:
                nursery.start_soon(client.get, f"{exposure.url}{path}")
        reply = await client.get(f"{exposure.url}/health")
    assert reply.json()["status"] == "healthy"
    assert len(runs) == 1


async def test_health_cache_zero_runs_the_checks_every_time() -> None:
    db, runs = counted_check()
    async with serving(db, health_cache=0) as (_, exposure, client):
        for _ in range(3):
            assert (await client.get(f"{exposure.url}/health")).status_code == 200
    assert len(runs) == 3


@pytest.mark.slow
async def test_a_client_stalling_mid_body_is_disconnected() -> None:
    @kernel.task("api.echo")
    async def echo(x: int) -> int:
        return x

    async with serving(echo, allow_tasks=["api.*"], read_timeout=0.2) as (_, exposure, _c):
        host, port = exposure.url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            # An authenticated call to an allowed task: the app waits for the body, which
            # never comes. Hypercorn counts whole seconds, so it drops us after about 1 s.
            await stream.send_all(
                b"POST /__runner/task/api.echo HTTP/1.1\r\nhost: x\r\n"
                + f"authorization: Bearer {TOKEN}\r\n".encode()
                + b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{"
            )
            start = trio.current_time()
            received = b""
            with trio.fail_after(5):
                while data := await stream.receive_some():
                    received += data
            assert trio.current_time() - start >= 0.9
            assert b" 200 " not in received


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("read_timeout", 0, "read_timeout must be > 0"),
        ("health_cache", -1, "health_cache must be >= 0"),
    ],
)
def test_the_new_options_are_checked(option: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExposureConfig(auth=AUTH, **{option: value})
