"""Structuring outside data (config dicts, payloads) into attrs types with cattrs.

A value that does not fit its type raises `ConfigError`, which names the owner (the
definition) and every bad field path: ``"resource 'db': config.port: expected int, got
str"``. The rules are `kernel._converter`'s, the same for configs, task inputs and results,
event payloads, HTTP bodies and durable records.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cattrs
from cattrs.errors import CattrsError, ForbiddenExtraKeysError
from cattrs.v import format_exception as cattrs_format_exception

from kernel._converter import ShapeError, strict_converter
from kernel._errors import ConfigError

__all__ = ["converter", "problems", "structure"]

T = TypeVar("T")

#: The kernel's converter (one for everything): strict about unknown keys, so a typo in a
#: config is an error, and about shapes, so ``"false"`` is not a true bool, ``2.9`` not the
#: int 2 and ``"abc"`` not the list ``['a', 'b', 'c']``.
converter = strict_converter()


def _format(exc: BaseException, type_: Any) -> str:
    # Our own refusals, attrs validators and classes refusing their fields speak for
    # themselves; cattrs' words are best for a missing field or unknown keys.
    if isinstance(exc, ShapeError):
        return str(exc)
    if isinstance(exc, (KeyError, ForbiddenExtraKeysError)) or not str(exc):
        return cattrs_format_exception(exc, type_)
    return str(exc)


def problems(exc: Exception, path: str) -> list[str]:
    """What was wrong, one ``"path: message"`` line per bad field, from a failed structure."""
    if isinstance(exc, cattrs.BaseValidationError):
        return [_swap(line) for line in cattrs.transform_error(exc, path, _format)]
    return [f"{path}: {_format(exc, None)}"]


def structure(value: Any, type_: type[T], *, owner: str, path: str) -> T:
    """``value`` as a ``type_`` instance (an attrs instance is returned as it is).

    ``owner`` names who declared the type ("resource 'db'"), ``path`` the root of the field
    paths in the message ("config", "input", "payload").
    """
    try:
        return converter.structure(value, type_)
    except (CattrsError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(owner, problems(exc, path)) from exc


def _swap(line: str) -> str:
    """cattrs writes ``message @ path``; we lead with the path."""
    message, _, where = line.rpartition(" @ ")
    return f"{where}: {message}" if message else line
