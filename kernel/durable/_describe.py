"""`Engine.describe`: the shape of a workflow, recorded without running any step body."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Literal, TypeAlias, TypeVar

import attrs

from kernel._definitions import Event
from kernel.durable._context import Context, RunEnv, StepBuilder
from kernel.durable._definitions import Branch, Signal
from kernel.durable._records import Execution
from resilience import validate

__all__ = ["FlowNode", "FlowShape", "Recorder"]

T = TypeVar("T")

NodeKind: TypeAlias = Literal["step", "sleep", "wait_for_signal", "emit", "switch", "note"]


@attrs.frozen
class FlowNode:
    """One durable operation of a workflow, in order. ``details`` depends on ``kind``:
    ``compensated`` (step), ``seconds`` (sleep), ``signal``/``timeout`` (wait_for_signal),
    ``event`` (emit), ``branches``/``default`` (switch), ``message`` (note)."""

    kind: NodeKind
    step_id: str
    details: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class FlowShape:
    """What `Engine.describe` returns: the workflow id and its nodes in order.

    Steps return None while describing; ``stopped`` holds the error when the body could
    not go on with that (the nodes up to there are still listed). Model conditional
    paths with ``ctx.switch`` for them to appear.
    """

    workflow: str
    nodes: tuple[FlowNode, ...]
    stopped: str | None = None


class Recorder(Context):
    """A context that records each durable operation as a `FlowNode` and runs nothing."""

    def __init__(self, env: RunEnv, workflow: str) -> None:
        super().__init__(env, Execution("describe", workflow, "null"), ())
        self.nodes: list[FlowNode] = []

    async def _step(self, builder: StepBuilder[T]) -> T:
        self.nodes.append(FlowNode("step", builder._id, {"compensated": builder._down is not None}))
        return None  # type: ignore[return-value]

    async def rollback(self) -> None:
        """Nothing to undo while describing."""

    async def sleep(self, seconds: float | timedelta, *, step_id: str | None = None) -> None:
        seconds = validate.seconds(seconds, owner="sleep", name="seconds", minimum="zero")
        self.nodes.append(FlowNode("sleep", self._auto_id("sleep", step_id), {"seconds": seconds}))

    async def wait_for_signal(  # type: ignore[override]
        self,
        signal: Signal[T],
        *,
        step_id: str | None = None,
        timeout: float | timedelta | None = None,
    ) -> None:
        details = {"signal": signal.id, "timeout": timeout}
        self.nodes.append(
            FlowNode("wait_for_signal", self._auto_id(f"signal:{signal.id}", step_id), details)
        )

    async def emit(self, event: Event, payload: Any = None, *, step_id: str | None = None) -> None:
        self.nodes.append(
            FlowNode("emit", self._auto_id(f"emit:{event.id}", step_id), {"event": event.id})
        )

    async def switch(
        self,
        switch_id: str,
        value: Any,
        branches: Iterable[Branch[T]],
        default: Branch[T] | None = None,
        *,
        returns: Any = None,
    ) -> T:
        details = {
            "branches": [branch.id for branch in branches],
            "default": default.id if default is not None else None,
        }
        self.nodes.append(FlowNode("switch", switch_id, details))
        return None  # type: ignore[return-value]

    async def note(self, message: str, meta: Mapping[str, Any] | None = None) -> None:
        self.nodes.append(FlowNode("note", self._auto_id("note", None), {"message": message}))
