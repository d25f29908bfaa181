"""`Entries`: what each task's open ``async with`` blocks of a primitive entered with."""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

__all__ = ["Entries"]

T = TypeVar("T")


class Entries(Generic[T]):
    """Per task, a stack of what its ``__aenter__`` calls returned (a permit, an
    admission), so that each ``__aexit__`` finds its own, innermost last."""

    __slots__ = ("_stacks",)

    def __init__(self) -> None:
        self._stacks: dict[trio.lowlevel.Task, list[T]] = {}

    def push(self, entry: T) -> None:
        """Remember ``entry`` for the current task's next ``__aexit__``."""
        self._stacks.setdefault(trio.lowlevel.current_task(), []).append(entry)

    def pop(self) -> T:
        """The current task's innermost entry, forgotten."""
        task = trio.lowlevel.current_task()
        stack = self._stacks[task]
        entry = stack.pop()
        if not stack:
            del self._stacks[task]
        return entry
