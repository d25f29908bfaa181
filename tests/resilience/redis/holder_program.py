"""A process that takes something shared and holds it until it is killed (``test_fleet.py``):

    python -m tests.resilience.redis.holder_program URL PREFIX bulkhead|cache

It prints ``held`` once it holds a bulkhead permit (lease 0.5 s) or computes a cache miss
(lock lease 0.5 s), then waits forever: the test SIGKILLs it.
"""

from __future__ import annotations

import sys

import trio

from resilience import redis as shared


async def main(url: str, prefix: str, what: str) -> None:
    async with shared.Store.from_url(url, prefix=prefix, op_timeout=2.0) as store:
        if what == "bulkhead":
            bulkhead = shared.Bulkhead(store, name="killed", max_concurrent=1, lease=0.5)
            async with bulkhead:
                print("held", flush=True)
                await trio.sleep_forever()
        cache = shared.Cache(store, name="killed", ttl=60, lock_lease=0.5)

        async def forever() -> str:
            print("held", flush=True)
            await trio.sleep_forever()
            return "never"

        await cache.get_or_compute("key", forever)


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])
