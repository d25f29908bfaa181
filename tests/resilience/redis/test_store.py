"""`Store`: opening and closing, bounded round trips, scripts reloaded after NOSCRIPT, and
what happens when Redis goes away and comes back."""

from __future__ import annotations

import coredis
import pytest
import trio

import resilience as rs
from resilience import redis as shared
from resilience.redis._scripts import Script, script
from resilience.redis._store import PROBE_INTERVAL
from tests.resilience.redis.conftest import new_prefix
from tests.resilience.redis.helpers import eventually
from tests.resilience.redis.server import RedisServer

ECHO = Script("test_echo", script("prelude").source + "\nreturn {clock_us(), ARGV[2]}")


def _client(redis: RedisServer) -> coredis.Redis[bytes]:
    return coredis.Redis.from_url(redis.url)


def test_options_are_checked_and_named(redis: RedisServer) -> None:
    client = _client(redis)
    with pytest.raises(TypeError, match=r"Store: client must be a coredis\.Redis"):
        shared.Store("redis://localhost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Store: prefix must not contain"):
        shared.Store(client, prefix="a{b}")
    with pytest.raises(ValueError, match="Store: prefix must be non-empty"):
        shared.Store(client, prefix="")
    with pytest.raises(TypeError, match="Store: prefix must be a str"):
        shared.Store(client, prefix=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Store: op_timeout must be > 0"):
        shared.Store(client, op_timeout=0)
    with pytest.raises(ValueError, match="Store: op_timeout must be finite"):
        shared.Store(client, op_timeout=float("inf"))
    with pytest.raises(ValueError, match="Store: on_unavailable must be 'raise' or 'local'"):
        shared.Store(client, on_unavailable="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Store: name must be a str"):
        shared.Store(client, name=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Store\.from_url: url must be a str"):
        shared.Store.from_url(b"redis://x")  # type: ignore[arg-type]


async def test_a_store_that_is_not_open_says_how_to_open_it(redis: RedisServer) -> None:
    store = shared.Store.from_url(redis.url)
    with pytest.raises(RuntimeError, match="async with store"):
        await store.ping()
    async with store:
        assert store.is_open
        with pytest.raises(RuntimeError, match="already open"):
            await store.__aenter__()
    assert not store.is_open
    with pytest.raises(RuntimeError, match=r"kernel\.redis\.resource"):
        await store.run(ECHO, ["k"], ["x"])
    await store.aclose()  # closing twice does nothing


async def test_ping_measures_one_round_trip(store: shared.Store) -> None:
    seconds = await store.ping()
    assert 0 < seconds <= store.op_timeout


async def test_scripts_run_by_sha_and_are_sent_again_after_a_script_flush(
    store: shared.Store,
) -> None:
    assert (await store.run(ECHO, ["k"], ["first"]))[1] == b"first"
    await store.client.script_flush()
    # NOSCRIPT: the source goes with EVAL, which caches it; EVALSHA works again afterwards.
    assert (await store.run(ECHO, ["k"], ["second"]))[1] == b"second"
    assert await store.client.script_exists([ECHO.sha]) == (True,)


async def test_the_server_clock_is_used_unless_a_test_passes_its_own(
    store: shared.Store,
) -> None:
    server_time = await store.client.time()
    server_now, _ = await store.run(ECHO, ["k"], ["x"])
    assert abs(server_now - server_time.timestamp() * 1_000_000) < 5_000_000
    store._clock = lambda: 1234
    assert (await store.run(ECHO, ["k"], ["x"]))[0] == 1234


async def test_other_redis_errors_propagate_as_they_are(store: shared.Store) -> None:
    broken = Script("test_broken", "return redis.call('NO-SUCH-COMMAND')")
    with pytest.raises(coredis.exceptions.ResponseError):
        await store.run(broken, ["k"], [])
    assert store.available


@pytest.mark.slow
async def test_a_killed_server_is_reported_once_and_its_return_too(
    own_redis: RedisServer, events: list[rs.Event]
) -> None:
    async with shared.Store.from_url(own_redis.url, prefix=new_prefix(), name="cache") as store:
        await store.ping()
        own_redis.kill()
        for _ in range(3):
            with pytest.raises(rs.StoreUnavailable, match="redis store 'cache': PING failed") as e:
                await store.ping()
            assert isinstance(e.value.__cause__, coredis.exceptions.ConnectionError)
        assert not store.available
        own_redis.start()
        # The store's probe notices, with nobody calling.
        await eventually(lambda: store.available, within=PROBE_INTERVAL + 0.5)
    kinds = [(e.kind, e.source) for e in events if e.kind.startswith("store.")]
    assert kinds == [("store.unavailable", "cache"), ("store.recovered", "cache")]
    unavailable = next(e for e in events if e.kind == "store.unavailable")
    assert unavailable.data["mode"] == "raise"
    assert isinstance(unavailable.data["error"], coredis.exceptions.ConnectionError)


@pytest.mark.slow
async def test_a_server_that_never_answers_costs_op_timeout_not_a_hang(
    own_redis: RedisServer,
) -> None:
    async with shared.Store.from_url(own_redis.url, op_timeout=0.2) as store:
        await store.ping()
        own_redis.pause()
        try:
            started = trio.current_time()
            with pytest.raises(rs.StoreUnavailable, match=r"op_timeout=0\.2") as e:
                await store.run(ECHO, ["k"], ["x"])
            assert isinstance(e.value.__cause__, TimeoutError)
            # One round trip, bounded; generous slack for a loaded machine.
            assert trio.current_time() - started < 2 * 0.2 + 0.3
            # A caller's own cancellation is never turned into StoreUnavailable.
            with trio.move_on_after(0.05) as scope:
                await store.run(ECHO, ["k"], ["x"])
            assert scope.cancelled_caught
        finally:
            own_redis.resume()
        await eventually(lambda: store.available, within=PROBE_INTERVAL + 0.5)
        assert (await store.run(ECHO, ["k"], ["back"]))[1] == b"back"


async def test_closing_waits_briefly_for_give_backs_and_cancels_loops(
    redis: RedisServer,
) -> None:
    store = await shared.Store.from_url(redis.url).__aenter__()
    done: list[str] = []

    async def give_back() -> None:
        await trio.sleep(0.01)
        done.append("cleanup")

    async def loop() -> None:
        try:
            await trio.sleep_forever()
        finally:
            done.append("loop stopped")

    assert store.spawn(give_back, cleanup=True)
    assert store.spawn(loop, cleanup=False)
    await trio.lowlevel.checkpoint()
    await store.aclose()
    assert done == ["cleanup", "loop stopped"]
    assert not store.spawn(give_back, cleanup=True)  # closed: nothing starts
