"""Graceful shutdown: stop intake, drain the calls in flight within a budget, cancel the rest.

The sequence, started by SIGTERM/SIGINT (with ``shutdown_signals=True``) or by
``rt.shutdown()``:

1. emit ``disposing``;
2. stop intake: new ``rt.run_task`` / ``rt.emit`` calls raise `ShuttingDown` (HTTP calls
   are answered 503 ``shutting_down``);
3. wait for the calls in flight to finish, for at most ``drain_timeout`` seconds (a second
   signal ends the wait at once);
4. log and cancel every call still in flight, wherever it runs (the body of
   ``async with kernel.run(app)``, an HTTP request, a durable worker, a resource's
   background work; see `kernel._calls`), by cancelling the body and each call's scope;
5. wait until they have all ended — only then does the runtime dispose the resources, in
   reverse dependency order, and emit ``disposed``, as on any exit.

Leaving the body without a shutdown runs steps 2, 4 and 5 at once (`settle`): no call runs
while, or after, anything it uses is disposed, whatever the order of registration.

Every phase is logged with source ``kernel.shutdown``.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import trio

from kernel._errors import KernelError
from kernel.observability._logging import kernel_logger
from resilience import validate

if TYPE_CHECKING:
    from kernel._calls import Calls

__all__ = ["Shutdown", "ShuttingDown"]

_log = kernel_logger("kernel.shutdown")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShuttingDown(KernelError):
    """The runtime is shutting down and takes no new task calls or emissions."""


class Shutdown:
    """The shutdown sequence of one runtime; see the module docstring."""

    def __init__(
        self,
        *,
        drain_timeout: float | timedelta,
        calls: Calls,
        announce: Callable[[], Awaitable[None]],
    ) -> None:
        self.drain_timeout = validate.seconds(
            drain_timeout, owner="kernel.run", name="drain_timeout", minimum="zero"
        )
        self.body = trio.CancelScope()
        self._calls = calls
        self._announce = announce
        self._requested = trio.Event()
        self._skip_drain = trio.Event()

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

    async def watch_signals(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Turn SIGTERM and SIGINT into shutdown requests (runs in the runtime's nursery)."""
        with trio.open_signal_receiver(*SIGNALS) as received:
            task_status.started()
            async for signum in received:
                self.request(f"{signal.Signals(signum).name} received")

    async def run(self) -> None:
        """Wait for a request, drain, then cancel every call and the body (runs in the
        runtime's nursery)."""
        await self._requested.wait()
        calls = self._calls
        if calls.cancelled:
            return  # the runtime was already being disposed
        await self._announce()
        calls.stop_intake()
        _log.info("shutdown: intake stopped")
        pending = calls.in_flight()
        if pending and not self._skip_drain.is_set():
            _log.info(
                "shutdown: draining {} call(s) in flight for up to {:g} s",
                sum(pending.values()),
                self.drain_timeout,
            )
            with trio.move_on_after(self.drain_timeout):
                async with trio.open_nursery() as nursery:
                    for wait in (calls.wait_idle, self._skip_drain.wait):
                        nursery.start_soon(_cancel_after, wait, nursery.cancel_scope)
        if not calls.cancelled:
            self._cancel_calls()
        self.body.cancel()

    async def settle(self) -> None:
        """Before the first resource is disposed: stop intake, cancel every call still in
        flight (a shutdown's drain may have done both already) and wait until they have all
        ended. Shielded from cancellation: disposal must not begin under a running call."""
        calls = self._calls
        if not calls.stopping:
            calls.stop_intake()
        if not calls.cancelled:
            self._cancel_calls()
        with trio.CancelScope(shield=True):
            await calls.wait_idle()
        if self.requested:
            _log.info("shutdown: disposing resources")

    def _cancel_calls(self) -> None:
        left = self._calls.cancel()
        if left:
            listed = ", ".join(f"{label} x{n}" for label, n in sorted(left.items()))
            _log.warning("shutdown: cancelling calls still in flight: {}", listed)
        elif self.requested:
            _log.info("shutdown: nothing in flight")


async def _cancel_after(wait: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()
