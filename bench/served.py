"""The servers of the ``served`` rows, each run alone in its own process and driven by
``wrk`` from outside (see `bench.anchors.served`).

    BENCH_SERVED_PORT=8000 python -m kernel._cli serve bench.served:service --workers 2
    python -m bench.served bare --port 8001
    python -m bench.served uvicorn --port 8002

Every one serves the same trivial authenticated JSON echo: ``POST /__runner/task/bench.ping``
with ``authorization: Bearer bench-token`` and ``{"input": [X]}`` (the task's one positional
argument) answers ``{"ok": true, "result": X}`` (401 without the token).

- ``service``: `kernel.exposure.http` with the ``bench.ping`` task on ``$BENCH_SERVED_PORT``,
  run by ``trio-runner serve`` (``--workers N`` processes, which import it from here;
  ``bench.pid``, never measured, tells them apart). Its logs go to the terminal at
  WARNING: the per-call INFO line is not wanted by any sink, as in a service that keeps
  access logs elsewhere.
- ``bare``: the floor of that stack: hypercorn's trio worker and one Starlette route doing
  the bearer check and the JSON echo, nothing else.
- ``uvicorn``: the same Starlette route on uvicorn (asyncio): what a user might pick instead.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

TOKEN: Final = "bench-token"
#: Where the kernel service listens.
PORT_ENV: Final = "BENCH_SERVED_PORT"
PATH: Final = "/__runner/task/bench.ping"
_EXPECTED: Final = f"Bearer {TOKEN}"


async def _ping(x: Any = None) -> Any:
    """The trivial task: returns its argument."""
    return x


async def _pid() -> int:
    """Which worker answered (for waiting until every worker is up)."""
    return os.getpid()


def kernel_service(port: int) -> Any:
    """The `kernel.Service` of the kernel rows."""
    import kernel

    ping = kernel.task("bench.ping")(_ping)
    pid = kernel.task("bench.pid")(_pid)
    exposure = kernel.exposure.http(
        "bench.exposure",
        port=port,
        auth=kernel.exposure.BearerAuth(tokens=[TOKEN]),
        allow_tasks=[ping.id, pid.id],
    )
    return kernel.Service(
        app=kernel.App("bench.served", register=[ping, pid, exposure]),
        log=kernel.LogConfig(level="WARNING"),
    )


#: What ``trio-runner serve bench.served:service`` runs (and each worker imports).
service = kernel_service(int(os.environ.get(PORT_ENV, "8000")))


def starlette_app() -> Any:
    """The floor's ASGI app: one Starlette route, the bearer check and the JSON echo."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def ping(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get("authorization", ""), _EXPECTED):
            return Response(b'{"ok":false}', 401, media_type="application/json")
        body = json.loads(await request.body())
        answer = json.dumps({"ok": True, "result": body["input"][0]}, separators=(",", ":"))
        return Response(answer.encode(), 200, media_type="application/json")

    return Starlette(routes=[Route(PATH, ping, methods=["POST"])])


def _bare(port: int) -> None:
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    trio.run(serve, starlette_app(), config)


def _uvicorn(port: int) -> None:
    import uvicorn

    uvicorn.run(starlette_app(), host="127.0.0.1", port=port, access_log=False, log_level="warning")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server named on the command line until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m bench.served")
    parser.add_argument("server", choices=("bare", "uvicorn"))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.server == "bare":
        _bare(args.port)
    else:
        _uvicorn(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
