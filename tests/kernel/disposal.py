"""For the shutdown tests: resources whose value knows whether it was disposed, work that
uses one, outlasts any drain and writes down what it saw when it ended, and the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio
from loguru import logger

import kernel

__all__ = ["Handle", "chain", "messages", "using"]


@contextmanager
def messages(level: str = "INFO", prefix: str = "") -> Iterator[list[str]]:
    """The messages logged (at ``level`` or above, starting with ``prefix``) meanwhile."""
    seen: list[str] = []
    sink = logger.add(
        lambda m: seen.append(m.record["message"]),
        level=level,
        filter=lambda record: record["message"].startswith(prefix),
    )
    try:
        yield seen
    finally:
        logger.remove(sink)


class Handle:
    """A resource's value that knows whether it was disposed."""

    def __init__(self) -> None:
        self.disposed = False


def chain(
    log: list[str], *, prefix: str = "", timed: bool = False
) -> tuple[kernel.Resource, kernel.Resource, kernel.Resource]:
    """Resources ``a <- b <- c`` (ids ``prefix + "a"``...); each disposal is logged as
    ``dispose <id>`` (``at <time>`` when ``timed``)."""

    def lifecycle(name: str, deps: dict[str, Any] | None) -> kernel.Resource:
        @kernel.resource(prefix + name, deps=deps)
        async def res(**_: Any) -> Any:
            handle = Handle()
            yield handle
            handle.disposed = True
            at = f" at {trio.current_time():g}" if timed else ""
            log.append(f"dispose {prefix}{name}{at}")

        return res

    a = lifecycle("a", None)
    b = lifecycle("b", {"a": a})
    return a, b, lifecycle("c", {"b": b})


def using(
    log: list[str], what: str, *, ended: Callable[[], str] = lambda: ""
) -> Callable[..., Any]:
    """The body of work that uses ``c`` (its keyword): logs ``<what> started``, sleeps a
    minute, and in its ``finally`` logs ``<what> ended<ended()>, c disposed: <bool>``."""

    async def work(*_: Any, c: Handle) -> None:
        log.append(f"{what} started")
        try:
            await trio.sleep(60)
        finally:
            log.append(f"{what} ended{ended()}, c disposed: {c.disposed}")

    return work
