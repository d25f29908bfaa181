"""Definitions every app has without registering them."""

from __future__ import annotations

from typing import Any

from kernel._definitions import UNSET, Resource, event
from kernel.observability._logging import kernel_logger

__all__ = ["BUILTINS", "LOGGER_ID", "disposed", "disposing", "logger", "ready"]

LOGGER_ID = "kernel.logger"


async def _logger() -> Any:
    return kernel_logger(LOGGER_ID)


#: Depending on it injects a loguru logger bound with ``source=<the dependent's id>``.
logger = Resource(LOGGER_ID, _logger, None, None, UNSET, (), None)

#: Emitted once every resource is up.
ready = event("kernel.ready")
#: Emitted when the app starts shutting down, before any resource is disposed.
disposing = event("kernel.disposing")
#: Emitted after every resource was disposed.
disposed = event("kernel.disposed")

BUILTINS: tuple[object, ...] = (logger, ready, disposing, disposed)
