"""`main`: run an app as a service process until SIGTERM or SIGINT, in one process or as
the parent of N workers (`kernel._workers`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from kernel._definitions import App
from kernel._runtime import Runtime
from kernel._service import Service, as_service

__all__ = ["main", "run_main"]


async def _forever(rt: Runtime) -> None:
    await trio.sleep_forever()


def main(
    target: App | Service,
    *,
    serve: Callable[[Runtime], Awaitable[Any]] | None = None,
    workers: int | None = None,
    **options: Any,
) -> None:
    """Run an App or a `Service` as a service process: start it, run ``serve(rt)`` (default:
    wait), and on SIGTERM or SIGINT shut down gracefully (see `kernel.run`); return after a
    clean shutdown, so the process exits 0. A second signal during the shutdown skips the
    drain. ``options`` override the service's `kernel.run` options (``drain_timeout=``, ...);
    signals are always on.

    ``workers`` (default: the Service's, 1 for an App) > 1 runs that many processes of the
    app, which must then be importable (defined at the top level of a module); they share
    the HTTP exposures' ports through ``SO_REUSEPORT``, get the signals forwarded, are
    restarted with a backoff when they crash, and bring the service down with
    `kernel._workers.WorkerFailed` when one keeps crashing (see `kernel._workers`). With
    workers only plain ``options`` (numbers, strings, booleans) are allowed, and no
    ``serve``: each worker runs the app until it is stopped.
    """
    run_main(target, serve=serve, workers=workers, where=None, **options)


def run_main(
    target: App | Service,
    *,
    serve: Callable[[Runtime], Awaitable[Any]] | None = None,
    workers: int | None = None,
    where: str | None,
    **options: Any,
) -> None:
    """`main`, with ``where``: how a worker imports ``target`` (``None``: find it)."""
    if workers is not None:
        options["workers"] = workers
    service = as_service(target, **options, shutdown_signals=True)
    if service.workers > 1:
        from kernel import _workers

        if serve is not None:
            raise ValueError(
                "kernel.main: serve= runs in one process; with workers > 1 each worker "
                "runs the app until it is stopped"
            )
        portable = {k: v for k, v in options.items() if k != "workers"}
        _workers.serve_workers(
            service,
            target=where or _workers.locate(target),
            workers=service.workers,
            options=portable,
        )
        return
    serving = serve or _forever

    async def run_service() -> None:
        async with service.run() as rt:
            await serving(rt)

    trio.run(run_service)
