"""A service process for the shutdown tests: ``python signalled.py TASK_SECONDS DRAIN_SECONDS``.

Prints ``ready`` once a long task call is in flight; logs every phase to stderr.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

import kernel


def lifecycle(id: str, deps: dict[str, Any] | None = None) -> kernel.Resource:
    @kernel.resource(id, deps=deps)
    async def res(**_: Any) -> Any:
        yield id
        print(f"dispose {id}", flush=True)

    return res


db = lifecycle("db")
server = lifecycle("server", {"db": db})


@kernel.task("long", deps={"db": db})
async def long(seconds: float, *, db: str) -> None:
    await trio.sleep(seconds)
    print("long task finished", flush=True)


app = kernel.App("signalled", register=[db, server, long])


async def serve(rt: kernel.Runtime) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rt.run_task, long, float(sys.argv[1]))
        await trio.sleep(0.05)
        print("ready", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    kernel.main(app, serve=serve, drain_timeout=float(sys.argv[2]))
