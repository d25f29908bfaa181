"""`Calls`: every call the runtime runs on behalf of a caller, so that none outlives what it uses.

A call — a task run, the hooks of an emission, a health check — is either

- *covered*: made by the task that entered ``async with kernel.run(app)``, while its body runs.
  The body's cancel scope (`kernel._shutdown.Shutdown.body`) covers it: it costs a gauge
  increment and nothing more (the fast path of ``rt.run_task`` and ``rt.emit``);
- *tracked*: made anywhere else — an HTTP request's handler, a durable worker's run, a
  resource's background work, a nursery the body opened. It runs inside a cancel scope of its
  own, registered here for as long as it runs (`Calls.run`).

Every call, covered or tracked, counts in the gauge of its label (a task id, ``event <id>``,
``health``). Before the first resource is disposed the runtime stops intake (`stop_intake`),
cancels every tracked scope and the body (`cancel`), and waits until nothing is in flight
(`wait_idle`). A tracked call ended by that cancellation raises `ShuttingDown` to its caller.
(When the caller is being cancelled too, trio's scope does not catch the cancellation: the
caller's own `trio.Cancelled` propagates, never replaced.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from kernel._shutdown import ShuttingDown

__all__ = ["Calls", "Gauge"]


class Gauge:
    """How many calls of one label are in flight (kept next to a task's runner: one lookup)."""

    __slots__ = ("in_flight",)

    def __init__(self) -> None:
        self.in_flight = 0


class Calls:
    """The calls in flight in one runtime; see the module docstring."""

    __slots__ = ("_idle", "_scopes", "cancelled", "gauges", "main", "stopping")

    def __init__(self) -> None:
        #: Label → its gauge.
        self.gauges: dict[str, Gauge] = {}
        #: The task whose calls the body's cancel scope covers: set while the body runs and
        #: intake is open, else ``None`` (then every call takes the tracked path).
        self.main: trio.lowlevel.Task | None = None
        #: Intake has stopped: new calls from outside a call are refused.
        self.stopping = False
        #: Everything in flight was cancelled: nothing new may start at all.
        self.cancelled = False
        self._scopes: set[trio.CancelScope] = set()
        self._idle = trio.Event()

    def gauge(self, label: str) -> Gauge:
        """The gauge of ``label`` (created on first use)."""
        gauge = self.gauges.get(label)
        if gauge is None:
            gauge = self.gauges[label] = Gauge()
        return gauge

    def in_flight(self) -> dict[str, int]:
        """Label → calls in flight, for the labels that have any."""
        return {label: gauge.in_flight for label, gauge in self.gauges.items() if gauge.in_flight}

    def stop_intake(self) -> None:
        """From now on every call takes the tracked path (which refuses new ones)."""
        self.stopping = True
        self.main = None

    def _busy(self) -> bool:
        return any(gauge.in_flight for gauge in self.gauges.values())

    def finished(self) -> None:
        """A call ended after intake stopped: wake `wait_idle` if it was the last."""
        if not self._busy():
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no call is in flight (call it once intake has stopped). A checkpoint
        only while calls are in flight."""
        while self._busy():
            if self._idle.is_set():  # (set when it was idle before: a call started since)
                self._idle = trio.Event()
            await self._idle.wait()

    def cancel(self) -> dict[str, int]:
        """Cancel every tracked call (nothing new starts after this); return what was in
        flight, covered calls included (the body's cancellation is the caller's to do)."""
        self.cancelled = True
        for scope in self._scopes:
            scope.cancel()
        return self.in_flight()

    async def run(
        self,
        label: str,
        gauge: Gauge,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """``await fn(*args, **kwargs)`` as a tracked call counted in ``gauge``.

        A checkpoint whenever ``fn`` is. Raises `ShuttingDown` when `cancel` ended it (or had
        already run); other outcomes, cancellation included, propagate unchanged.
        """
        if self.cancelled:
            raise ShuttingDown(f"call {label!r} refused: the runtime is disposing")
        scope = trio.CancelScope()
        self._scopes.add(scope)
        gauge.in_flight += 1
        try:
            with scope:
                return await fn(*args, **kwargs)
        finally:
            gauge.in_flight -= 1
            self._scopes.discard(scope)
            if self.stopping:
                self.finished()
        # Only reached when our own scope caught the cancellation, i.e. `cancel` ended it.
        raise ShuttingDown(f"call {label!r} cancelled: the runtime is shutting down")
