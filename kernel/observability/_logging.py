"""Structured logs through loguru: `LogConfig`, `install`, `kernel_logger`, `execution_id`.

``install(LogConfig(format="json"))`` adds one loguru handler writing one JSON object per
line, with exactly the keys ``timestamp`` (ISO 8601, UTC, milliseconds, ``Z``), ``level``
(lower-case), ``source`` (the record's bound ``source``, else the logging module's name),
``message``, ``data`` (the record's ``data``, redacted; ``{}`` when none; a value that is
not a mapping is put under ``{"value": ...}``), ``error`` (``type``, ``message``, ``stack``
when the record carries an exception, else ``null``) and ``context`` (``execution_id``,
``trace_id``, ``span_id``, each ``null`` when unknown). ``format="pretty"`` is for humans.

Structured data: ``log.info("msg", data={...})`` and ``log.bind(data={...}).info("msg")``
both land under ``data``. As with any loguru call, keyword arguments also format the
message (``str.format``): with ``data=`` passed that way, literal braces in the message
are doubled (``{{``) — or use ``bind(data=...)``, which leaves the message alone. Other
keyword arguments and bound values stay out of the JSON line.

Redaction happens twice, so that no secret reaches any sink. Loggers from `kernel_logger`
(everything the kernel logs, and the ``kernel.logger`` resource) redact every record —
its ``extra`` at any depth, its message text, and its exception, which becomes a
`RedactedTraceback` (the standard traceback as redacted text, with no frames left to print
the locals of; see `kernel.observability._tracebacks`) — with the active policy before
loguru hands it to any handler: the user's own, and loguru's default one, whatever their
``diagnose`` and ``backtrace``. With ``Redaction.off()`` records are left as they are. The
handler `install` adds also redacts what it writes (data, message, error), and never
prints locals, so the user's own loguru records are redacted in its output too.

While a config is installed, loguru's own default handler (``sys.stderr``, ``diagnose=True``)
is removed, and put back when the last one is removed: it would print every record a second
time, and the locals of the exceptions of records the kernel did not make. Every other
handler is left alone. Silence library logs with the level or ``logger.disable("kernel")``.

``task_failures`` is the level at which `log_task_failure` records a task's failure on its
way to the caller of ``rt.run_task`` (``None``: not at all); DEBUG by default, because the
exception reaches the caller, who decides whether it is an incident.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import attrs
from loguru import logger as _loguru

from kernel._redaction import REDACTED, Redaction, safe_repr
from kernel.observability._handlers import restore_default, take_default
from kernel.observability._tracebacks import (
    RedactedTraceback,
    redact_exception,
    safe_str,
    type_name,
)

if TYPE_CHECKING:
    from loguru import Logger, Record

__all__ = [
    "Installed",
    "LogConfig",
    "active_redaction",
    "current_context",
    "execution_id",
    "install",
    "kernel_logger",
    "log_task_failure",
    "optional_level",
    "redact_record",
]

#: The id of the durable execution the current task belongs to (JSON ``context``).
execution_id: ContextVar[str | None] = ContextVar("trio_runner_execution_id", default=None)

_FORMATS: Final = ("json", "pretty")
# The formatter leaves its rendering in the record under this key (a top-level key, so that
# other handlers' ``{extra}`` never shows it); the handler's constant format reads it back.
_SLOT: Final = "trio_runner"
_JSON_FORMAT: Final = "{trio_runner}"
_PRETTY_FORMAT: Final = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
    "<cyan>{trio_runner[source]: <20}</cyan> | <level>{trio_runner[message]}</level>"
    "{trio_runner[details]}"
)
_INDENT: Final = "    "
_DEFAULT_POLICY: Final = Redaction()
_DEFAULT_TASK_FAILURES: Final = "DEBUG"
_installed: list[Installed] = []
# The stream of loguru's default handler while installed configs keep it removed.
_held_default: list[Any] = []


def active_redaction() -> Redaction:
    """The policy `kernel_logger` records are redacted with: the latest `install`'s that is
    still in place, else the default `Redaction()`."""
    return _installed[-1].config.redact if _installed else _DEFAULT_POLICY


def redact_record(record: Record, policy: Redaction) -> None:
    """Redact ``record`` in place with ``policy``: its extra (fail closed), its message, and
    its exception, replaced by a `RedactedTraceback` (no traceback left to walk)."""
    if not policy.enabled:
        return
    extra = record["extra"]
    try:
        record["extra"] = policy.redact(extra)
    except Exception:
        record["extra"] = {
            key: value if key == "source" else REDACTED for key, value in extra.items()
        }
    record["message"] = policy.redact_text(record["message"])
    exception = record["exception"]
    if exception is not None and exception.value is not None:
        value = exception.value
        if not isinstance(value, RedactedTraceback):
            value = redact_exception(value, policy)
        record["exception"] = exception._replace(value=value, traceback=None)


def _redact_record(record: Record) -> None:
    """loguru patcher of the kernel's loggers: `redact_record` with the active policy."""
    redact_record(record, active_redaction())


def kernel_logger(source: str) -> Logger:
    """A loguru logger bound to ``source`` whose records are redacted before any sink.

    The kernel logs through these (``source`` = the task, resource or hook id), and the
    ``kernel.logger`` resource is one.
    """
    return _loguru.bind(source=source).patch(_redact_record)


def log_task_failure(task_id: str, exc: Exception, *, depth: int = 1) -> None:
    """Record that task ``task_id`` raised ``exc`` (on its way to the caller), at the
    latest installed config's ``task_failures`` level (DEBUG when none is installed).

    ``depth``: how many frames up the record's function and line are taken from (1: the
    caller of this function)."""
    level = _installed[-1].config.task_failures if _installed else _DEFAULT_TASK_FAILURES
    if level is not None:
        # The record names the caller's line (run_task's), as a direct call would.
        kernel_logger(task_id).opt(depth=depth, exception=exc).log(level, "task failed: {}", exc)


# ---------------------------------------------------------------------- configuration


def _level_name(value: Any) -> Any:
    """attrs converter: a level name as loguru spells it (``"info"`` -> ``"INFO"``)."""
    if isinstance(value, str) and not _is_level(value) and _is_level(value.upper()):
        return value.upper()
    return value


def _is_level(name: str) -> bool:
    try:
        _loguru.level(name)
    except ValueError:
        return False
    return True


def _check_level(instance: LogConfig, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"LogConfig: level must be a level name (a str), got {value!r}")
    if not _is_level(value):
        raise ValueError(
            "LogConfig: level must be a loguru level name (TRACE, DEBUG, INFO, SUCCESS, "
            f"WARNING, ERROR, CRITICAL or a custom one), got {value!r}"
        )


def optional_level(owner: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator: ``None`` or a loguru level name; errors name ``owner`` and the
    field."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise TypeError(
                f"{owner}: {attribute.name} must be a level name or None, got {value!r}"
            )
        if not _is_level(value):
            raise ValueError(
                f"{owner}: {attribute.name} must be a loguru level name or None, got {value!r}"
            )

    return check


def _check_format(instance: LogConfig, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in _FORMATS:
        raise ValueError(f"LogConfig: format must be 'json' or 'pretty', got {value!r}")


def _check_sink(instance: LogConfig, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, str | os.PathLike | logging.Handler) or callable(value):
        return
    if callable(getattr(value, "write", None)):
        return
    raise TypeError(
        "LogConfig: sink must be a file-like object, a path, a callable or a logging.Handler, "
        f"got {value!r}"
    )


def _to_redaction(value: Redaction | bool) -> Any:
    """attrs converter: ``True`` -> ``Redaction()``, ``False`` -> ``Redaction.off()``."""
    if value is True:
        return Redaction()
    if value is False:
        return Redaction.off()
    return value


def _check_redaction(instance: LogConfig, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Redaction):
        raise TypeError(f"LogConfig: redact must be a Redaction or a bool, got {value!r}")


@attrs.frozen(kw_only=True)
class LogConfig:
    """How the app's logs are written: ``kernel.run(app, log=LogConfig(...))``.

    ``format`` is ``"json"`` (one object per line) or ``"pretty"`` (for a terminal);
    ``level`` a loguru level name, any case; ``sink`` anything ``loguru.logger.add``
    takes (a file-like object, a path, a callable; ``sys.stderr`` by default); ``redact``
    a `Redaction`, ``True`` (the default policy) or ``False`` (nothing redacted, and the
    kernel's records keep their live exceptions). ``task_failures`` is the level at which a
    task's failure is logged, with its redacted traceback, as it propagates to the caller
    of ``rt.run_task`` (``"DEBUG"`` by default: the caller has the exception and decides;
    ``"ERROR"`` logs every failure as an incident; ``None``: not logged). Like ``redact``,
    it applies to the whole process while this is the latest config installed.
    """

    format: Literal["json", "pretty"] = attrs.field(default="pretty", validator=_check_format)
    level: str = attrs.field(default="INFO", converter=_level_name, validator=_check_level)
    sink: Any = attrs.field(factory=lambda: sys.stderr, validator=_check_sink)
    redact: Redaction = attrs.field(
        factory=Redaction, converter=_to_redaction, validator=_check_redaction
    )
    task_failures: str | None = attrs.field(
        default=_DEFAULT_TASK_FAILURES, converter=_level_name, validator=optional_level("LogConfig")
    )


@attrs.define(eq=False)
class Installed:
    """The handler `install` added; `remove` takes it (and its redaction policy) away."""

    config: LogConfig
    handler_id: int
    _removed: bool = attrs.field(default=False, init=False)

    def remove(self) -> None:
        """Remove the handler and restore the previous active policy; the last one removed
        puts loguru's default handler back if it took it. Idempotent."""
        if self._removed:
            return
        self._removed = True
        _installed.remove(self)
        try:
            _loguru.remove(self.handler_id)
        except ValueError:
            # Someone removed every handler (``logger.remove()``): loguru's default too.
            _held_default.clear()
        if not _installed and _held_default:
            restore_default(_held_default.pop())

    def __enter__(self) -> Installed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def install(config: LogConfig) -> Installed:
    """Add one loguru handler writing ``config.format`` to ``config.sink`` at
    ``config.level`` and up, and make ``config.redact`` the active policy.

    loguru's default handler is removed until the last installed config is (see the module
    docstring); the user's handlers are left alone. The handler's ``format`` is a function
    that renders the record into one of its keys and returns a constant template reading it
    back — the loguru idiom for custom serialisation: the text is never parsed for colour
    markup or braces, and the template is compiled once.
    """
    terminator = "" if isinstance(config.sink, logging.Handler) else "\n"
    formatter = _Formatter(config.format, config.redact, terminator)
    handler_id = _loguru.add(
        config.sink,
        level=config.level,
        format=formatter,
        colorize=False if config.format == "json" else None,
        backtrace=False,
        diagnose=False,  # loguru's variable dumps would bypass redaction
    )
    if not _held_default:
        stream = take_default()
        if stream is not None:
            _held_default.append(stream)
    installed = Installed(config, handler_id)
    _installed.append(installed)
    return installed


# ---------------------------------------------------------------------- rendering


@attrs.frozen
class _Formatter:
    """loguru ``format`` function of an installed handler."""

    format: str
    policy: Redaction
    terminator: str

    def __call__(self, record: Record) -> str:
        slots = cast(dict[str, Any], record)
        if self.format == "json":
            slots[_SLOT] = json.dumps(self.fields(record), separators=(",", ":"))
            return _JSON_FORMAT + self.terminator
        slots[_SLOT] = self.pretty(record)
        return _PRETTY_FORMAT + self.terminator

    def fields(self, record: Record) -> dict[str, Any]:
        """The JSON object of one record."""
        return {
            "timestamp": _timestamp(record["time"]),
            "level": record["level"].name.lower(),
            "source": _source(record),
            "message": self.policy.redact_text(record["message"]),
            "data": self.data(record["extra"].get("data")),
            "error": self.error(record),
            "context": current_context(),
        }

    def pretty(self, record: Record) -> dict[str, str]:
        """The parts of the pretty line: source, message, and the indented lines below."""
        lines: list[str] = []
        data = self.data(record["extra"].get("data"))
        if data:
            lines.append(f"data: {json.dumps(data, ensure_ascii=False)}")
        context = {key: value for key, value in current_context().items() if value is not None}
        if context:
            lines.append("context: " + " ".join(f"{k}={v}" for k, v in context.items()))
        error = self.error(record)
        if error is not None:
            lines.append(f"error: {error['type']}: {error['message']}")
            lines.extend(f"  {line}" for line in error["stack"].rstrip("\n").split("\n"))
        return {
            "source": _source(record),
            "message": self.policy.redact_text(record["message"]),
            "details": "".join(f"\n{_INDENT}{line}" for line in lines),
        }

    def data(self, data: Any) -> Any:
        """The record's ``data``, redacted (fail closed) and made JSON-safe."""
        if data is None:
            return {}
        try:
            redacted = self.policy.redact(data)
        except Exception:
            redacted = REDACTED
        if not isinstance(redacted, Mapping):
            redacted = {"value": redacted}
        try:
            return _jsonable(redacted, self.policy, set())
        except Exception:
            return {"value": f"<unrenderable {type(data).__name__}>"}

    def error(self, record: Record) -> dict[str, str] | None:
        """``type``, ``message`` and ``stack`` of the record's exception, redacted."""
        exception = record["exception"]
        if exception is None or exception.type is None:
            return None
        value = exception.value
        if isinstance(value, RedactedTraceback):  # a kernel record's: redacted already
            name, message, stack = value.type_name, value.message, value.stack
        else:
            name, message = type_name(exception.type), safe_str(value)
            stack = "".join(traceback.format_exception(exception.type, value, exception.traceback))
        return {
            "type": name,
            "message": self.policy.redact_text(message),
            "stack": self.policy.redact_text(stack),
        }


def _timestamp(time: datetime) -> str:
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{time.microsecond // 1000:03d}Z"


def _source(record: Record) -> str:
    source = record["extra"].get("source")
    if source is None:
        source = record["name"] or "unknown"
    return str(source)


def current_context() -> dict[str, str | None]:
    """Execution id, and the current OpenTelemetry span's ids when it is a valid one.

    OpenTelemetry is looked up in ``sys.modules``: a span can only be current when
    ``opentelemetry.trace`` was imported, and logging never imports it.
    """
    trace_id = span_id = None
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            trace_id = format(span_context.trace_id, "032x")
            span_id = format(span_context.span_id, "016x")
    return {"execution_id": execution_id.get(), "trace_id": trace_id, "span_id": span_id}


def _jsonable(value: Any, policy: Redaction, path: set[int]) -> Any:
    """``value`` as JSON types: containers become objects and arrays (a container met again
    on its own path becomes ``"[Circular]"``), other values their redacted ``repr``."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if not isinstance(value, Mapping | list | tuple | set | frozenset):
        return policy.redact_text(safe_repr(value))
    if id(value) in path:
        return "[Circular]"
    path.add(id(value))
    try:
        if isinstance(value, Mapping):
            return {
                key if isinstance(key, str) else policy.redact_text(safe_repr(key)): _jsonable(
                    item, policy, path
                )
                for key, item in value.items()
            }
        return [_jsonable(item, policy, path) for item in value]
    finally:
        path.discard(id(value))
