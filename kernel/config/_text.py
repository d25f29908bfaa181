"""Settings written as text (environment variables), read into the value a type expects.

`parse` turns one text into a value the kernel's converter then structures strictly:

- ``str``, `Secret`, paths, ``Any``: the text as it is.
- ``bool``: ``true/false``, ``1/0``, ``yes/no``, ``on/off`` (any case).
- ``int``: decimal digits (``8080``, ``-1``, ``1_000``); ``2.5`` is not an int.
- ``float``: a number (``2.5``, ``1e-3``).
- `Duration`: seconds (``2.5``), or a number with a unit: ``ms``, ``s``, ``m``, ``h``, ``d``
  (``500ms``, ``2.5s``, ``1m``, ``1h``).
- ``Literal[...]`` and enums: one of their values, spelled as their ``str``.
- ``X | None``: the empty text is None; anything else is read as ``X``.
- lists, tuples (``tuple[X, ...]``) and sets: a JSON array (``["a", "b,c"]``), or items
  separated by commas (``a, b, c``; spaces around items are dropped; the empty text is no
  items), each item read as the item type.
- anything else (a mapping, an attrs class, a union): JSON.
"""

from __future__ import annotations

import collections.abc
import enum
import json
import re
import types
import typing
from pathlib import PurePath
from typing import Annotated, Any, Final, Literal, TypeAlias, Union

from kernel.config._secret import Secret

__all__ = [
    "DURATION_UNITS",
    "Duration",
    "TextError",
    "item_type",
    "optional_of",
    "parse",
    "unwrap",
]


class _DurationMarker:
    """The metadata that makes ``Annotated[float, ...]`` a `Duration`."""

    def __repr__(self) -> str:
        return "kernel.config.Duration"


_DURATION: Final = _DurationMarker()

Duration: TypeAlias = Annotated[float, _DURATION]
"""A number of seconds that may also be written with a unit (``500ms``, ``2.5s``, ``1m``) in
the environment and in TOML files; a plain ``float`` everywhere else."""

DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
"""The units a `Duration` may be written with, in seconds."""

_INT: Final = re.compile(r"[+-]?[0-9](?:_?[0-9])*")
_DURATION_TEXT: Final = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*(?P<unit>[a-z]*)"
)
_BOOLS: Final = {
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
}
_SEQUENCES: Final = frozenset(
    {
        list,
        set,
        frozenset,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Set,
        collections.abc.MutableSet,
    }
)


class TextError(ValueError):
    """A text that does not read as the ``expected`` kind of value.

    ``where`` locates it inside the setting (``"[2]"`` for the third item of a list), and
    ``text`` is the offending text, for the caller to show (or hide, for a secret).
    """

    def __init__(self, expected: str, text: str, where: str = "") -> None:
        super().__init__(f"{where}: expected {expected}")
        self.expected = expected
        self.text = text
        self.where = where


def unwrap(hint: Any) -> tuple[Any, bool]:
    """``hint`` without ``Annotated``, and whether it was a `Duration`."""
    if typing.get_origin(hint) is Annotated:
        return hint.__origin__, any(meta is _DURATION for meta in hint.__metadata__)
    return hint, False


def optional_of(hint: Any) -> Any | None:
    """``X`` when ``hint`` is ``X | None`` (``Optional[X]``), else None."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(others) == 1 and len(others) < len(typing.get_args(hint)):
            return others[0]
    return None


def parse(text: str, hint: Any) -> Any:
    """``text`` read as a value for ``hint`` (module docstring); `TextError` if it cannot be."""
    base, is_duration = unwrap(hint)
    if is_duration:
        return _duration(text)
    if base is str or base is Any or base is Secret:
        return text
    if isinstance(base, type) and issubclass(base, PurePath):
        return text
    if base is bool:
        return _bool(text)
    if base is int:
        return _int(text)
    if base is float:
        return _float(text)
    inner = optional_of(base)
    if inner is not None:
        return None if text.strip() == "" else parse(text, inner)
    origin = typing.get_origin(base)
    if origin is Literal:
        return _choice(text, typing.get_args(base))
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return _choice(text, tuple(member.value for member in base))
    item = item_type(base)
    if item is not None:
        return _items(text, item)
    return _json(text, base)


def _bool(text: str) -> bool:
    try:
        return _BOOLS[text.strip().lower()]
    except KeyError:
        raise TextError("a bool (true/false, 1/0, yes/no, on/off)", text) from None


def _int(text: str) -> int:
    if _INT.fullmatch(text.strip()) is None:
        raise TextError("int", text)
    return int(text)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        if _DURATION_TEXT.fullmatch(text.strip()):
            raise TextError(
                "float (for a duration with units, annotate the field kernel.config.Duration)",
                text,
            ) from None
        raise TextError("float", text) from None


def _duration(text: str) -> float:
    found = _DURATION_TEXT.fullmatch(text.strip())
    if found is None or (found["unit"] and found["unit"] not in DURATION_UNITS):
        raise TextError("a duration (seconds, or a number with ms, s, m, h or d)", text)
    number = float(found["number"])
    # Milliseconds are divided, not multiplied by 0.001 (inexact): 2500ms is exactly 2.5.
    return (
        number / 1000 if found["unit"] == "ms" else number * DURATION_UNITS.get(found["unit"], 1.0)
    )


def _choice(text: str, choices: tuple[Any, ...]) -> Any:
    for choice in choices:
        if isinstance(choice, bool):
            if text.strip().lower() in _BOOLS and _BOOLS[text.strip().lower()] is choice:
                return choice
        elif str(choice) == text:
            return choice
    raise TextError("one of " + ", ".join(repr(str(choice)) for choice in choices), text)


def item_type(hint: Any) -> Any | None:
    """The item type of a homogeneous collection type (``list[X]``, ``tuple[X, ...]``,
    sets), else None."""
    base = unwrap(hint)[0]
    origin = typing.get_origin(base)
    args = typing.get_args(base)
    if origin in _SEQUENCES and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _items(text: str, item: Any) -> list[Any]:
    if text.lstrip().startswith("["):
        pieces: list[Any] = _json(text, list)  # JSON text that starts with [ is an array
    else:
        pieces = [piece.strip() for piece in text.split(",")] if text.strip() else []
    parsed: list[Any] = []
    for index, piece in enumerate(pieces):
        if not isinstance(piece, str) or unwrap(item)[0] is str:
            parsed.append(piece)  # a typed JSON item: the converter judges it
            continue
        try:
            parsed.append(parse(piece, item))
        except TextError as exc:
            raise TextError(exc.expected, exc.text, f"[{index}]{exc.where}") from None
    return parsed


def _json(text: str, hint: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        shown = getattr(hint, "__name__", None) or repr(hint)
        raise TextError(f"JSON for {shown}", text) from None
