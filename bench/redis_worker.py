"""One process of the redis throughput row: ``python bench/redis_worker.py URL``.

It opens a store on ``URL`` and, for every line ``n`` read on stdin, makes ``n``
decisions of the shared limiter ``bench-fleet`` (never waiting) with `TASKS` callers at
once (what queues behind a round trip goes in the next one), then answers ``done``.
It ends when stdin closes.
"""

from __future__ import annotations

import sys

import trio

from resilience import redis as shared

#: Callers at once in each process.
TASKS = 8


async def main(url: str) -> None:
    async with shared.Store.from_url(url, prefix="bench", op_timeout=5.0) as store:
        limiter = shared.RateLimiter(store, name="bench-fleet", rate=10_000_000, per=1.0)
        while line := await trio.to_thread.run_sync(sys.stdin.readline):
            left = int(line)

            async def caller() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await limiter.acquire()

            async with trio.open_nursery() as nursery:
                for _ in range(TASKS):
                    nursery.start_soon(caller)
            sys.stdout.write("done\n")
            sys.stdout.flush()


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
