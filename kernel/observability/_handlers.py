"""loguru's handlers as the kernel sees them: which could print locals, and loguru's own.

loguru adds a handler of its own when it is imported (id 0, on ``sys.stderr``, with
``diagnose=True`` and ``backtrace=True``). `take_default` removes it and `restore_default`
puts an equivalent one back (``logger.add(stream)`` with loguru's defaults) on the same
stream; `default_handler_id` follows it across that round trip.

loguru has no public way to list its handlers or their options: `handlers` reads them from
its internals (``logger._core.handlers``; loguru 0.7) and returns ``None`` when they are not
what it expects, so that a caller can fail closed instead of guessing.
"""

from __future__ import annotations

import sys
from typing import Any

import attrs
from loguru import _defaults
from loguru import logger as _loguru

__all__ = ["HandlerInfo", "default_handler_id", "handlers", "restore_default", "take_default"]


@attrs.frozen
class HandlerInfo:
    """One loguru handler: its id, loguru's name of its sink, whether it prints the values
    of variables in tracebacks (``diagnose``), and its stream when the sink is one."""

    id: int
    sink: str
    diagnose: bool
    stream: Any = None


# loguru's default handler: id 0 when loguru added one at import (LOGURU_AUTOINIT), the id
# it got back from `restore_default`, or None once it is gone.
_default_id: int | None = 0 if _defaults.LOGURU_AUTOINIT else None


def handlers() -> list[HandlerInfo] | None:
    """Every handler of loguru's logger, or ``None`` when loguru's internals are unknown."""
    try:
        found = dict(_loguru._core.handlers)  # type: ignore[attr-defined]
        return [
            HandlerInfo(
                id=handler_id,
                sink=str(handler._name),
                diagnose=bool(handler._exception_formatter._diagnose),
                stream=getattr(handler._sink, "_stream", None),
            )
            for handler_id, handler in found.items()
        ]
    except (AttributeError, TypeError):
        return None


def default_handler_id() -> int | None:
    """The id of loguru's default handler while it is in place, else ``None``."""
    found = handlers()
    if found is not None and all(handler.id != _default_id for handler in found):
        return None
    return _default_id


def take_default() -> Any | None:
    """Remove loguru's default handler; return its stream (``sys.stderr`` when it cannot be
    read), or ``None`` when the default handler was not there."""
    global _default_id
    default_id, _default_id = _default_id, None
    if default_id is None:
        return None
    stream = next(
        (handler.stream for handler in handlers() or () if handler.id == default_id), None
    )
    try:
        _loguru.remove(default_id)
    except ValueError:  # removed already (``logger.remove()``)
        return None
    return sys.stderr if stream is None else stream


def restore_default(stream: Any) -> None:
    """Put loguru's default handler back on ``stream``, with loguru's default options."""
    global _default_id
    _default_id = _loguru.add(stream)
