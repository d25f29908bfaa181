"""A small JSON Schema of an attrs class, for an exposure's discovery document.

Covers what a task input or event payload usually holds: ``str``, ``int``, ``float``,
``bool``, ``None``, lists, tuples, sets and dicts of those, ``Literal``, enums, unions and
nested attrs classes. Anything else is ``{}`` (any value). Field types are resolved from
their annotations; a class nested in itself becomes ``{"type": "object"}`` at the second
visit.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping, Set
from collections.abc import Sequence as AbcSequence
from typing import Any, Final, Literal, Union, get_args, get_origin

import attrs

__all__ = ["json_schema"]

_SCALARS: Final[Mapping[Any, str]] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    type(None): "null",
}
_ARRAYS: Final = (list, tuple, set, frozenset, AbcSequence, Set)
_OBJECTS: Final = (dict, Mapping)
_TEXT: Final = (str, bytes, bytearray)


def json_schema(cls: type[Any]) -> dict[str, Any]:
    """The JSON Schema (object, properties, required) of the attrs class ``cls``."""
    return _object(cls, frozenset())


def _object(cls: type[Any], seen: frozenset[type[Any]]) -> dict[str, Any]:
    if cls in seen:
        return {"type": "object"}
    seen = seen | {cls}
    try:
        attrs.resolve_types(cls)
    except Exception:  # an annotation that does not resolve: described as any value
        resolved = False
    else:
        resolved = True
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        if not field.init:
            continue
        name = field.name  # the key cattrs reads and writes (not the init alias)
        properties[name] = _schema(field.type, seen) if resolved else {}
        if field.default is attrs.NOTHING:
            required.append(name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _schema(annotation: Any, seen: frozenset[type[Any]]) -> dict[str, Any]:
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema(arg, seen) for arg in args]}
    if isinstance(annotation, type) and attrs.has(annotation):
        return _object(annotation, seen)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    container = origin if origin is not None else annotation
    if isinstance(container, type) and issubclass(container, _ARRAYS) and container not in _TEXT:
        items = args[0] if args and (container is not tuple or args[-1] is Ellipsis) else None
        return (
            {"type": "array"} if items is None else {"type": "array", "items": _schema(items, seen)}
        )
    if isinstance(container, type) and issubclass(container, _OBJECTS):
        values = args[1] if len(args) == 2 else None
        return (
            {"type": "object"}
            if values is None
            else {"type": "object", "additionalProperties": _schema(values, seen)}
        )
    return {}
