"""The durable engine's errors (all are `kernel.KernelError`).

::

    KernelError
     └── DurableError                   every error kernel.durable raises itself
          ├── NonDeterminismError       replay met a different step id than recorded
          ├── SerializationError        a step result or input is not JSON-serializable
          ├── CorruptRecordError        a stored row could not be read back
          ├── UnknownExecutionError     no execution has that id (also a KeyError)
          ├── UnknownWorkflowError      no registered workflow has that task id
          ├── WorkflowFailedError       `wait` on an execution that failed
          ├── WorkflowCancelledError    `wait` on an execution that was cancelled
          ├── CompensationFailedError   a compensation raised during `rollback`
          ├── WaitTimeoutError          `wait(timeout=)` gave up (also a TimeoutError)
          ├── LeaseLostError            a worker wrote to an execution it no longer owns
          └── StoreUnavailableError     the store's server could not be reached, or failed
"""

from __future__ import annotations

from kernel._errors import KernelError

__all__ = [
    "CompensationFailedError",
    "CorruptRecordError",
    "DurableError",
    "LeaseLostError",
    "NonDeterminismError",
    "SerializationError",
    "StoreUnavailableError",
    "UnknownExecutionError",
    "UnknownWorkflowError",
    "WaitTimeoutError",
    "WorkflowCancelledError",
    "WorkflowFailedError",
]


class DurableError(KernelError):
    """Base class of the errors raised by `kernel.durable`."""


class NonDeterminismError(DurableError):
    """On replay, the workflow reached a step id other than the one recorded there.

    The execution is marked ``failed``: its code changed under it (rename or reorder of
    steps). Ship a new workflow id for breaking changes instead.
    """

    def __init__(self, execution_id: str, position: int, expected: str, got: str) -> None:
        self.execution_id = execution_id
        self.position = position
        self.expected = expected
        self.got = got
        super().__init__(
            f"execution {execution_id!r}: non-deterministic replay at position {position}: "
            f"recorded step {expected!r}, but the workflow now reaches step {got!r}"
        )


class SerializationError(DurableError, TypeError):
    """A value to be stored (step result, input, payload) cannot be serialized to JSON."""


class CorruptRecordError(DurableError):
    """A stored row could not be read back; only its own execution fails.

    ``execution_id`` (when the row belongs to an execution) and ``columns`` (the columns
    whose values do not fit; empty when the fault is in a payload's content) say what.
    """

    def __init__(
        self,
        message: str,
        *,
        execution_id: str | None = None,
        columns: tuple[str, ...] = (),
    ) -> None:
        self.execution_id = execution_id
        self.columns = columns
        super().__init__(message)


class UnknownExecutionError(DurableError, KeyError):
    """No execution has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownWorkflowError(DurableError, LookupError):
    """No workflow (a task tagged ``kernel.durable.workflow``) has this id in the app."""


class WorkflowFailedError(DurableError):
    """The awaited execution ended ``failed`` or ``compensation_failed``.

    ``error`` is the stored description of the failure (type and message).
    """

    def __init__(self, execution_id: str, status: str, error: str | None) -> None:
        self.execution_id = execution_id
        self.status = status
        self.error = error
        super().__init__(f"execution {execution_id!r} {status.replace('_', ' ')}: {error}")


class WorkflowCancelledError(DurableError):
    """The awaited execution was cancelled."""


class WaitTimeoutError(DurableError, TimeoutError):
    """``wait(execution_id, timeout=)`` gave up before the execution ended."""


class CompensationFailedError(DurableError):
    """A compensation (``.down(...)``) raised while rolling back; the cause is chained."""


class LeaseLostError(DurableError):
    """A worker tried to write to an execution it no longer owns.

    Its lease expired and another worker claimed it, or it was cancelled. The run stops
    without writing anything more.
    """


class StoreUnavailableError(DurableError):
    """The store's server could not be reached, or the connection failed during a call
    (a server restart, a network cut); the driver's error is chained.

    Whether a write in flight was committed is unknown: the engine treats it as a passing
    failure of the store, never of the execution. A worker stops the run without writing
    more (its lease runs out, then a worker runs it again from its recorded steps) and
    keeps looking for work, backing off, until the store answers again.
    """
