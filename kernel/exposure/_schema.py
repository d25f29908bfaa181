"""The JSON Schema (2020-12) of an attrs class, for an exposure's discovery document.

It describes exactly what the kernel's converter (`kernel._converter`) accepts, shape by
shape: ``str``, ``int``, ``float``, ``bool``, ``None``, ``bytes``, ``datetime``/``date``,
sequences, tuples, sets and mappings of those, ``Literal``, enums, unions, ``NewType``,
``Annotated`` and nested attrs classes or dataclasses (a class that contains itself is a
``$ref`` to ``$defs``, or to ``#`` for the root). Anything else is ``{}`` (not described).
Field types are resolved from their annotations.

Two readings matter for a validator: ``"integer"`` means an integer written as one (the
converter refuses ``1.0`` for an int, which JSON Schema's data model calls an integer), and
``"format"`` (dates) is asserted by the converter, which parses the text.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import typing
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal, TypeVar, get_args, get_origin

import attrs

from kernel._converter import (
    INT_KEY,
    MAPPINGS,
    MAX_FLOAT,
    SEQUENCES,
    SETS,
    is_union,
    literal_values,
)

__all__ = ["json_schema", "type_schema"]

_SCALARS: Final[Mapping[Any, Mapping[str, Any]]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number", "minimum": -MAX_FLOAT, "maximum": MAX_FLOAT},
    str: {"type": "string"},
    type(None): {"type": "null"},
    bytes: {"type": "string", "contentEncoding": "base85"},
    datetime: {"type": "string", "format": "date-time"},
    date: {"type": "string", "format": "date"},
}
#: What JSON calls a scalar's type, for enums and literals (bool first: it is an int too).
_JSON_TYPES: Final = (
    (bool, "boolean"),
    (type(None), "null"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
)
#: The hashable JSON values: what a ``set[Any]`` can hold.
_HASHABLE_ANY: Final[Mapping[str, Any]] = {"type": ["null", "boolean", "number", "string"]}
_NOTHING: Final[Mapping[str, Any]] = {"not": {}}


def json_schema(cls: type[Any]) -> dict[str, Any]:
    """The JSON Schema (object, properties, required) of the attrs class ``cls``."""
    builder = _Builder(cls)
    schema = builder.object(cls, frozenset({cls}))
    if builder.defs:
        schema["$defs"] = builder.defs
    return schema


@attrs.define
class _Builder:
    root: Any
    defs: dict[str, Any] = attrs.Factory(dict)
    names: dict[Any, str] = attrs.Factory(dict)

    def object(self, cls: Any, seen: frozenset[Any], *, hashable: bool = False) -> dict[str, Any]:
        """The fields of the class ``cls`` (of a generic one, with its type arguments)."""
        origin = get_origin(cls) or cls
        bindings = dict(zip(getattr(origin, "__parameters__", ()), get_args(cls), strict=False))
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, annotation, has_default in _fields(origin):
            properties[name] = self.schema(annotation, bindings, seen, hashable=hashable)
            if not has_default:
                required.append(name)
        return {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def ref(self, cls: Any) -> dict[str, Any]:
        """A reference to the class ``cls``, which contains itself."""
        if cls == self.root:
            return {"$ref": "#"}
        name = self.names.get(cls)
        if name is None:
            base = getattr(get_origin(cls) or cls, "__name__", "Class")
            name = base if base not in self.defs else f"{base}{len(self.names)}"
            self.names[cls] = name
            self.defs[name] = {}
            self.defs[name] = self.object(cls, frozenset({cls}))
        return {"$ref": f"#/$defs/{name}"}

    def schema(
        self, annotation: Any, bindings: Mapping[Any, Any], seen: frozenset[Any], *, hashable: bool
    ) -> dict[str, Any]:
        """What ``annotation`` accepts; with ``hashable``, only its hashable values."""
        if isinstance(annotation, TypeVar):
            annotation = bindings.get(annotation, Any)
        while True:  # a NewType or an Annotated is the type it wraps
            if isinstance(annotation, typing.NewType):
                annotation = annotation.__supertype__
            elif get_origin(annotation) is Annotated:
                annotation = get_args(annotation)[0]
            else:
                break
        if annotation in _SCALARS:
            return dict(_SCALARS[annotation])
        if annotation is Any or annotation is object:
            return dict(_HASHABLE_ANY) if hashable else {}
        origin = get_origin(annotation) or annotation
        args = get_args(annotation)
        if origin is Literal:
            return _choices(literal_values(annotation))
        if is_union(annotation):
            return {"anyOf": [self.schema(arg, bindings, seen, hashable=hashable) for arg in args]}
        if isinstance(origin, type) and issubclass(origin, enum.Enum):
            return _choices(tuple(member.value for member in origin))
        if _is_class(origin):
            if hashable and getattr(origin, "__hash__", None) is None:
                return dict(_NOTHING)  # an attrs.define class (eq without hash)
            if annotation in seen:
                return self.ref(annotation)
            # A hashable instance hashes its fields: in a set, they must be hashable too.
            return self.object(annotation, seen | {annotation}, hashable=hashable)
        return self.container(origin, args, bindings, seen, hashable=hashable)

    def container(
        self,
        origin: Any,
        args: tuple[Any, ...],
        bindings: Mapping[Any, Any],
        seen: frozenset[Any],
        *,
        hashable: bool,
    ) -> dict[str, Any]:
        """A tuple, sequence, set or mapping ``origin[*args]``; else any value."""
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            prefix = [self.schema(arg, bindings, seen, hashable=hashable) for arg in args]
            return {
                "type": "array",
                "prefixItems": prefix,
                "minItems": len(prefix),
                "maxItems": len(prefix),
            }
        builds = SEQUENCES.get(origin) or SETS.get(origin)
        if builds is not None:
            if hashable and builds not in (tuple, frozenset):
                return dict(_NOTHING)  # a list or a set is never hashable, not even empty
            item = args[0] if args else Any
            items = self.schema(item, bindings, seen, hashable=hashable or origin in SETS)
            return {"type": "array", "items": items} if items else {"type": "array"}
        if origin in MAPPINGS:
            if hashable:
                return dict(_NOTHING)  # a dict is never hashable
            key, value = (args[0], args[-1]) if args else (Any, Any)
            mapping: dict[str, Any] = {"type": "object"}
            values = self.schema(
                int if origin is collections.Counter else value, bindings, seen, hashable=False
            )
            if values:
                mapping["additionalProperties"] = values
            if key is int:  # JSON keys are strings: an int key is its decimal text
                mapping["propertyNames"] = {"pattern": f"^{INT_KEY.pattern}$"}
            elif key not in (str, Any):
                mapping["propertyNames"] = self.schema(key, bindings, seen, hashable=True)
            return mapping
        return {}


def _is_class(origin: Any) -> bool:
    return isinstance(origin, type) and (attrs.has(origin) or dataclasses.is_dataclass(origin))


def _fields(cls: type[Any]) -> list[tuple[str, Any, bool]]:
    """``(name, annotation, has a default)`` of each field the converter reads."""
    if attrs.has(cls):
        try:
            attrs.resolve_types(cls)
        except Exception:  # an annotation that does not resolve: described as any value
            resolved = False
        else:
            resolved = True
        return [
            # The key cattrs reads and writes is the name (not the init alias).
            (field.name, field.type if resolved else Any, field.default is not attrs.NOTHING)
            for field in attrs.fields(cls)
            if field.init
        ]
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    return [
        (
            field.name,
            hints.get(field.name, Any),
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING,
        )
        for field in dataclasses.fields(cls)
        if field.init
    ]


def _json_type(value: Any) -> str | None:
    for type_, name in _JSON_TYPES:
        if isinstance(value, type_):
            return name
    return None


def _choices(values: tuple[Any, ...]) -> dict[str, Any]:
    """One of ``values`` (JSON scalars; others cannot arrive), each of its own JSON type."""
    groups: dict[str, list[Any]] = {}
    for value in values:
        name = _json_type(value)
        if name is not None and value not in groups.setdefault(name, []):
            groups[name].append(value)
    schemas = [{"type": name, "enum": found} for name, found in groups.items() if found]
    if not schemas:
        return dict(_NOTHING)
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of any annotation the converter handles (``{}`` where it cannot be
    described), with ``$defs`` for the classes that contain themselves."""
    if _is_class(get_origin(annotation) or annotation):
        return json_schema(annotation)
    builder = _Builder(annotation)
    schema = builder.schema(annotation, {}, frozenset(), hashable=False)
    if builder.defs:
        schema["$defs"] = builder.defs
    return schema
