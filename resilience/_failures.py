"""Which failures a primitive acts on: the ``on=`` argument of Retry and Fallback.

``on`` is an `Exception` subclass, a tuple of them, or a predicate ``(exc) -> bool``. A
`BaseException` that is not an `Exception` (``trio.Cancelled``, ``KeyboardInterrupt``) can
never be named: cancellation and interpreter exits always propagate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from resilience.validate import fail

__all__ = ["ExceptionTypes", "check_on", "matcher"]

ExceptionTypes = type[Exception] | tuple[type[Exception], ...]


def _is_exception_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def _exception_types(on: object) -> tuple[type[BaseException], ...] | None:
    """``on`` as a tuple of exception types, or ``None`` when it is a predicate."""
    types = on if isinstance(on, tuple) else (on,)
    if types and all(_is_exception_type(t) for t in types):
        return types
    return None


def check_on(
    instance: Any, attribute: attrs.Attribute[Any], value: Any, *, other: str = ""
) -> None:
    """attrs validator for ``on``. ``other`` names what else a caller accepts (for the message)."""
    types = _exception_types(value)
    if types is not None:
        for t in types:
            if not issubclass(t, Exception):
                fail(
                    instance,
                    attribute.name,
                    f"must name Exception subclasses; {t.__name__} is a BaseException, which "
                    "always propagates (cancellation and interpreter exits are never handled)",
                )
        return
    if isinstance(value, tuple) or not callable(value):
        fail(
            instance,
            attribute.name,
            f"must be exception types or a predicate (exc) -> bool{other}, got {value!r}",
            TypeError,
        )


def matcher(on: ExceptionTypes | Callable[[Exception], bool]) -> Callable[[Exception], bool]:
    """A function telling whether an exception is one ``on`` selects."""
    types = _exception_types(on)
    if types is not None:
        return lambda exc: isinstance(exc, types)
    assert callable(on)
    return lambda exc: bool(on(exc))
