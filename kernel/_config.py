"""Structuring outside data (config dicts, payloads) into attrs types with cattrs.

A value that does not fit its type raises `ConfigError`, which names the owner (the
definition) and every bad field path: ``"resource 'db': config.port: invalid value for
type, expected int"``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cattrs
from cattrs.v import format_exception as cattrs_format_exception

from kernel._errors import ConfigError

__all__ = ["converter", "structure"]

T = TypeVar("T")

#: The kernel's converter: strict about unknown keys, so a typo in a config is an error,
#: and about scalars, so ``"false"`` is not a true bool nor ``2.9`` the int 2.
converter = cattrs.Converter(forbid_extra_keys=True)


def _strict(type_: type[Any], accepts: tuple[type[Any], ...]) -> None:
    def structure_scalar(value: Any, _: Any) -> Any:
        if isinstance(value, accepts) and (type_ is bool or not isinstance(value, bool)):
            return type_(value)
        raise TypeError(f"expected {type_.__name__}, got {type(value).__name__} {value!r}")

    converter.register_structure_hook(type_, structure_scalar)


_strict(bool, (bool,))
_strict(int, (int,))
_strict(float, (int, float))
_strict(str, (str,))


def _format(exc: BaseException, type_: type[Any] | None) -> str:
    # A failed conversion of a plain value: cattrs' own words ("expected int") are best.
    # Anything else is an attrs validator or a class refusing its fields: keep its message.
    if type_ in (int, float, str, bool, bytes) or not str(exc):
        return cattrs_format_exception(exc, type_)
    return str(exc)


def structure(value: Any, type_: type[T], *, owner: str, path: str) -> T:
    """``value`` as a ``type_`` instance (returned as is when it is one already).

    ``owner`` names who declared the type ("resource 'db'"), ``path`` the root of the field
    paths in the message ("config", "input", "payload").
    """
    if isinstance(value, type_):
        return value
    try:
        return converter.structure(value, type_)
    except cattrs.BaseValidationError as exc:
        problems = [
            _swap(line) for line in cattrs.transform_error(exc, path=path, format_exception=_format)
        ]
        raise ConfigError(owner, problems) from exc
    except (TypeError, ValueError, AttributeError) as exc:
        expected = getattr(type_, "__name__", repr(type_))
        raise ConfigError(
            owner, [f"{path}: expected {expected} (a mapping of its fields), got {value!r}"]
        ) from exc


def _swap(line: str) -> str:
    """cattrs writes ``message @ path``; we lead with the path."""
    message, _, where = line.rpartition(" @ ")
    return f"{where}: {message}" if message else line
