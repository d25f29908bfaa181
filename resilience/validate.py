"""Argument checks, one way in every layer: each error names the owner and the argument.

The rule (see ``docs/decisions.md``): a value of the wrong type is a ``TypeError``, a value
of the right type out of range a ``ValueError``; both say ``"<owner>: <argument> ..."``.

Durations are "a number of seconds or a ``datetime.timedelta``" wherever the contract takes
one: `seconds` and `optional_seconds` check and convert such a value for a plain function
(``kernel.run(drain_timeout=...)``, ``ctx.sleep(...)``); for attrs classes, `to_seconds` is
the converter and `positive_duration`, `non_negative_duration` and their ``optional_``
twins the validators, so a class declares its rules next to its fields.

    from resilience import validate

    drain = validate.seconds(drain_timeout, owner="kernel.run", name="drain_timeout",
                             minimum="zero")

This module is public so that ``middleware`` and ``kernel`` check their arguments with the
same code and words as the primitives; it is not meant as a general validation library.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, NoReturn

import attrs

__all__ = [
    "Minimum",
    "Validator",
    "count",
    "fail",
    "finite",
    "is_bool",
    "non_negative_duration",
    "optional_callable",
    "optional_name",
    "optional_non_negative_duration",
    "optional_positive_duration",
    "optional_seconds",
    "positive_duration",
    "positive_int",
    "seconds",
    "to_seconds",
]

#: The lower bound of a duration: ``"positive"`` (``> 0``) or ``"zero"`` (``>= 0``).
Minimum = Literal["positive", "zero"]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _owner(instance: Any) -> str:
    return type(instance).__name__


def fail(instance: Any, name: str, message: str, exc: type[Exception] = ValueError) -> NoReturn:
    """Raise ``exc`` with ``"<Class>: <name> <message>"`` (the class of ``instance``)."""
    raise exc(f"{_owner(instance)}: {name} {message}")


def to_seconds(value: Any) -> Any:
    """attrs converter: a ``timedelta`` becomes float seconds; anything else passes through.

    The validators then check type and range, so that the error can name the argument.
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def seconds(
    value: object,
    *,
    owner: str,
    name: str,
    minimum: Minimum = "positive",
    finite: bool = False,
) -> float:
    """``value`` (a number of seconds or a ``timedelta``) as float seconds.

    Raises ``TypeError`` for anything else (``bool`` included) and ``ValueError`` for NaN,
    a value below ``minimum`` (``"positive"``: ``> 0``; ``"zero"``: ``>= 0``) or, with
    ``finite=True``, infinity; each message starts ``"<owner>: <name>"``.
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{owner}: {name} must be a number of seconds or a timedelta, got {value!r}"
        )
    if math.isnan(value):
        raise ValueError(f"{owner}: {name} must not be NaN")
    if minimum == "positive" and not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    if minimum == "zero" and not value >= 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    if finite and math.isinf(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return float(value)


def optional_seconds(
    value: object,
    *,
    owner: str,
    name: str,
    minimum: Minimum = "positive",
    finite: bool = False,
) -> float | None:
    """`seconds`, with ``None`` passed through."""
    if value is None:
        return None
    return seconds(value, owner=owner, name=name, minimum=minimum, finite=finite)


def count(value: object, *, owner: str, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum``: ``TypeError`` for a non-int (``bool`` included),
    ``ValueError`` below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return value


def non_negative_duration(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A duration ``>= 0``."""
    seconds(value, owner=_owner(instance), name=attribute.name, minimum="zero")


def positive_duration(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A duration ``> 0``."""
    seconds(value, owner=_owner(instance), name=attribute.name)


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
    count(value, owner=_owner(instance), name=attribute.name)


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
