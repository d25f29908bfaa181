"""Argument checks shared by the primitives: each error names the class and the argument.

The helpers are attrs validators (``validator(instance, attribute, value)``) and converters,
so a primitive declares its rules next to its fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs

__all__ = [
    "fail",
    "finite",
    "is_bool",
    "non_negative_duration",
    "optional_callable",
    "optional_name",
    "optional_non_negative_duration",
    "optional_positive_duration",
    "positive_duration",
    "positive_int",
    "to_seconds",
]


def fail(instance: Any, name: str, message: str, exc: type[Exception] = ValueError) -> None:
    """Raise ``exc`` with ``"<Class>: <name> <message>"``."""
    raise exc(f"{type(instance).__name__}: {name} {message}")


def to_seconds(value: Any) -> Any:
    """attrs converter: a ``timedelta`` becomes float seconds; anything else passes through.

    The validators then check type and range, so that the error can name the argument.
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def _check_number(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(
            instance,
            attribute.name,
            f"must be a number of seconds or a timedelta, got {value!r}",
            TypeError,
        )
    if math.isnan(value):
        fail(instance, attribute.name, "must not be NaN")
    return float(value)


def non_negative_duration(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A duration ``>= 0``."""
    if _check_number(instance, attribute, value) < 0:
        fail(instance, attribute.name, f"must be >= 0, got {value!r}")


def positive_duration(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A duration ``> 0``."""
    if _check_number(instance, attribute, value) <= 0:
        fail(instance, attribute.name, f"must be > 0, got {value!r}")


def optional_non_negative_duration(
    instance: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    """``None`` or a duration ``>= 0``."""
    if value is not None:
        non_negative_duration(instance, attribute, value)


def optional_positive_duration(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``None`` or a duration ``> 0``."""
    if value is not None:
        positive_duration(instance, attribute, value)


def finite(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number that is not infinite (after the type checks of another validator)."""
    if not math.isfinite(value):
        fail(instance, attribute.name, f"must be finite, got {value!r}")


def positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An ``int >= 1`` (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        fail(instance, attribute.name, f"must be an int, got {value!r}", TypeError)
    if value < 1:
        fail(instance, attribute.name, f"must be >= 1, got {value!r}")


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def optional_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``None`` or a ``str`` (the ``name=`` that labels a primitive's events)."""
    if value is not None and not isinstance(value, str):
        fail(instance, attribute.name, f"must be a str or None, got {value!r}", TypeError)


def is_bool(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A ``bool`` (``1`` and ``"yes"`` are refused)."""
    if not isinstance(value, bool):
        fail(instance, attribute.name, f"must be a bool, got {value!r}", TypeError)


def optional_callable(what: str = "callable") -> Validator:
    """A validator for ``None`` or a callable; the error says it must be ``what``."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not callable(value):
            fail(instance, attribute.name, f"must be {what} or None, got {value!r}", TypeError)

    return check
