"""What users declare: the workflow tag, signals, switch branches, signal-wait results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, Literal, TypeVar

import attrs

from kernel._definitions import Tag, TagUse, _check_id, tag

__all__ = [
    "WORKFLOW",
    "Branch",
    "Signal",
    "SignalResult",
    "WorkflowConfig",
    "signal",
    "workflow",
]

T = TypeVar("T")


@attrs.frozen
class WorkflowConfig:
    """What ``kernel.durable.workflow(...)`` attaches to a task.

    ``category`` groups workflows for tooling; ``defaults`` is the input `Engine.describe`
    uses when it is given none.
    """

    category: str | None = None
    defaults: Any = None


#: The tag that makes a task a durable workflow (discovered by `Engine.workflows`).
WORKFLOW: Final[Tag] = tag("kernel.durable.workflow", config=WorkflowConfig)


def workflow(*, category: str | None = None, defaults: Any = None) -> TagUse:
    """Tag a task as a durable workflow: ``tags=[kernel.durable.workflow()]``.

    The task takes its input as its one positional argument and gets the engine's context
    with ``engine.context()``. Only tagged tasks can be started by an engine.
    """
    if category is not None and not isinstance(category, str):
        raise TypeError(f"kernel.durable.workflow: category must be a str, got {category!r}")
    return WORKFLOW.with_config(WorkflowConfig(category, defaults))


@attrs.frozen(eq=False)
class Signal(Generic[T]):
    """A named message an execution can wait for (``ctx.wait_for_signal(approved)``).

    With ``payload`` (an attrs class) the sent payload is checked against it when sent and
    structured into it when received.
    """

    id: str
    payload: type[T] | None = None


def signal(id: str, *, payload: type[T] | None = None) -> Signal[T]:
    """Declare a signal: ``approved = durable.signal("order.approved", payload=Approval)``."""
    _check_id("kernel.durable.signal", id)
    if payload is not None and not (isinstance(payload, type) and attrs.has(payload)):
        raise TypeError(
            f"kernel.durable.signal {id!r}: payload must be an attrs class or None, got {payload!r}"
        )
    return Signal(id, payload)  # type: ignore[arg-type]


@attrs.frozen
class SignalResult(Generic[T]):
    """What ``wait_for_signal(..., timeout=)`` returns: the signal, or the timeout."""

    kind: Literal["signal", "timeout"]
    payload: T | None = None


@attrs.frozen
class Branch(Generic[T]):
    """One arm of ``ctx.switch``: taken when ``match(value)`` is true; ``run(value)`` is its
    body, whose result is persisted. A default branch has no ``match``."""

    id: str
    run: Callable[[Any], Awaitable[T]]
    match: Callable[[Any], bool] | None = None
