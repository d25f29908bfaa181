"""``mw.log()``: one log record per call, with its outcome and duration, through loguru."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio
from loguru import logger as _loguru

from middleware._call import Call, Next
from middleware._pipeline import Bound

__all__ = ["log"]

LoggerFactory = Callable[[str], Any]


def _default_logger(source: str) -> Any:
    return _loguru.bind(source=source)


def _level(value: str, name: str) -> str:
    level = value.upper()
    try:
        _loguru.level(level)
    except ValueError:
        raise ValueError(f"mw.log: {name} must be a loguru level name, got {value!r}") from None
    return level


@attrs.frozen
class _Log:
    level: str
    error_level: str
    logger_for: LoggerFactory

    def bind(self, target_id: str) -> Bound:
        log = self.logger_for(target_id)
        level, error_level = self.level, self.error_level

        async def middleware(call: Call, next: Next) -> Any:
            start = trio.current_time()
            try:
                result = await next(call)
            except Exception as exc:
                ms = (trio.current_time() - start) * 1000.0
                log.bind(data=_data(call, "error", ms)).opt(exception=exc).log(
                    error_level, "{} failed after {:.1f} ms: {!r}", target_id, ms, exc
                )
                raise
            except BaseException:
                ms = (trio.current_time() - start) * 1000.0
                log.bind(data=_data(call, "cancelled", ms)).log(
                    level, "{} cancelled after {:.1f} ms", target_id, ms
                )
                raise
            ms = (trio.current_time() - start) * 1000.0
            log.bind(data=_data(call, "success", ms)).log(
                level, "{} succeeded in {:.1f} ms", target_id, ms
            )
            return result

        return Bound(middleware)


def _data(call: Call, outcome: str, ms: float) -> dict[str, Any]:
    data: dict[str, Any] = {"outcome": outcome, "duration_ms": round(ms, 3)}
    for key in ("attempt", "cache_hit"):
        if key in call.state:
            data[key] = call.state[key]
    return data


def log(
    *,
    level: str = "DEBUG",
    error_level: str = "ERROR",
    logger: LoggerFactory | None = None,
) -> _Log:
    """Log every call: its outcome (success, error, cancelled) and duration.

    Successes and cancellations at ``level``, failures at ``error_level`` with the
    exception. Records carry ``source`` = the function's id and ``data`` = outcome,
    duration_ms, and the attempt count and cache hit when `mw.retry` / `mw.cache` run
    inside. ``logger(source)`` makes the logger (default: loguru's, bound to ``source``);
    loguru drops records no sink wants, so with no sink at that level it costs little.
    """
    return _Log(
        _level(level, "level"), _level(error_level, "error_level"), logger or _default_logger
    )
