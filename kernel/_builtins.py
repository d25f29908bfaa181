"""Definitions every app has without registering them."""

from __future__ import annotations

from typing import Any

from loguru import logger as _loguru

from kernel._definitions import UNSET, Resource, event

__all__ = ["BUILTINS", "LOGGER_ID", "disposed", "disposing", "logger", "ready"]

LOGGER_ID = "kernel.logger"


async def _logger() -> Any:
    return _loguru


#: Depending on it injects a loguru logger bound with ``source=<the dependent's id>``.
logger = Resource(LOGGER_ID, _logger, None, None, UNSET, (), None)

#: Emitted once every resource is up.
ready = event("kernel.ready")
#: Emitted when the app starts shutting down, before any resource is disposed.
disposing = event("kernel.disposing")
#: Emitted after every resource was disposed.
disposed = event("kernel.disposed")

BUILTINS: tuple[object, ...] = (logger, ready, disposing, disposed)
