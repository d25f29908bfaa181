"""Which failures the runtime reports, once each, and with what tags: `Failures`.

The runtime reports its *unexpected* failures to a `Reporter` (the Sentry client of
`kernel.observability._sentry`; a recorder in tests). Where they are caught:

- **Boundaries**: a task call (around its pipeline, outside every middleware: a retried
  failure is seen once, when the retry gives up), a hook run, and a durable execution's
  attempt. A failure leaving a boundary is reported there, unless an *enclosing* boundary
  will see it: a nested injected task's failure, propagating through its caller, is
  reported once by the caller's boundary (the same exception object), and not at all when
  the caller handles it. A durable attempt reports nothing itself: the worker
  reports the execution's failure once, when it is final (`ExecutionWatch.failed`).
- **Ends of the line**: a resource's init, dispose and background work (its
  ``scope.nursery``) fail where nobody else will see it: reported at once.

An enclosing boundary "will see" a failure when it is still running and the failing trio task
is its own, or was started in a nursery opened inside it; work started in a nursery opened
before it (a resource's ``scope.nursery``) is not enclosed, even while it runs.

A failure is reported with the tags of every boundary it went through, the innermost winning
(``runner.task.id`` names the task that raised, not its caller), ``runner.kind`` of the
boundary that reported it, the ambient request, execution and trace ids, and its path
(innermost first: ``["task shop.charge", "task shop.checkout"]``, at most `MAX_PATH` of
them). The exception object remembers where it went (an attribute of its own) so that it is
reported at most once, whichever boundaries it reaches; an exception group counts as
reported when every unexpected exception in it is.

Expected failures are never reported (`EXPECTED`, plus a config's ``ignore``): a group is
unexpected when any exception in it is.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any, Final, Protocol

import attrs
import trio

import middleware as mw
import resilience as rs
from kernel._errors import ConfigError, PublicError
from kernel._shutdown import ShuttingDown
from kernel.observability._logging import current_context, kernel_logger

__all__ = [
    "EXPECTED",
    "MAX_PATH",
    "ExecutionWatch",
    "Failures",
    "Label",
    "Reporter",
    "execution_watch",
]

#: Failures that are not the app's: errors meant for the caller (`kernel.PublicError`), a
#: call refused or cut short by a shutdown (`kernel.ShuttingDown`), input that does not fit
#: its type (`kernel.ConfigError`), and rejections by design of the resilience primitives
#: (open circuit, rate limit, full bulkhead: the failures that opened the circuit were
#: reported). Cancellation, and every other ``BaseException`` that is not an ``Exception``
#: (``KeyboardInterrupt``, ``SystemExit``), is never a failure.
EXPECTED: Final[tuple[type[Exception], ...]] = (
    PublicError,
    ShuttingDown,
    ConfigError,
    rs.CircuitOpen,
    rs.RateLimited,
    rs.BulkheadFull,
)

_TRAIL: Final = "_trio_runner_trail"
#: The most boundaries a trail remembers (an exception object raised over and over, and
#: handled each time, must not grow one without end).
MAX_PATH: Final = 32


class Reporter(Protocol):
    """Sends one failure somewhere; never raises."""

    def report(self, error: BaseException, tags: Mapping[str, str], path: Sequence[str]) -> None:
        """Report ``error`` with ``tags`` and the boundaries it went through (``path``)."""


@attrs.frozen
class Label:
    """One boundary a failure went through: its kind, how the path names it, its tags."""

    kind: str
    text: str
    tags: Mapping[str, str]


class _Trail:
    """What one exception remembers: the boundaries it left, and whether it was reported."""

    __slots__ = ("labels", "reported")

    def __init__(self) -> None:
        self.labels: list[Label] = []
        self.reported = False

    def __reduce__(self) -> tuple[Any, ...]:
        # A pickled exception (sent to another process) starts afresh there.
        return (_Trail, ())


def _known(error: BaseException) -> _Trail | None:
    trail = getattr(error, _TRAIL, None)
    return trail if isinstance(trail, _Trail) else None


def _trail(error: BaseException) -> _Trail:
    """``error``'s trail, made on first use (on the exception itself, past a frozen class's
    ``__setattr__``; every exception has a ``__dict__``)."""
    trail = _known(error)
    if trail is None:
        trail = _Trail()
        object.__setattr__(error, _TRAIL, trail)
    return trail


def _unexpected(error: BaseException, expected: tuple[type[BaseException], ...]) -> list[Exception]:
    """The unexpected exceptions in ``error`` (itself, or the leaves of a group)."""
    if isinstance(error, BaseExceptionGroup):
        found: list[Exception] = []
        for inner in error.exceptions:
            found.extend(_unexpected(inner, expected))
        return found
    if isinstance(error, Exception) and not isinstance(error, expected):
        return [error]
    return []


class _Frame:
    """A boundary while it runs, as the boundaries inside it see it."""

    __slots__ = ("active", "depth", "task")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        #: Nurseries its task had open when it started: work started in those is not inside.
        self.depth = len(task.child_nurseries)
        self.active = True

    def encloses(self) -> bool:
        """Whether a failure raised by the current trio task reaches this boundary."""
        if not self.active:
            return False
        task = trio.lowlevel.current_task()
        while task is not self.task:
            nursery = task.parent_nursery
            if nursery is None:
                return False
            parent = nursery.parent_task
            if parent is self.task:
                return parent.child_nurseries.index(nursery) >= self.depth
            task = parent
        return True


_current: ContextVar[_Frame | None] = ContextVar("trio_runner_failure_boundary", default=None)
_current_task: Final = trio.lowlevel.current_task


async def _watched(
    failures: Failures | None, label: Label, fn: Callable[..., Awaitable[Any]], /, *args: Any
) -> Any:
    """``await fn(*args)`` as the boundary ``label``: a frame for the boundaries inside, and
    its failure handed to `Failures.failed` on the way out (``failures=None``: a frame only,
    reporting nothing). A checkpoint whenever ``fn`` is; everything propagates unchanged.
    (Inline, not a context manager: it runs around every task call.)"""
    frame = _Frame(_current_task())
    token = _current.set(frame)
    try:
        return await fn(*args)
    except BaseException as error:
        if failures is not None:
            enclosing = token.old_value
            failures.failed(error, None if enclosing is Token.MISSING else enclosing, label)
        raise
    finally:
        frame.active = False
        _current.reset(token)


def _task_label(task_id: str) -> Label:
    return Label("task", f"task {task_id}", {"runner.task.id": task_id})


class _TaskBoundary:
    """The boundary as a middleware (first after tracing's, so inside the task's span)."""

    __slots__ = ("failures", "label")

    def __init__(self, failures: Failures, label: Label) -> None:
        self.failures = failures
        self.label = label

    def __call__(self, call: mw.Call, next: mw.Next) -> Awaitable[Any]:
        return _watched(self.failures, self.label, next, call)


@attrs.frozen
class _TaskBoundaries:
    """`mw.Factory` of `_TaskBoundary`: the label is made once per task."""

    failures: Failures

    def bind(self, target_id: str) -> mw.Bound:
        return mw.Bound(_TaskBoundary(self.failures, _task_label(target_id)))


def _request_id() -> str | None:
    """The HTTP request being served, if any (the exposure's context variable; looked up in
    ``sys.modules``: without the exposure loaded there is no request)."""
    exposure = sys.modules.get("kernel.exposure")
    variable = getattr(exposure, "request_id", None)
    return None if variable is None else variable.get()


class Failures:
    """Finds the runtime's unexpected failures and hands each to ``reporter`` once (see the
    module docstring). ``ignore``: more exception types never to report."""

    def __init__(self, reporter: Reporter, *, ignore: Iterable[type[BaseException]] = ()) -> None:
        self._reporter = reporter
        self._expected: tuple[type[BaseException], ...] = (*EXPECTED, *ignore)

    # ------------------------------------------------------------------ boundaries

    def task(self, task_id: str, runner: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        """``runner`` (a task's pipeline, or its bare body) inside the task boundary: call it
        with the task's arguments. Keeps what ``runner`` exposes (``.breaker``, ...)."""
        watched = functools.partial(_watched, self, _task_label(task_id), runner)
        watched.__dict__.update(getattr(runner, "__dict__", {}))
        return watched

    def middleware(self) -> mw.Factory:
        """The task boundary as a middleware, to put in the app policy right after the
        tracing middleware (so that a report carries the task span's trace id) and before
        every other one; `task` does the same without a pipeline."""
        return _TaskBoundaries(self)

    def hook(
        self, call: Callable[[Any], Awaitable[Any]], hook_id: str
    ) -> Callable[[Any], Awaitable[Any]]:
        """``call`` (a hook's, taking the emission) inside a hook boundary."""
        labels: dict[str, Label] = {}

        def watched(emission: Any) -> Awaitable[Any]:
            event_id = emission.event.id
            label = labels.get(event_id)
            if label is None:
                tags = {"runner.hook.id": hook_id, "runner.event.id": event_id}
                label = labels[event_id] = Label("hook", f"hook {hook_id} on {event_id}", tags)
            return _watched(self, label, call, emission)

        return watched

    def resource_failed(self, resource_id: str, phase: str, error: BaseException) -> None:
        """Report that resource ``resource_id``'s ``phase`` (``init``, ``dispose``,
        ``background``) failed with ``error``: nobody above will."""
        label = Label(
            f"resource.{phase}",
            f"resource {resource_id} ({phase})",
            {"runner.resource.id": resource_id},
        )
        self.failed(error, None, label)

    def attach(self, runtime: object) -> None:
        """Make these the failures `execution_watch` finds for ``runtime``."""
        _attached[runtime] = self

    # ------------------------------------------------------------------ deciding

    def failed(self, error: BaseException, enclosing: _Frame | None, label: Label) -> None:
        """``error`` left the boundary ``label`` (inside ``enclosing``, if any): remember
        the boundary, and report it unless it is expected or ``enclosing`` will see it."""
        unexpected = _unexpected(error, self._expected)
        if not unexpected:
            return
        trail = _trail(error)
        if trail.reported:  # raised again after its report: nothing more to say
            return
        if not trail.labels and error is not unexpected[0]:
            # A group made on the way (a nursery's): it went where its first exception went.
            first = _known(unexpected[0])
            if first is not None:
                trail.labels.extend(first.labels)
        if len(trail.labels) < MAX_PATH:
            trail.labels.append(label)
        else:  # the boundary it leaves now is the one that counts
            trail.labels[-1] = label
        if enclosing is not None and enclosing.encloses():
            return
        self._report(error, unexpected, trail)

    def _report(self, error: BaseException, unexpected: list[Exception], trail: _Trail) -> None:
        if trail.reported or all(_trail(exc).reported for exc in unexpected):
            return
        trail.reported = True
        for exc in unexpected:
            _trail(exc).reported = True
        tags: dict[str, str] = {}
        for label in reversed(trail.labels):
            tags.update(label.tags)  # the innermost boundary's ids win
        tags["runner.kind"] = trail.labels[-1].kind
        context = current_context()
        request_id = _request_id()
        if request_id is not None:
            tags["runner.request.id"] = request_id
        if context["execution_id"] is not None:
            tags.setdefault("runner.execution.id", context["execution_id"])
        if context["trace_id"] is not None:
            tags["runner.trace.id"] = context["trace_id"]
        path = [label.text for label in trail.labels]
        try:
            self._reporter.report(error, tags, path)
        except Exception as exc:  # a reporter must not fail the call it reports on
            kernel_logger("kernel.errors").warning("error tracking: report failed: {}", exc)


_attached: weakref.WeakKeyDictionary[object, Failures] = weakref.WeakKeyDictionary()


class ExecutionWatch:
    """A durable execution's failures: ``await watch.attempt(fn, *args)`` runs its body once
    (failures inside are the execution's, reported by it), ``watch.failed(exc)`` when the
    execution fails for good. Does nothing when the runtime has no error tracking."""

    __slots__ = ("_failures", "_label")

    def __init__(self, failures: Failures | None, execution_id: str, workflow_id: str) -> None:
        self._failures = failures
        self._label = Label(
            "execution",
            f"execution {execution_id} of {workflow_id}",
            {"runner.execution.id": execution_id, "runner.workflow.id": workflow_id},
        )

    async def attempt(self, fn: Callable[..., Awaitable[Any]], /, *args: Any) -> Any:
        """``await fn(*args)`` inside a boundary that reports nothing itself: the
        boundaries inside defer to it. A checkpoint whenever ``fn`` is."""
        return await _watched(None, self._label, fn, *args)

    def failed(self, error: BaseException) -> None:
        """The execution ended ``failed`` (or ``compensation_failed``) with ``error``."""
        if self._failures is not None:
            self._failures.failed(error, None, self._label)


def execution_watch(runtime: object, execution_id: str, workflow_id: str) -> ExecutionWatch:
    """The `ExecutionWatch` of one execution run by ``runtime``'s durable worker."""
    return ExecutionWatch(_attached.get(runtime), execution_id, workflow_id)
