"""Two worker processes share one rate limit and one circuit breaker, in Redis, in front of
a flaky upstream.

    .venv/bin/python examples/fleet_limits.py          # REDIS_URL=redis://host:6379/0 to use yours

Without ``REDIS_URL`` it starts a throwaway ``redis-server`` (no persistence, a free local
port) and says so. The upstream is a small TCP service in this process: it answers, then
goes down for a second, then answers again. Each worker calls it as fast as the shared
limit allows (10 calls a second for both workers together, one every 0.1 s), through a
shared breaker that opens for both when the upstream fails, and closes again after one probe
succeeds. Each worker prints what it saw; this process adds them up.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio
from throwaway_redis import redis_url

import middleware as mw
import resilience as rs
from resilience import redis as shared

WORKERS = 2
RATE = 10  # calls per second, for the whole fleet
RUN_FOR = 3.5  # seconds each worker calls the upstream
DOWN = (1.0, 2.2)  # the upstream's outage, in seconds after the start


# ---------------------------------------------------------------------------- the worker


async def worker(url: str, upstream_port: int, start: float) -> dict[str, Any]:
    """Call the upstream until ``start + RUN_FOR``; count what happened."""
    seen: dict[str, Any] = {"ok": 0, "failed": 0, "rejected": 0, "admitted": []}
    async with shared.Store.from_url(url, prefix="fleet-example") as store:
        limit = shared.RateLimiter(
            store, name="upstream", rate=RATE, per=1.0, burst=1, algorithm="token_bucket"
        )
        breaker = shared.CircuitBreaker(
            store, name="upstream", failure_threshold=2, reset_timeout=1.0, sync_interval=0.1
        )

        @mw.apply(mw.circuit_breaker(breaker), mw.rate_limit(limit), mw.timeout(0.5))
        async def call_upstream() -> bytes:
            seen["admitted"].append(time.time())
            stream = await trio.open_tcp_stream("127.0.0.1", upstream_port)
            async with stream:
                answer = await stream.receive_some(16)
            if answer != b"ok\n":
                raise ConnectionError("the upstream hung up")
            return answer

        # Both workers begin together, so that each sees the whole outage: one call every
        # 0.1 s for the fleet (burst=1) keeps the breaker's view fresh when it opens.
        await trio.sleep(max(0.0, start - time.time()))
        while time.time() < start + RUN_FOR:
            try:
                await call_upstream()
                seen["ok"] += 1
            except ConnectionError:
                seen["failed"] += 1
            except rs.CircuitOpen:
                seen["rejected"] += 1
                await trio.sleep(0.05)
    return seen


# ------------------------------------------------------------------ the upstream and Redis


async def serve_upstream(
    start: float, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answer ``ok`` to every connection, except during the outage (hang up at once)."""

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            elapsed = time.time() - start
            if not DOWN[0] <= elapsed < DOWN[1]:
                await stream.send_all(b"ok\n")

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(answer, listeners)


# ---------------------------------------------------------------------------- the parent


async def main(url: str) -> None:
    start = time.time() + 2.5  # the workers start together, once they are up
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_upstream, start)
        command = [sys.executable, __file__, "--worker", url, str(port), str(start)]
        results: list[dict[str, Any]] = []

        async def run_worker() -> None:
            done = await trio.run_process(command, capture_stdout=True, check=True)
            results.append(json.loads(done.stdout))

        async with trio.open_nursery() as workers:
            for _ in range(WORKERS):
                workers.start_soon(run_worker)
        nursery.cancel_scope.cancel()

    admitted = sorted(t for result in results for t in result["admitted"])
    for n, result in enumerate(results, 1):
        print(
            f"worker {n}: {result['ok']} answered, {result['failed']} failed, "
            f"{result['rejected']} refused by the open circuit"
        )
    span = admitted[-1] - admitted[0]
    print(
        f"both workers together: {len(admitted)} calls in {span:.1f} s, "
        f"{len(admitted) / span:.1f} a second (the shared limit: {RATE} in any second)"
    )
    opened = sum(result["rejected"] > 0 for result in results)
    print(f"the circuit opened for {opened} of {WORKERS} workers during the outage")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _, _, url, port, start = sys.argv
        print(json.dumps(trio.run(worker, url, int(port), float(start))))
    else:
        with redis_url("fleet") as url:
            trio.run(main, url)
