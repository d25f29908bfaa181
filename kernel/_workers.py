"""Workers: N processes of one service sharing its HTTP exposures' ports (``SO_REUSEPORT``),
supervised by the process that started them.

``kernel.main(app, workers=N)`` (or ``kernel.Service(..., workers=N)``, or
``trio-runner serve module:service --workers N``) makes the calling process the *parent*:

- It finds how a worker imports the target (`locate`: the module and attribute that hold
  the very object; a script's ``__main__`` is run again as ``__mp_main__``, so the
  ``if __name__ == "__main__":`` block that called `kernel.main` does not run twice).
- It binds each exposure's address with ``SO_REUSEPORT`` without listening (`reserve`):
  ``port=0`` becomes one port every worker shares, and it stays taken while workers restart.
- It starts each worker as ``python -m kernel._worker`` in a session of its own (a
  terminal's Ctrl-C reaches the parent only, which forwards it once), with the target, the
  shared ports, the options and a pipe whose closing (the parent died, even by SIGKILL)
  stops the worker gracefully.
- SIGTERM or SIGINT to the parent is forwarded to every worker, which drains as a single
  process does (`kernel.run`); a second signal is forwarded too (skip the drain). No
  worker is restarted once stopping. The parent returns when every worker has exited
  (exit 0 when all exited 0; otherwise `WorkerFailed`); a worker still running
  ``stop_timeout`` seconds after the signal is killed.
- A worker that exits while the service is not stopping crashed: it is restarted after a
  backoff (the Service's ``worker_restart``, by default 5 runs in a streak, waits 0.25 s
  doubling to 4 s; a run that lasted `HEALTHY_RUN` seconds opens a new streak). When the
  streak is exhausted the service comes down: the other workers are stopped gracefully
  and `kernel.WorkerFailed` (the worker's exit status; its own error went to its stderr,
  which is the parent's) propagates, so the parent exits non-zero.

Each worker is a whole runtime: its own resources, health, ``/metrics`` (see the
operations docs for aggregating them) and logs; ``TRIO_RUNNER_WORKER`` (1..N) says which.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import attrs
import trio

from kernel._definitions import App
from kernel._errors import KernelError, WorkerFailed
from kernel._graph import build_graph
from kernel._service import Service
from kernel._supervise import Supervisor
from kernel.exposure._config import EXPOSURE
from kernel.exposure._server import listening_socket
from kernel.observability._logging import install, kernel_logger
from resilience import Retry

__all__ = [
    "ENV_OPTIONS",
    "ENV_PARENT_FD",
    "ENV_PATH",
    "ENV_PORTS",
    "ENV_TARGET",
    "ENV_WORKER",
    "HEALTHY_RUN",
    "locate",
    "reserve",
    "serve_workers",
]

ENV_WORKER: Final = "TRIO_RUNNER_WORKER"
ENV_TARGET: Final = "TRIO_RUNNER_WORKER_TARGET"
ENV_PORTS: Final = "TRIO_RUNNER_WORKER_PORTS"
ENV_OPTIONS: Final = "TRIO_RUNNER_WORKER_OPTIONS"
ENV_PARENT_FD: Final = "TRIO_RUNNER_WORKER_PARENT_FD"
ENV_PATH: Final = "TRIO_RUNNER_WORKER_PATH"

#: A worker that ran this many seconds before crashing was healthy: a new streak opens.
HEALTHY_RUN: Final = 30.0
#: Seconds a stopping worker gets beyond its drain and its exposures' graceful timeouts.
STOP_MARGIN: Final = 5.0

_OWNER: Final = "kernel.main"
_SOURCE: Final = "kernel.workers"
#: Options `kernel.main` can hand to a worker (as JSON); others belong in the Service.
_SCALAR = (bool, int, float, str, type(None))


# ---------------------------------------------------------------------- what workers run


def locate(target: object) -> str:
    """How a worker imports ``target``: ``"module:attribute"``, or ``"path/to/script.py:name"``
    for a script's ``__main__``; `KernelError` when no module holds it at top level."""
    main_module = sys.modules.get("__main__")
    found: str | None = None
    for name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict) or name in {"__main__", "__mp_main__"}:
            continue
        attribute = _holding(namespace, target)
        if attribute is not None:
            return f"{name}:{attribute}"
    if main_module is not None:
        attribute = _holding(vars(main_module), target)
        if attribute is not None:
            spec = getattr(main_module, "__spec__", None)
            if spec is not None and spec.name:
                found = f"{spec.name}:{attribute}"
            else:
                path = getattr(main_module, "__file__", None)
                if isinstance(path, str):
                    found = f"{os.path.abspath(path)}:{attribute}"
    if found is None:
        raise KernelError(
            f"{_OWNER}: with workers > 1 every worker imports the app: define it (or its "
            "kernel.Service) at the top level of a module, or run "
            "`trio-runner serve module:attribute --workers N`"
        )
    return found


def _holding(namespace: Mapping[str, object], target: object) -> str | None:
    for attribute, value in list(namespace.items()):
        if value is target and not attribute.startswith("__"):
            return attribute
    return None


def portable_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as they travel to workers (JSON); `TypeError` names one that cannot."""
    for name, value in options.items():
        if not isinstance(value, _SCALAR) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise TypeError(
                f"{_OWNER}: with workers > 1, {name}= must be set in the kernel.Service the "
                f"workers import (only plain values travel to them), got {value!r}"
            )
    return dict(options)


# ---------------------------------------------------------------------- shared ports


@attrs.frozen
class Reservation:
    """The exposures' shared ports (``{resource id: port}``) and the bound sockets holding them."""

    ports: Mapping[str, int]
    sockets: tuple[socket.socket, ...]


@contextmanager
def reserve(app: App) -> Iterator[Reservation]:
    """Bind every HTTP exposure of ``app`` with ``SO_REUSEPORT`` (not listening: workers
    listen); ``port=0`` is resolved here, once. The sockets close on exit."""
    held: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        for node, config in build_graph(app).find(EXPOSURE):
            sock = listening_socket(config.host, config.port, reuse_port=True)
            held.append(sock)
            ports[node.id] = sock.getsockname()[1]
        yield Reservation(ports, tuple(held))
    finally:
        for sock in held:
            sock.close()


def _stop_timeout(service: Service) -> float:
    graceful = [config.graceful_timeout for _, config in build_graph(service.app).find(EXPOSURE)]
    return service.drain_timeout + max(graceful, default=0.0) + STOP_MARGIN


# ---------------------------------------------------------------------- the parent


@attrs.define(eq=False)
class _Fleet:
    """The parent's view of its workers."""

    command: list[str]
    env: dict[str, str]
    parent_fd: int
    stop_timeout: float
    live: dict[int, trio.Process] = attrs.Factory(dict)
    #: Set by the first SIGTERM/SIGINT: no worker is (re)started after it.
    stopping: trio.Event = attrs.Factory(trio.Event)
    failures: list[WorkerFailed] = attrs.Factory(list)

    async def run_once(self, worker: int) -> None:
        """Start worker ``worker`` and wait for it. Returns when it exited because the
        service is stopping; raises `WorkerFailed` when it exited otherwise (a crash).
        Cancelled: stops it gracefully (shielded, bounded by ``stop_timeout``) first."""
        if self.stopping.is_set():  # (signalled while this worker waited to restart)
            return
        env = {**self.env, ENV_WORKER: str(worker)}
        process = await trio.lowlevel.open_process(
            self.command, env=env, pass_fds=(self.parent_fd,), start_new_session=True
        )
        self.live[worker] = process
        if self.stopping.is_set():  # (signalled while it was being started)
            process.send_signal(signal.SIGTERM)
        try:
            status = await process.wait()
        except BaseException:
            with trio.CancelScope(shield=True):
                # Signalled already if stopping: a second signal would skip its drain.
                await self._stop(process, None if self.stopping.is_set() else signal.SIGTERM)
            raise
        finally:
            del self.live[worker]
        if self.stopping.is_set():
            if status != 0:
                self.failures.append(
                    WorkerFailed(
                        f"worker {worker} exited with status {status} while stopping",
                        worker=worker,
                        status=status,
                    )
                )
            return
        raise WorkerFailed(
            f"worker {worker} exited with status {status}", worker=worker, status=status
        )

    async def _stop(self, process: trio.Process, signum: int | None) -> None:
        if signum is not None and process.returncode is None:
            process.send_signal(signum)
        with trio.move_on_after(self.stop_timeout):
            await process.wait()
            return
        self.kill(process)
        await process.wait()

    def kill(self, process: trio.Process) -> None:
        """SIGKILL ``process``, which outlived ``stop_timeout`` after its signal."""
        if process.returncode is None:
            kernel_logger(_SOURCE).warning(
                "worker pid {} still running {} s after the signal: killed",
                process.pid,
                self.stop_timeout,
            )
            process.kill()

    async def forward(self, signals: AsyncIterator[int]) -> None:
        """Forward every SIGTERM/SIGINT the parent gets to every live worker."""
        log = kernel_logger(_SOURCE)
        async for signum in signals:
            first = not self.stopping.is_set()
            self.stopping.set()
            name = signal.Signals(signum).name
            log.info(
                "{}: {} {} worker(s)",
                name,
                "stopping" if first else "forwarding again to",
                len(self.live),
            )
            for process in list(self.live.values()):
                if process.returncode is None:
                    process.send_signal(signum)


async def _kill_late(fleet: _Fleet) -> None:
    """Once stopping: kill the workers still running ``stop_timeout`` seconds later."""
    await fleet.stopping.wait()
    await trio.sleep(fleet.stop_timeout)
    for process in list(fleet.live.values()):
        fleet.kill(process)


async def supervise(fleet: _Fleet, workers: int, restart: Retry) -> None:
    """Run ``workers`` supervised workers of ``fleet`` until they all stopped; raise the
    first `WorkerFailed` (after stopping the others) if one kept crashing or stopped badly."""
    gave_up: WorkerFailed | None = None
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as around:
            around.start_soon(fleet.forward, signals)
            around.start_soon(_kill_late, fleet)
            try:
                async with trio.open_nursery() as nursery:
                    for worker in range(1, workers + 1):
                        supervisor = Supervisor.create(
                            _SOURCE,
                            fleet.run_once,
                            (worker,),
                            name=f"worker {worker}",
                            restart=restart,
                            reset_after=HEALTHY_RUN,
                        )
                        nursery.start_soon(supervisor.run)
            except ExceptionGroup as group:
                failed, rest = group.split(WorkerFailed)
                if failed is None or rest is not None:
                    raise
                # The first worker to give up brought the service down: its error, alone.
                gave_up = _leaves(failed)[0]
            finally:
                around.cancel_scope.cancel()
    if gave_up is not None:
        raise gave_up
    if fleet.failures:
        raise fleet.failures[0]


def _leaves(group: BaseExceptionGroup[WorkerFailed]) -> list[WorkerFailed]:
    found: list[WorkerFailed] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found


def serve_workers(
    service: Service, *, target: str, workers: int, options: Mapping[str, Any]
) -> None:
    """Run ``workers`` processes of the service that ``target`` (see `locate`) names, until
    SIGTERM/SIGINT; see the module docstring."""
    if os.environ.get(ENV_WORKER):
        raise KernelError(
            f"{_OWNER}: called with workers > 1 inside a worker: guard the call with "
            '`if __name__ == "__main__":` (each worker imports the module that defines the app)'
        )
    read_fd, write_fd = os.pipe()
    try:
        with reserve(service.app) as reservation:
            env = {
                **os.environ,
                ENV_TARGET: target,
                ENV_PORTS: json.dumps(dict(reservation.ports)),
                ENV_OPTIONS: json.dumps(portable_options(options)),
                ENV_PARENT_FD: str(read_fd),
                ENV_PATH: json.dumps([entry for entry in sys.path if entry]),
            }
            fleet = _Fleet(
                command=[sys.executable, "-m", "kernel._worker"],
                env=env,
                parent_fd=read_fd,
                stop_timeout=_stop_timeout(service),
            )
            kernel_logger(_SOURCE).info(
                "starting {} workers of {} (shared ports {})",
                workers,
                target,
                dict(reservation.ports),
            )
            installed = install(service.log) if service.log is not None else None
            try:
                trio.run(supervise, fleet, workers, service.worker_restart)
            finally:
                if installed is not None:
                    installed.remove()
    finally:
        os.close(read_fd)
        os.close(write_fd)
