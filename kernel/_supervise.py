"""`Supervisor`: the body of a task started by `Scope.supervise`, restarted when it crashes.

OTP-style supervision built on `resilience.Retry`: the restart policy *is* a Retry, and its own
``call`` decides every restart (attempts, ``on``, ``stop``, ``wait``, ``retry_after``,
``timeout``, ``fast_mode``), so supervision and retries can never disagree.

The rules:

- A *streak* is a sequence of consecutive crashes; attempt ``k`` is the ``k``-th run of the
  streak (1-based, as in the ``retry.attempt`` events). One streak is one ``Retry.call``: the
  ``k``-th crash waits the Retry's delay for attempt ``k``, then the task is started again;
  when the Retry gives up, its last exception propagates unchanged, as a trio child's does.
  The Retry's ``timeout`` is counted from the start of the streak.
- ``reset_after``: a run that lasted at least that many seconds before crashing was healthy:
  its crash opens a new streak, as its attempt 1 (the Retry's ``timeout`` then counts from
  that crash). With ``reset_after=None`` crashes accumulate over the task's whole life.
- A normal return of the task ends its supervision: it is not restarted.
- ``restart="never"``: the first crash propagates.
- ``trio.Cancelled`` (and any `BaseException` that is not an `Exception`) is never a crash: it
  stops the supervision at once, also during a backoff.
- `kernel.ShuttingDown` is not a crash either: the runtime refuses the task's calls because it
  is shutting down, so the supervision ends (logged at INFO) instead of restarting into more
  refusals.

Every crash is logged at WARNING with its traceback, every restart at INFO with the delay
waited, the end at ERROR ("giving up"), all with ``source=<resource id>`` and the ``task``
name, ``attempt`` (and ``delay``, ``error``) in the record's extra fields.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import attrs
import trio

from kernel._shutdown import ShuttingDown
from kernel.observability._logging import kernel_logger
from resilience import Retry, validate

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["Restart", "Supervisor"]

#: What ``Scope.supervise(restart=...)`` accepts.
Restart = Retry | Literal["never"]

_OWNER = "Scope.supervise"


def _reject(argument: str, message: str, exc: type[Exception] = ValueError) -> NoReturn:
    raise exc(f"{_OWNER}: {argument} {message}")


def _restart_policy(restart: object) -> Retry | None:
    if isinstance(restart, Retry):
        return restart
    if restart == "never":
        return None
    _reject("restart", f"must be an rs.Retry or 'never', got {restart!r}", TypeError)


def _reset_after(value: object, policy: Retry | None) -> float | None:
    if value is None:
        return None
    seconds = validate.seconds(value, owner=_OWNER, name="reset_after")
    if policy is None:
        _reject("reset_after", "needs restart=rs.Retry(...): with 'never' nothing restarts")
    return seconds


def _default_name(fn: Callable[..., object]) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


@attrs.define(eq=False)
class Supervisor:
    """One supervised task: runs ``fn(*args)`` and restarts it per its policy (see the module).

    Build it with `Supervisor.create`, which checks the arguments, then start `run` in a nursery.
    """

    fn: Callable[..., Awaitable[object]]
    args: tuple[Any, ...]
    name: str
    policy: Retry | None
    reset_after: float | None
    log: Logger
    _attempt: int = 0
    _crashed_at: float | None = None
    # The crash of a healthy run, raised again as attempt 1 of the streak it opens.
    _replay: Exception | None = None
    # Set when the runtime refused the task's call for shutting down: the supervision ends.
    _stopped: ShuttingDown | None = None

    @classmethod
    def create(
        cls,
        source: str,
        fn: Callable[..., Awaitable[object]],
        args: tuple[Any, ...],
        *,
        name: str | None,
        restart: object,
        reset_after: object,
    ) -> Supervisor:
        """Check the arguments of `Scope.supervise` (errors name them) and build the supervisor.

        ``source`` is the id of the resource owning the task; its logs carry it.
        """
        if not callable(fn):
            _reject("fn", f"must be an async callable, got {fn!r}", TypeError)
        if name is not None and not isinstance(name, str):
            _reject("name", f"must be a str or None, got {name!r}", TypeError)
        policy = _restart_policy(restart)
        return cls(
            fn,
            args,
            _default_name(fn) if name is None else name,
            policy,
            _reset_after(reset_after, policy),
            kernel_logger(source),
        )

    async def run(self) -> None:
        """Run the task until it returns, restarting it after crashes, or give up by raising.

        Cancellation propagates at once, whether the task is running or waiting to restart.
        """
        try:
            if self.policy is None:
                await self._run_once()
            else:
                while await self.policy.call(self._run_once):
                    pass  # a healthy run crashed: that crash opens a new streak
        except Exception as exc:
            self.log.error(
                "supervised task {task!r} crashed, giving up after {attempt} attempt(s): {error!r}",
                task=self.name,
                attempt=self._attempt,
                error=exc,
            )
            raise
        if self._stopped is not None:
            self.log.info(
                "supervised task {task!r} stopped ({error}); it is not restarted",
                task=self.name,
                error=self._stopped,
            )
            return
        self.log.info("supervised task {task!r} returned; it is not restarted", task=self.name)

    async def _run_once(self) -> bool:
        """One attempt of the current streak.

        Returns False when the task returned, True when a healthy run crashed (the streak
        ends; the crash is replayed as the next streak's attempt 1); raises its crash otherwise.
        """
        self._attempt += 1
        if self._replay is not None:
            failure, self._replay = self._replay, None
            raise failure
        if self._crashed_at is not None:
            self.log.info(
                "restarting supervised task {task!r} (attempt {attempt}) after {delay:g} s",
                task=self.name,
                attempt=self._attempt,
                delay=trio.current_time() - self._crashed_at,
            )
        started = trio.current_time()
        try:
            await self.fn(*self.args)
        except ShuttingDown as exc:
            self._stopped = exc
            return False
        except Exception as exc:
            self._crashed_at = now = trio.current_time()
            healthy = self.reset_after is not None and now - started >= self.reset_after
            if healthy:
                self._attempt = 1
            self.log.opt(exception=exc).warning(
                "supervised task {task!r} crashed (attempt {attempt}): {error!r}",
                task=self.name,
                attempt=self._attempt,
                error=exc,
            )
            if not healthy:
                raise
            self._attempt = 0
            self._replay = exc
            return True
        return False
