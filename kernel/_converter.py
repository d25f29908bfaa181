"""The kernel's one converter: outside data (JSON-shaped) to typed values, and back.

`strict_converter` builds it on cattrs' JSON preconfiguration (sets unstructure to lists,
datetimes to ISO 8601, bytes to base85) and makes structuring *strict about shapes*: a
value is taken only in the form JSON would carry it, never coerced from another form.

=====================  ==============================================================
target type            accepted value
=====================  ==============================================================
``bool``               a bool
``int``                an int, not a bool (nor a float, even ``1.0``, nor ``"1"``)
``float``              an int or a float within the float range (not ``inf``), not a
                       bool
``str``                a str
``None``               None
``bytes``              a base85 str (what unstructuring writes), or bytes
``datetime``/``date``  an ISO 8601 str (``datetime.fromisoformat``), or an instance
``list[T]``, ``tuple   a list or tuple (never a str, a mapping or a set), each item a T
[T, ...]``,
``Sequence[T]``, ...
``tuple[A, B]``        a list or tuple of exactly two items, an A and a B
``set[T]``,            a list, tuple, set or frozenset of hashable items
``frozenset[T]``
``dict[K, V]``,        a mapping (never a list of pairs); keys of ``int`` type may be
``Mapping[K, V]``      decimal strings, since JSON keys are strings
``Literal[...]``       one of the values, of the same type (``True`` is not ``1``)
an enum                a member, or a member's value of the same type
``A | B``              what A or B accepts (an exact scalar type first, then in order)
an attrs class         a mapping of its fields (unknown keys refused), or an instance
=====================  ==============================================================

A refusal raises `ShapeError` (a TypeError) whose text is the whole story
(``expected a list, got str``); `kernel._structure` adds the field path. The discovery schema
(`kernel.exposure._schema`) describes exactly these rules.
"""

from __future__ import annotations

import collections
import collections.abc as abc
import dataclasses
import enum
import re
import sys
import types
from base64 import b85decode
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any, Final, Literal, NoReturn, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.preconf.json import make_converter

__all__ = [
    "INT_KEY",
    "MAPPINGS",
    "MAX_FLOAT",
    "SEQUENCES",
    "SETS",
    "ShapeError",
    "is_union",
    "kind",
    "literal_values",
    "strict_converter",
    "type_name",
]

#: The largest float magnitude: an int beyond it has no float.
MAX_FLOAT: Final = sys.float_info.max

#: The text of an ``int`` mapping key (Python reads ints of up to 4300 digits).
INT_KEY: Final = re.compile(r"-?[0-9]{1,4300}")

#: Container origins structured strictly, and the type each builds.
SEQUENCES: Final[Mapping[Any, Callable[[list[Any]], Any]]] = {
    list: list,
    tuple: tuple,
    abc.Sequence: tuple,
    abc.MutableSequence: list,
    abc.Collection: tuple,
    abc.Iterable: tuple,
    collections.deque: collections.deque,
}
SETS: Final[Mapping[Any, Callable[[Iterable[Any]], Any]]] = {
    set: set,
    frozenset: frozenset,
    abc.Set: frozenset,
    abc.MutableSet: set,
}
MAPPINGS: Final[Mapping[Any, Callable[[dict[Any, Any]], Any]]] = {
    dict: dict,
    abc.Mapping: dict,
    abc.MutableMapping: dict,
    collections.OrderedDict: collections.OrderedDict,
    collections.Counter: collections.Counter,
}
_ARRAY_VALUES: Final = (list, tuple)
_SET_VALUES: Final = (list, tuple, set, frozenset)

Hook = Callable[[Any, Any], Any]


class ShapeError(TypeError):
    """A value of the wrong shape for its type; the message says what was expected."""


def kind(value: object) -> str:
    """The name of ``value``'s type, as messages say it (``str``, ``dict``, ``None``)."""
    return "None" if value is None else type(value).__name__


def type_name(type_: Any) -> str:
    """``type_`` as a message names it: ``Order``, ``list[str]``, ``int | None``."""
    if isinstance(type_, type) and not get_args(type_):
        return "None" if type_ is type(None) else type_.__name__
    if is_union(type_):
        return " | ".join(type_name(arg) for arg in get_args(type_))
    return repr(type_).replace("typing.", "").replace("collections.abc.", "")


def is_union(type_: Any) -> bool:
    """Whether ``type_`` is ``A | B`` or ``Optional[A]``."""
    return get_origin(type_) in (Union, types.UnionType)


def literal_values(type_: Any) -> tuple[Any, ...]:
    """The values of ``Literal[...]`` ``type_``, enum members replaced by their values."""
    return tuple(arg.value if isinstance(arg, enum.Enum) else arg for arg in get_args(type_))


def strict_converter() -> cattrs.Converter:
    """A new converter with the kernel's rules (see the module docstring)."""
    converter = make_converter(forbid_extra_keys=True)
    for base in (bool, int, float, str):
        converter.register_structure_hook(base, _scalar_hook(base))
    converter.register_structure_hook(type(None), _structure_none)
    converter.register_structure_hook(bytes, _structure_bytes)
    converter.register_structure_hook(datetime, _iso_hook(datetime, "an ISO 8601 date and time"))
    converter.register_structure_hook(date, _iso_hook(date, "an ISO 8601 date"))
    # Factories registered later are consulted first: these take over from cattrs' own.
    converter.register_structure_hook_factory(_is_enum, lambda t: _structure_enum)
    converter.register_structure_hook_factory(_is_literal, _literal_hook)
    converter.register_structure_hook_factory(_is_sequence, _sequence_hook)
    converter.register_structure_hook_factory(_is_set, _set_hook)
    converter.register_structure_hook_factory(_is_fixed_tuple, _fixed_tuple_hook)
    converter.register_structure_hook_factory(_is_mapping, _mapping_hook)
    converter.register_structure_hook_factory(is_union, _union_hook)
    converter.register_structure_hook_factory(_is_class, _class_hook)
    return converter


# --- scalars -------------------------------------------------------------------------------


def _accepts(base: type[Any], value: Any) -> bool:
    if base is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if base is float:  # within the range (NaN, which JSON cannot carry, compares as in it)
        return isinstance(value, (int, float)) and not abs(value) > MAX_FLOAT
    return isinstance(value, base)


def _scalar_hook(base: type[Any]) -> Hook:
    # cattrs dispatches a class's subclasses here too (an IntEnum to int, a StrEnum to str).
    def structure_scalar(value: Any, type_: Any) -> Any:
        if (
            type(value) is base
            and type_ is base
            and (base is not float or -MAX_FLOAT <= value <= MAX_FLOAT)
        ):
            return value  # the common case, first
        if type_ is not base:
            if issubclass(type_, enum.Enum):
                return _structure_enum(value, type_)
            if _accepts(base, value):
                return type_(value)
        elif _accepts(base, value):
            if type(value) is base:
                return value
            return base(value) if base is not str else str.__str__(value)
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ShapeError("expected float, got a number beyond the float range")
        raise ShapeError(f"expected {base.__name__}, got {kind(value)}")

    return structure_scalar


_structure_int: Final = _scalar_hook(int)


def _structure_none(value: Any, _: Any) -> None:
    if value is not None:
        raise ShapeError(f"expected None, got {kind(value)}")


def _structure_bytes(value: Any, _: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return b85decode(value)
        except ValueError:
            raise ShapeError("expected base85 text, got a str that is not") from None
    raise ShapeError(f"expected base85 text, got {kind(value)}")


def _iso_hook(base: type[date], what: str) -> Hook:
    def structure_iso(value: Any, _: Any) -> Any:
        if isinstance(value, base):
            return value
        if isinstance(value, str):
            try:
                return base.fromisoformat(value)
            except ValueError:
                raise ShapeError(f"expected {what}, got a str that is not one") from None
        raise ShapeError(f"expected {what}, got {kind(value)}")

    return structure_iso


# --- enums and literals --------------------------------------------------------------------


def _is_enum(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, enum.Enum)


def _same(value: Any, wanted: Any) -> bool:
    """``value`` is ``wanted`` as JSON would carry it: equal, and of its kind."""
    if isinstance(wanted, bool) or wanted is None:
        return value is wanted
    if isinstance(value, bool):
        return False
    if isinstance(wanted, float):
        return isinstance(value, (int, float)) and value == wanted
    return isinstance(value, type(wanted)) and value == wanted


def _structure_enum(value: Any, type_: Any) -> Any:
    if isinstance(value, type_):
        return value
    for member in type_:
        if _same(value, member.value):
            return member
    choices = ", ".join(repr(member.value) for member in type_)
    raise ShapeError(f"expected one of {choices} ({type_.__name__}), got {kind(value)}")


def _is_literal(type_: Any) -> bool:
    return get_origin(type_) is Literal


def _literal_hook(type_: Any) -> Hook:
    args = get_args(type_)
    choices = ", ".join(repr(value) for value in literal_values(type_))

    def structure_literal(value: Any, _: Any) -> Any:
        for arg in args:
            if value is arg or (
                _same(value, arg.value) if isinstance(arg, enum.Enum) else _same(value, arg)
            ):
                return arg
        raise ShapeError(f"expected one of {choices}, got {kind(value)}")

    return structure_literal


# --- containers ----------------------------------------------------------------------------


def _origin(type_: Any) -> Any:
    return get_origin(type_) or type_


@attrs.define
class _Later:
    """The hook of ``type``, looked up at first use (a type may contain itself)."""

    converter: cattrs.Converter
    type: Any
    hook: Hook | None = None

    def get(self) -> Hook:
        if self.hook is None:
            self.hook = self.converter.get_structure_hook(self.type)
        return self.hook


def _noted(exc: Exception, index: Any, type_: Any, container: Any) -> Exception:
    """``exc`` with cattrs' note of where it happened (so the field path names ``index``)."""
    note = IterableValidationNote(f"Structuring {container} @ {index!r}", index, type_)
    exc.__notes__ = [*getattr(exc, "__notes__", []), note]
    return exc


def _failures(
    entries: Iterable[tuple[Any, Any, Hook, Any]], container: Any, first: Exception
) -> NoReturn:
    """Once the fast path failed with ``first``: structure ``(index, value, hook, type)``
    entries again, raising every failure noted with its index."""
    errors: list[Exception] = []
    for index, value, hook, type_ in entries:
        try:
            hook(value, type_)
        except Exception as exc:
            errors.append(_noted(exc, index, type_, container))
    if not errors:  # a hook that failed only once: its own error is all there is
        raise first
    raise IterableValidationError(f"While structuring {container!r}", errors, container)


def _item_type(type_: Any) -> Any:
    args = get_args(type_)
    return args[0] if args else Any


def _is_sequence(type_: Any) -> bool:
    if _origin(type_) is tuple:
        args = get_args(type_)
        return not args or (len(args) == 2 and args[1] is Ellipsis)
    return _origin(type_) in SEQUENCES


def _sequence_hook(type_: Any, converter: cattrs.Converter) -> Hook:
    build = SEQUENCES[_origin(type_)]
    item = _item_type(type_)
    later = _Later(converter, item)

    def structure_sequence(value: Any, _: Any) -> Any:
        if not isinstance(value, _ARRAY_VALUES):
            raise ShapeError(f"expected a list, got {kind(value)}")
        if item is Any:
            return build(list(value))
        hook = later.get()
        try:
            return build([hook(v, item) for v in value])
        except Exception as exc:
            _failures(((i, v, hook, item) for i, v in enumerate(value)), type_, exc)

    return structure_sequence


def _is_set(type_: Any) -> bool:
    return _origin(type_) in SETS


def _set_hook(type_: Any, converter: cattrs.Converter) -> Hook:
    build = SETS[_origin(type_)]
    item = _item_type(type_)
    structure_items = _sequence_hook(list[item], converter)  # type: ignore[valid-type]

    def structure_set(value: Any, _: Any) -> Any:
        if not isinstance(value, _SET_VALUES):
            raise ShapeError(f"expected a list, got {kind(value)}")
        items = structure_items(tuple(value) if isinstance(value, (set, frozenset)) else value, _)
        try:
            return build(items)
        except TypeError:  # an unhashable item (a list or a mapping in a set[Any])
            raise ShapeError("expected a list of hashable items (a set)") from None

    return structure_set


def _is_fixed_tuple(type_: Any) -> bool:
    return get_origin(type_) is tuple and not _is_sequence(type_)


def _fixed_tuple_hook(type_: Any, converter: cattrs.Converter) -> Hook:
    args = get_args(type_)
    later = [_Later(converter, arg) for arg in args]

    def structure_tuple(value: Any, _: Any) -> Any:
        if not isinstance(value, _ARRAY_VALUES):
            raise ShapeError(f"expected a list, got {kind(value)}")
        if len(value) != len(args):
            raise ShapeError(f"expected a list of {len(args)} items, got {len(value)}")
        hooks = [each.get() for each in later]
        try:
            return tuple([hook(v, t) for hook, v, t in zip(hooks, value, args, strict=True)])
        except Exception as exc:
            _failures(zip(range(len(args)), value, hooks, args, strict=True), type_, exc)

    return structure_tuple


def _is_mapping(type_: Any) -> bool:
    return _origin(type_) in MAPPINGS


def _structure_int_key(value: Any, type_: Any) -> Any:
    """An int key: an int, or its decimal text (JSON object keys are strings)."""
    if isinstance(value, str) and INT_KEY.fullmatch(value):
        return int(value)
    return _structure_int(value, type_)


def _mapping_hook(type_: Any, converter: cattrs.Converter) -> Hook:
    build = MAPPINGS[_origin(type_)]
    args = get_args(type_)
    key, item = (args[0], args[-1]) if args else (Any, Any)
    if _origin(type_) is collections.Counter:
        item = int
    keys = None if key is int else _Later(converter, key)
    items = _Later(converter, item)

    def structure_mapping(value: Any, _: Any) -> Any:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise ShapeError(f"expected a mapping, got {kind(value)}")
        if key is Any and item is Any:
            return build(dict(value))
        key_hook = _structure_int_key if keys is None else keys.get()
        item_hook = items.get()
        try:
            return build({key_hook(k, key): item_hook(v, item) for k, v in value.items()})
        except Exception:
            errors: list[Exception] = []
            for k, v in value.items():
                try:
                    key_hook(k, key)
                except Exception as exc:
                    errors.append(_noted(exc, k, key, type_))
                    continue
                try:
                    item_hook(v, item)
                except Exception as exc:
                    errors.append(_noted(exc, k, item, type_))
            if not errors:  # a hook that failed only once: its own error is all there is
                raise
            raise IterableValidationError(f"While structuring {type_!r}", errors, type_) from None

    return structure_mapping


# --- unions and classes --------------------------------------------------------------------

#: Values a union member takes as they are (a float still goes through its range check).
_EXACT: Final = frozenset({bool, int, str, type(None)})


def _union_hook(type_: Any, converter: cattrs.Converter) -> Hook:
    members = get_args(type_)
    exact = _EXACT.intersection(members)
    later = [_Later(converter, member) for member in members]
    name = type_name(type_)

    def structure_union(value: Any, _: Any) -> Any:
        if type(value) in exact:
            return value
        failures: list[Exception] = []
        for each in later:
            try:
                return each.get()(value, each.type)
            except Exception as exc:
                failures.append(exc)
        # One member took the shape and failed inside: its error has the path that helps.
        deep = [exc for exc in failures if not isinstance(exc, ShapeError)]
        if len(deep) == 1:
            raise deep[0]
        raise ShapeError(f"expected {name}, got {kind(value)}")

    return structure_union


def _is_class(type_: Any) -> bool:
    origin = _origin(type_)
    return isinstance(origin, type) and (attrs.has(origin) or dataclasses.is_dataclass(origin))


def _class_hook(type_: Any, converter: cattrs.Converter) -> Hook:
    fields_of = converter.gen_structure_attrs_fromdict(type_)
    origin = _origin(type_)
    name = origin.__name__

    def structure_class(value: Any, _: Any) -> Any:
        if isinstance(value, origin):
            return value
        if type(value) is not dict and not isinstance(value, Mapping):
            raise ShapeError(f"expected a mapping of {name}'s fields, got {kind(value)}")
        return fields_of(value, type_)

    return structure_class
