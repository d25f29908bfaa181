"""The discovery schema describes exactly what the converter accepts.

The property draws an input class from the shapes the converter supports, then a value
(mostly of the right shape, with wrong shapes mixed in at every level), and checks that
`jsonschema` and the converter agree on it. Examples pin the schema of each shape.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import sys
from collections.abc import Mapping, MutableSequence, Sequence, Set
from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, NewType, Optional, TypeVar, Union, get_args

import attrs
import jsonschema
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kernel import ConfigError
from kernel._structure import structure
from kernel.exposure._schema import json_schema

# JSON Schema's "integer" admits 1.0 (its data model has one kind of number); the converter
# does not, and the schema says so in its docstring: the validator is told the same.
_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
)
Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_TYPES)


def accepted_by_schema(schema: dict[str, Any], value: Any) -> bool:
    return bool(Validator(schema).is_valid(value))


def accepted_by_converter(value: Any, cls: Any) -> bool:
    try:
        structure(value, cls, owner="test", path="input")
    except ConfigError:
        return False
    return True


# --- types ----------------------------------------------------------------------------------

_names = itertools.count()

SCALARS = st.sampled_from([bool, int, float, str, type(None), Any, NewType("Count", int)])
LITERAL_VALUES = st.one_of(
    st.booleans(), st.integers(-2, 2), st.sampled_from(["a", "b", "", 1.5, 2.0]), st.none()
)


@st.composite
def literals(draw: st.DrawFn) -> Any:
    values = draw(st.lists(LITERAL_VALUES, min_size=1, max_size=3))
    return Literal.__getitem__(tuple(values))


@st.composite
def enums(draw: st.DrawFn) -> Any:
    base = draw(st.sampled_from([enum.Enum, enum.IntEnum, enum.StrEnum]))
    values: st.SearchStrategy[Any] = {
        enum.IntEnum: st.integers(-2, 2),
        enum.StrEnum: st.sampled_from(["a", "b", "c"]),
        enum.Enum: st.one_of(st.integers(-2, 2), st.sampled_from(["a", "b", 2.5, True])),
    }[base]
    chosen = draw(st.lists(values, min_size=1, max_size=3, unique_by=lambda v: (type(v), v)))
    return base(f"E{next(_names)}", {f"M{i}": value for i, value in enumerate(chosen)})


@st.composite
def classes(draw: st.DrawFn, children: st.SearchStrategy[Any]) -> Any:
    types = draw(st.lists(children, min_size=0, max_size=3))
    fields = {
        f"f{i}": attrs.field(type=type_, default=None if draw(st.booleans()) else attrs.NOTHING)
        for i, type_ in enumerate(types)
    }
    frozen = draw(st.booleans())
    return attrs.make_class(f"C{next(_names)}", fields, kw_only=True, frozen=frozen)


MAPPING_KEYS = st.sampled_from([str, int, Any, Literal["a", "b"], Literal[1], int | str])


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    pairs = st.tuples(children, children)
    return st.one_of(
        children.map(lambda t: list[t]),  # type: ignore[valid-type]
        children.map(lambda t: tuple[t, ...]),  # type: ignore[valid-type]
        children.map(lambda t: Sequence[t]),  # type: ignore[valid-type]
        children.map(lambda t: MutableSequence[t]),  # type: ignore[valid-type]
        children.map(lambda t: set[t]),  # type: ignore[valid-type]
        children.map(lambda t: frozenset[t]),  # type: ignore[valid-type]
        children.map(lambda t: Set[t]),  # type: ignore[valid-type]
        st.lists(children, min_size=1, max_size=3).map(
            lambda ts: tuple.__class_getitem__(tuple(ts))
        ),
        st.tuples(MAPPING_KEYS, children).map(lambda kv: dict[kv[0], kv[1]]),  # type: ignore[misc]
        children.map(lambda t: Mapping[str, t]),  # type: ignore[valid-type]
        children.map(lambda t: Optional[t]),  # noqa: UP045
        pairs.map(lambda ab: Union[ab[0], ab[1]]),  # noqa: UP007
        st.sampled_from([list, dict, tuple, set]),
        classes(children),
    )


FIELD_TYPES = st.recursive(st.one_of(SCALARS, literals(), enums()), containers, max_leaves=6)
INPUT_CLASSES = classes(FIELD_TYPES)


# --- values ---------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, -0.0, 2**1024, -(2**1024), 10**400, int(sys.float_info.max)]),
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=8,
)


def values(type_: Any) -> st.SearchStrategy[Any]:
    """Values mostly of ``type_``'s shape, any JSON at every level now and then."""
    shape = st.deferred(lambda: _shaped(type_))
    return st.one_of(shape, shape, shape, shape, shape, JSON)


def _shaped(type_: Any) -> st.SearchStrategy[Any]:
    args = get_args(type_)
    origin = getattr(type_, "__origin__", type_)
    if hasattr(type_, "__supertype__"):
        return values(type_.__supertype__)
    if type_ is bool:
        return st.booleans()
    if type_ is int:
        return st.one_of(st.integers(), st.integers(), NUMBERS)
    if type_ is float:
        return NUMBERS
    if type_ is str:
        return st.text(max_size=3)
    if type_ is type(None) or type_ is Any:
        return JSON
    if origin is Literal:
        return st.sampled_from([*args, 1, "a", 1.0, False])
    if isinstance(type_, type) and issubclass(type_, enum.Enum):
        return st.sampled_from([member.value for member in type_] + [1, "a", 2.0])
    if origin is Union:
        return st.one_of([values(arg) for arg in args])
    if attrs.has(type_):
        fields = {field.name: values(field.type) for field in attrs.fields(type_)}
        return st.fixed_dictionaries(
            {},
            optional={**fields, "extra": JSON} if fields else {"extra": JSON},
        ) | st.fixed_dictionaries(fields)
    if origin in (dict, Mapping):
        key = args[0] if args else str
        keys = {
            int: st.one_of(st.integers().map(str), st.sampled_from(["01", "-0", "x", "1.0"])),
            Literal["a", "b"]: st.sampled_from(["a", "b", "c"]),
            Literal[1]: st.sampled_from(["1", "2"]),
        }.get(key, st.text(max_size=2))
        return st.dictionaries(keys, values(args[1] if args else Any), max_size=3)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return st.one_of(st.tuples(*map(values, args)).map(list), st.lists(JSON, max_size=4))
    if args:
        return st.lists(values(args[0]), max_size=3)
    return st.one_of(st.lists(JSON, max_size=3), JSON)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_converter_accepts_exactly_what_the_schema_accepts(data: st.DataObject) -> None:
    cls = data.draw(INPUT_CLASSES, label="input class")
    schema = json_schema(cls)
    jsonschema.Draft202012Validator.check_schema(schema)
    value = data.draw(values(cls), label="value")
    by_schema = accepted_by_schema(schema, value)
    event("accepted" if by_schema else "rejected")
    assert accepted_by_converter(value, cls) is by_schema, (
        f"the schema {'accepts' if by_schema else 'rejects'} {value!r} for "
        f"{[(f.name, f.type) for f in attrs.fields(cls)]}, the converter does not agree"
    )


# --- the schema of each shape ---------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Line:
    sku: str
    count: int = 1


@attrs.define
class Everything:
    flag: bool
    ratio: float
    nothing: None
    lines: list[Line]
    tags: frozenset[str]
    pair: tuple[int, str]
    many: tuple[int, ...]
    bare: list  # type: ignore[type-arg]
    counts: dict[str, int]
    loose: dict  # type: ignore[type-arg]
    choice: Literal["a", "b"]
    colour: Colour
    maybe: int | None
    legacy: Optional[str]  # noqa: UP045
    anything: Any
    seq: Sequence[float]
    blob: bytes
    nested: Everything | None = None
    _private: int = 0
    derived: int = attrs.field(init=False, default=0)


FLOAT = {"type": "number", "minimum": -sys.float_info.max, "maximum": sys.float_info.max}
LINE = {
    "type": "object",
    "properties": {"sku": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["sku"],
    "additionalProperties": False,
}


def test_json_schema_of_an_attrs_class() -> None:
    schema = json_schema(Everything)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == [
        "flag",
        "ratio",
        "nothing",
        "lines",
        "tags",
        "pair",
        "many",
        "bare",
        "counts",
        "loose",
        "choice",
        "colour",
        "maybe",
        "legacy",
        "anything",
        "seq",
        "blob",
    ]
    assert schema["properties"] == {
        "flag": {"type": "boolean"},
        "ratio": FLOAT,
        "nothing": {"type": "null"},
        "lines": {"type": "array", "items": LINE},
        "tags": {"type": "array", "items": {"type": "string"}},
        "pair": {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "minItems": 2,
            "maxItems": 2,
        },
        "many": {"type": "array", "items": {"type": "integer"}},
        "bare": {"type": "array"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "loose": {"type": "object"},
        "choice": {"type": "string", "enum": ["a", "b"]},
        "colour": {"type": "string", "enum": ["red", "blue"]},
        "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "legacy": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "anything": {},
        "seq": {"type": "array", "items": FLOAT},
        "blob": {"type": "string", "contentEncoding": "base85"},
        # The class inside itself: a reference to the root, not "any object".
        "nested": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
        "_private": {"type": "integer"},
    }
    nested = {**_minimal_everything(), "nested": _minimal_everything()}
    assert accepted_by_schema(schema, nested)
    assert accepted_by_converter(nested, Everything)
    broken = {**_minimal_everything(), "nested": {**_minimal_everything(), "flag": 1}}
    assert not accepted_by_schema(schema, broken)
    assert not accepted_by_converter(broken, Everything)


def _minimal_everything() -> dict[str, Any]:
    return {
        "flag": True,
        "ratio": 1,
        "nothing": None,
        "lines": [{"sku": "x"}],
        "tags": ["a"],
        "pair": [1, "a"],
        "many": [],
        "bare": [1, "x"],
        "counts": {},
        "loose": {"k": [1]},
        "choice": "a",
        "colour": "red",
        "maybe": None,
        "legacy": "x",
        "anything": [{}],
        "seq": [1.5],
        "blob": "",
    }


@attrs.define
class Unresolvable:
    value: NoSuchType  # type: ignore[name-defined]  # noqa: F821


def test_json_schema_of_unresolvable_annotations_is_any() -> None:
    assert json_schema(Unresolvable) == {
        "type": "object",
        "properties": {"value": {}},
        "required": ["value"],
        "additionalProperties": False,
    }


@dataclasses.dataclass
class UnresolvablePoint:
    x: NoSuchType  # type: ignore[name-defined]  # noqa: F821


class Opaque:
    pass


def test_what_is_not_a_supported_shape_is_not_described() -> None:
    assert json_schema(UnresolvablePoint)["properties"] == {"x": {}}
    holder = attrs.make_class("Holder", {"thing": attrs.field(type=Opaque)})
    assert json_schema(holder)["properties"] == {"thing": {}}


@attrs.frozen
class Tree:
    name: str
    branches: list[Branch] = attrs.Factory(list)


@attrs.frozen
class Branch:
    leaf: Tree | None = None
    weight: float = 1.0


def test_a_class_reached_again_is_a_reference_to_its_definition() -> None:
    @attrs.frozen
    class Forest:
        trees: list[Branch]
        other: Branch | None = None

    schema = json_schema(Forest)
    branch = {"$ref": "#/$defs/Branch"}
    # Only a cycle is a reference: a class met again on another path is written out.
    assert schema["properties"]["other"]["anyOf"][0]["properties"]["weight"] == FLOAT
    tree = schema["properties"]["trees"]["items"]["properties"]["leaf"]["anyOf"][0]
    assert tree["properties"]["branches"] == {"type": "array", "items": branch}
    assert schema["$defs"]["Branch"]["properties"]["leaf"]["anyOf"][0]["required"] == ["name"]
    deep = {"trees": [{"leaf": {"name": "a", "branches": [{"leaf": {"name": "b"}}]}}]}
    assert accepted_by_schema(schema, deep)
    assert accepted_by_converter(deep, Forest)
    wrong = {"trees": [{"leaf": {"name": "a", "branches": [{"weight": "1"}]}}]}
    assert not accepted_by_schema(schema, wrong)
    assert not accepted_by_converter(wrong, Forest)


T = TypeVar("T")


@attrs.frozen
class Box(Generic[T]):
    content: T


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)


class Stamp(enum.Enum):
    OPAQUE = (1, 2)  # not JSON: cannot arrive, not described


@attrs.frozen
class Odds:
    boxed: Box[list[str]]
    point: Point
    count: NewType("Count", int)  # type: ignore[valid-type]
    units: Annotated[float, "metres"]
    when: datetime
    day: date
    level: Level
    mixed: Literal[1, "one", True, None, 2.5]
    stamp: Stamp
    by_id: dict[int, str]
    by_choice: dict[Literal["a", "b"], int]
    tally: collections.Counter[str]
    hashables: set[tuple[int, str]]
    unhashables: set[list[int]]
    records: frozenset[Line]
    anything: set  # type: ignore[type-arg]


def test_json_schema_of_the_other_shapes() -> None:
    properties = json_schema(Odds)["properties"]
    assert properties["boxed"]["properties"] == {
        "content": {"type": "array", "items": {"type": "string"}}
    }
    assert properties["point"] == {
        "type": "object",
        "properties": {
            "x": {"type": "integer"},
            "y": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["x"],
        "additionalProperties": False,
    }
    assert properties["count"] == {"type": "integer"}
    assert properties["units"] == FLOAT
    assert properties["when"] == {"type": "string", "format": "date-time"}
    assert properties["day"] == {"type": "string", "format": "date"}
    assert properties["level"] == {"type": "integer", "enum": [1, 2]}
    assert properties["mixed"] == {
        "anyOf": [
            {"type": "integer", "enum": [1]},
            {"type": "string", "enum": ["one"]},
            {"type": "boolean", "enum": [True]},
            {"type": "null", "enum": [None]},
            {"type": "number", "enum": [2.5]},
        ]
    }
    assert properties["stamp"] == {"not": {}}
    assert properties["by_id"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "propertyNames": {"pattern": "^-?[0-9]{1,4300}$"},
    }
    assert properties["by_choice"]["propertyNames"] == {"type": "string", "enum": ["a", "b"]}
    assert properties["tally"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert properties["hashables"]["items"]["prefixItems"] == [
        {"type": "integer"},
        {"type": "string"},
    ]
    # A list is never hashable: a set of lists can only be empty.
    assert properties["unhashables"] == {"type": "array", "items": {"not": {}}}
    # An attrs.define class has eq without hash: never in a set. A frozen class hashes its
    # fields, so they must be hashable too.
    holder = attrs.make_class("Holder", {"x": attrs.field(type=set[Everything])})
    assert json_schema(holder)["properties"]["x"] == {"type": "array", "items": {"not": {}}}
    assert properties["records"]["items"]["properties"] == LINE["properties"]
    assert properties["anything"] == {
        "type": "array",
        "items": {"type": ["null", "boolean", "number", "string"]},
    }


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("by_id", {"12": "a", "-3": "b"}, True),
        ("by_id", {"x": "a"}, False),
        ("by_id", {"1.0": "a"}, False),
        ("by_choice", {"a": 1}, True),
        ("by_choice", {"c": 1}, False),
        ("mixed", 1, True),
        ("mixed", 1.0, False),
        ("mixed", True, True),
        ("mixed", 2.5, True),
        ("level", 1, True),
        ("level", 1.0, False),
        ("level", True, False),
        ("unhashables", [], True),
        ("unhashables", [[1]], False),
        ("hashables", [[1, "a"], [1, "a"]], True),
        ("records", [{"sku": "a"}], True),
        ("anything", [1, "a", None], True),
        ("anything", [[1]], False),
        ("units", 10**400, False),
        ("units", 1e308, True),
    ],
)
def test_schema_and_converter_agree_on_each_shape(field: str, value: Any, accepted: bool) -> None:
    schema = json_schema(Odds)["properties"][field]
    fields = {f.name: f for f in attrs.fields(Odds)}
    holder = attrs.make_class("Holder", {field: attrs.field(type=fields[field].type)})
    assert accepted_by_schema(schema, value) is accepted
    assert accepted_by_converter({field: value}, holder) is accepted


def test_dates_are_checked_by_the_converter_beyond_the_schema() -> None:
    schema = json_schema(Odds)["properties"]["when"]
    assert accepted_by_schema(schema, "not a date")  # "format" is an annotation in 2020-12
    assert not accepted_by_converter(
        {"x": "not a date"}, attrs.make_class("W", {"x": attrs.field(type=datetime)})
    )
    assert not accepted_by_schema(schema, 1714566600)
