"""The servers of the ``served`` rows, each run alone in its own process and driven by
``wrk`` from outside (see `bench.anchors.served`).

    python -m bench.served kernel --port 8000 --workers 2
    python -m bench.served bare --port 8001
    python -m bench.served uvicorn --port 8002

Every one serves the same trivial authenticated JSON echo: ``POST /__runner/task/bench.ping``
with ``authorization: Bearer bench-token`` and ``{"input": [X]}`` (the task's one positional
argument) answers ``{"ok": true, "result": X}`` (401 without the token).

- ``kernel``: `kernel.exposure.http` with the ``bench.ping`` task, run by `kernel.main`
  (``--workers N`` processes). Its logs go to the terminal at WARNING: the per-call INFO
  line is not wanted by any sink, as in a service that keeps access logs elsewhere.
- ``bare``: the floor of that stack: hypercorn's trio worker and one Starlette route doing
  the bearer check and the JSON echo, nothing else.
- ``uvicorn``: the same Starlette route on uvicorn (asyncio): what a user might pick instead.
"""

from __future__ import annotations

import argparse
import hmac
import json
import sys
from collections.abc import Sequence
from typing import Any, Final

TOKEN: Final = "bench-token"
PATH: Final = "/__runner/task/bench.ping"
_EXPECTED: Final = f"Bearer {TOKEN}"


async def _ping(x: Any = None) -> Any:
    """The trivial task: returns its argument."""
    return x


def kernel_service(port: int, workers: int) -> Any:
    """The `kernel.Service` of the ``kernel`` server."""
    import kernel

    ping = kernel.task("bench.ping")(_ping)
    exposure = kernel.exposure.http(
        "bench.exposure",
        port=port,
        auth=kernel.exposure.BearerAuth(tokens=[TOKEN]),
        allow_tasks=[ping.id],
    )
    return kernel.Service(
        app=kernel.App("bench.served", register=[ping, exposure]),
        log=kernel.LogConfig(level="WARNING"),
        workers=workers,
    )


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
    parser.add_argument("server", choices=("kernel", "bare", "uvicorn"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.server == "kernel":
        import kernel

        kernel.main(kernel_service(args.port, args.workers))
    elif args.server == "bare":
        _bare(args.port)
    else:
        _uvicorn(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
