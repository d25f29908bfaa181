"""`main`: run an app as a service process until SIGTERM or SIGINT."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from kernel._definitions import App
from kernel._runtime import Runtime
from kernel._service import Service, as_service

__all__ = ["main"]


async def _forever(rt: Runtime) -> None:
    await trio.sleep_forever()


def main(
    target: App | Service,
    *,
    serve: Callable[[Runtime], Awaitable[Any]] | None = None,
    **options: Any,
) -> None:
    """Run an App or a `Service` as a service process: start it, run ``serve(rt)`` (default:
    wait), and on SIGTERM or SIGINT shut down gracefully (see `kernel.run`); return after a
    clean shutdown, so the process exits 0. A second signal during the shutdown skips the
    drain. ``options`` override the service's `kernel.run` options (``drain_timeout=``, ...);
    signals are always on.
    """
    service = as_service(target, **options, shutdown_signals=True)
    serving = serve or _forever

    async def run_service() -> None:
        async with service.run() as rt:
            await serving(rt)

    trio.run(run_service)
