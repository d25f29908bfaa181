"""`Scope`: what a resource gets to own background work for exactly its own lifetime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVarTuple

import attrs
import trio

from kernel._host import Host
from kernel._supervise import Supervisor

if TYPE_CHECKING:
    from kernel._supervise import Restart

__all__ = ["Scope"]

PosArgsT = TypeVarTuple("PosArgsT")


@attrs.frozen
class Scope:
    """Handed to a resource that asks for ``scope``.

    ``nursery`` is a trio nursery opened just before the resource's init and cancelled when
    the resource is disposed, before its dispose code runs: start pollers, consumers and
    servers there (``scope.nursery.start_soon(...)`` or ``await scope.nursery.start(...)``),
    or with `supervise` to have them restarted when they crash. A task in it that crashes
    (for good) brings the runtime down with its error, as any trio child does.

    ``runtime`` is the running app as a `kernel.Host` (what a resource may ask of it: run
    a task, emit, readiness, health), for resources that serve the app to the outside (HTTP
    exposure, a durable worker): most resources should depend on what they use instead.

    Background work that calls tasks or emits events must expect `kernel.ShuttingDown`:
    new calls are refused once intake stops, and a call in flight is cancelled (raising it)
    when the drain ends, before any resource is disposed.
    """

    id: str
    nursery: trio.Nursery
    runtime: Host | None = attrs.field(default=None, repr=False)

    def supervise(
        self,
        fn: Callable[[*PosArgsT], Awaitable[object]],
        *args: *PosArgsT,
        name: str | None = None,
        restart: Restart = "never",
        reset_after: float | timedelta | None = None,
    ) -> None:
        """Start ``fn(*args)`` in `nursery` (as ``start_soon`` does), restarted when it crashes.

        - ``restart``: ``"never"``, or an `rs.Retry` whose policy decides each restart:
          the ``k``-th consecutive crash waits the Retry's delay for attempt ``k``, then ``fn``
          starts again; when the Retry gives up (attempts, ``stop``, ``timeout`` or ``on``),
          the last exception propagates unchanged, bringing the runtime down as a crashed
          trio child does. The Retry's ``timeout`` counts from the start of the current
          streak of crashes (the task's first start, or the crash that opened the streak).
        - ``reset_after``: seconds (or a timedelta); a run that lasted at least that long
          before crashing was healthy: its crash counts as attempt 1 of a new streak.
          ``None`` (default): crashes are counted over the task's whole life.
        - ``name``: the task's name in logs and in trio (default: ``fn``'s qualname).

        A normal return of ``fn`` ends the supervision (no restart), and so does
        `kernel.ShuttingDown` (the runtime refused or cancelled a call ``fn`` made because it
        is shutting down). Disposing the resource cancels the task at once, also while it
        waits to restart; cancellation is never a crash. Each crash is logged (WARNING, with
        the traceback), each restart (INFO, with the delay) and the final crash ("giving up",
        ERROR), with ``source`` = this scope's ``id``. Bad arguments raise
        TypeError/ValueError here, before anything starts.
        """
        supervisor = Supervisor.create(
            self.id, fn, args, name=name, restart=restart, reset_after=reset_after
        )
        self.nursery.start_soon(supervisor.run, name=supervisor.name)
