"""`main`: run an app as a service process until SIGTERM or SIGINT."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from kernel._definitions import App
from kernel._runtime import Runtime, run

__all__ = ["main"]


async def _forever(rt: Runtime) -> None:
    await trio.sleep_forever()


def main(
    app: App,
    *,
    serve: Callable[[Runtime], Awaitable[Any]] | None = None,
    drain_timeout: float = 30.0,
    parallel_init: bool = False,
    middleware: Iterable[object] = (),
) -> None:
    """Run ``app`` as a service: start it, run ``serve(rt)`` (default: wait), and on SIGTERM
    or SIGINT shut down gracefully (see `kernel.run`); return after a clean shutdown, so the
    process exits 0. A second signal during the shutdown skips the drain.
    """
    serving = serve or _forever

    async def service() -> None:
        async with run(
            app,
            shutdown_signals=True,
            drain_timeout=drain_timeout,
            parallel_init=parallel_init,
            middleware=middleware,
        ) as rt:
            await serving(rt)

    trio.run(service)
