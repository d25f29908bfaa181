"""JSON for the values of `Cache`: written with cattrs and `json`, read back (untrusted)
into the return annotation of the function that computed them.

Never pickle: a value in Redis is input from outside (another version of the program,
another program, an attacker with access to Redis); a value that does not parse, or does
not fit the type, raises `ValueError` and is recomputed by the cache.
"""

from __future__ import annotations

import functools
import json
import typing
from collections.abc import Callable
from typing import Any

import cattrs
import cattrs.errors
from cattrs.preconf.json import make_converter

__all__ = ["dumps", "loads", "return_type"]

_converter = make_converter()
# `object` (as in `dict[str, object]`) promises nothing about a value: JSON data as it is.
# (A predicate, not a class hook: cattrs dispatches class hooks to subclasses too.)
_converter.register_structure_hook_func(lambda type_: type_ is object, lambda value, _: value)


def dumps(value: Any, *, what: str) -> str:
    """``value`` as JSON text; `TypeError` naming ``what`` when it cannot be written."""
    try:
        return json.dumps(
            _converter.unstructure(value),
            allow_nan=False,
            separators=(",", ":"),
            ensure_ascii=False,
        )
    except (TypeError, ValueError, cattrs.BaseValidationError) as exc:
        raise TypeError(
            f"{what} cannot be stored as JSON: {exc} (return JSON data, or an attrs class or "
            "dataclass of such)"
        ) from exc


def loads(text: str | bytes, type_: Any) -> Any:
    """The value ``text`` holds, structured into ``type_`` (``None``: plain JSON data);
    `ValueError` when it does not parse or does not fit."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if type_ is None or type_ is Any:
        return data
    try:
        return _converter.structure(data, type_)
    except (ValueError, TypeError, AttributeError, KeyError, cattrs.errors.CattrsError) as exc:
        raise ValueError(f"does not fit {type_!r}: {exc}") from exc


@functools.lru_cache(maxsize=1024)
def _hint(fn: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references, partials, builtins...
        return None
    return hints.get("return")


def return_type(fn: Callable[..., Any]) -> Any:
    """``fn``'s return annotation (``None`` when it has none, or it cannot be read)."""
    try:
        return _hint(fn)
    except TypeError:  # an unhashable callable
        return None
