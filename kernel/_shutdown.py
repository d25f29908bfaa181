"""Graceful shutdown: stop intake, drain in-flight task calls within a budget, cancel the rest.

The sequence, started by SIGTERM/SIGINT (with ``shutdown_signals=True``) or by
``rt.shutdown()``:

1. emit ``disposing``;
2. stop intake: new ``rt.run_task`` / ``rt.emit`` calls raise `ShuttingDown`;
3. wait for the task calls in flight to finish, for at most ``drain_timeout`` seconds (a
   second signal ends the wait at once);
4. log and cancel what is left, by cancelling the body of ``async with kernel.run(app)``;
5. the runtime then disposes every resource in reverse dependency order and emits
   ``disposed``, as on any exit.

Every phase is logged with source ``kernel.shutdown``.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from kernel._errors import KernelError
from kernel.observability._logging import kernel_logger

__all__ = ["Gauge", "Shutdown", "ShuttingDown"]

_log = kernel_logger("kernel.shutdown")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShuttingDown(KernelError):
    """The runtime is shutting down and takes no new task calls or emissions."""


class Gauge:
    """How many calls of one task are in flight (kept next to its runner: one lookup)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Shutdown:
    """The shutdown sequence of one runtime; see the module docstring."""

    def __init__(
        self,
        *,
        drain_timeout: float,
        gauges: Mapping[str, Gauge],
        announce: Callable[[], Awaitable[None]],
    ) -> None:
        if isinstance(drain_timeout, bool) or not isinstance(drain_timeout, int | float):
            raise TypeError(f"kernel.run: drain_timeout must be a number, got {drain_timeout!r}")
        if not drain_timeout >= 0:
            raise ValueError(f"kernel.run: drain_timeout must be >= 0, got {drain_timeout!r}")
        self.drain_timeout = float(drain_timeout)
        self.stopping = False
        self.body = trio.CancelScope()
        self._gauges = gauges
        self._announce = announce
        self._requested = trio.Event()
        self._skip_drain = trio.Event()
        self._drained = trio.Event()

    def request(self, reason: str = "requested") -> None:
        """Start the sequence (a second request skips the drain)."""
        if self._requested.is_set():
            _log.warning("shutdown: {} again, skipping the drain", reason)
            self._skip_drain.set()
            return
        _log.info("shutdown: {}", reason)
        self._requested.set()

    @property
    def requested(self) -> bool:
        """Whether a shutdown was requested (readiness ends right then)."""
        return self._requested.is_set()

    def in_flight(self) -> dict[str, int]:
        """Task id → calls in flight, for the tasks that have any."""
        return {task_id: gauge.n for task_id, gauge in self._gauges.items() if gauge.n}

    def call_finished(self) -> None:
        """Called by ``run_task`` after a call, once intake has stopped."""
        if not self.in_flight():
            self._drained.set()

    async def watch_signals(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Turn SIGTERM and SIGINT into shutdown requests (runs in the runtime's nursery)."""
        with trio.open_signal_receiver(*SIGNALS) as received:
            task_status.started()
            async for signum in received:
                self.request(f"{signal.Signals(signum).name} received")

    async def run(self) -> None:
        """Wait for a request, then drain and cancel the body (runs in the runtime's nursery)."""
        await self._requested.wait()
        await self._announce()
        self.stopping = True
        _log.info("shutdown: intake stopped")
        pending = self.in_flight()
        if pending and not self._skip_drain.is_set():
            total = sum(pending.values())
            _log.info(
                "shutdown: draining {} task call(s) in flight for up to {:g} s",
                total,
                self.drain_timeout,
            )
            with trio.move_on_after(self.drain_timeout):
                async with trio.open_nursery() as nursery:
                    for event in (self._drained, self._skip_drain):
                        nursery.start_soon(_cancel_when_set, event, nursery.cancel_scope)
        left = self.in_flight()
        if left:
            listed = ", ".join(f"{task_id} x{n}" for task_id, n in sorted(left.items()))
            _log.warning("shutdown: cancelling task calls still in flight: {}", listed)
        else:
            _log.info("shutdown: nothing in flight")
        _log.info("shutdown: disposing resources")
        self.body.cancel()


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
