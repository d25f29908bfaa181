"""The kernel's one converter: a value is taken only in the shape JSON would carry it.

The same rules hold for task inputs (`run_task`), resource configs, event payloads and
durable records; the HTTP side is in tests/kernel/exposure/test_strict_input.py, the
agreement with the discovery schema in tests/kernel/exposure/test_schema.py.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Mapping, MutableSequence, Sequence, Set
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, NewType, TypeVar

import attrs
import pytest

import kernel
from kernel._converter import ShapeError, strict_converter
from kernel._structure import converter, structure
from kernel.durable import CorruptRecordError
from kernel.durable._serde import dumps, loads


class Size(enum.IntEnum):
    S = 1
    M = 2


class Mood(enum.StrEnum):
    HAPPY = "happy"


class Tone(enum.Enum):
    LOW = 0.5
    ON = True
    NAME = "name"


@attrs.frozen
class Line:
    sku: str
    count: int = 1


@attrs.define
class Item:
    name: str
    qty: int
    tags: list[str] = attrs.Factory(list)


T = TypeVar("T")


@attrs.frozen
class Box(Generic[T]):
    content: T


@attrs.frozen
class Node:
    name: str
    children: list[Node] = attrs.Factory(list)


def problems_of(value: Any, type_: Any) -> str:
    with pytest.raises(kernel.ConfigError) as caught:
        structure(value, type_, owner="test", path="input")
    return "; ".join(caught.value.problems)


# --- the reported cases ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("abc", "input.tags: expected a list, got str"),
        ({"x": 1}, "input.tags: expected a list, got dict"),
        ({"a", "b"}, "input.tags: expected a list, got set"),
        (None, "input.tags: expected a list, got None"),
        (["a", 1], "input.tags[1]: expected str, got int"),
    ],
)
async def test_run_task_refuses_a_list_field_in_any_other_shape(tags: Any, message: str) -> None:
    @kernel.task("items.add", input=Item)
    async def add(item: Item) -> list[str]:
        return item.tags

    async with kernel.run(kernel.App("app", register=[add])) as rt:
        assert await rt.run_task(add, {"name": "a", "qty": 1, "tags": ["a", "b"]}) == ["a", "b"]
        assert await rt.run_task(add, {"name": "a", "qty": 1, "tags": ("a",)}) == ["a"]
        with pytest.raises(kernel.ConfigError) as caught:
            await rt.run_task(add, {"name": "a", "qty": 1, "tags": tags})
    assert caught.value.problems == [message]
    assert str(caught.value) == f"task 'items.add': {message}"


async def test_a_resource_config_is_held_to_the_same_shapes() -> None:
    @attrs.frozen
    class PoolConfig:
        hosts: tuple[str, ...]
        weights: dict[str, float] = attrs.Factory(dict)

    @kernel.resource("pool", config=PoolConfig)
    async def pool(config: PoolConfig) -> PoolConfig:
        return config

    with pytest.raises(kernel.ConfigError) as caught:
        kernel.dry_run(kernel.App("app", register=[pool.with_config({"hosts": "db1"})]))
    assert caught.value.problems == ["config.hosts: expected a list, got str"]
    with pytest.raises(kernel.ConfigError) as caught:
        kernel.dry_run(
            kernel.App("app", register=[pool.with_config({"hosts": [], "weights": [["a", 1]]})])
        )
    assert caught.value.problems == ["config.weights: expected a mapping, got list"]
    async with kernel.run(
        kernel.App("app", register=[pool.with_config({"hosts": ["db1"], "weights": {"a": 1}})])
    ) as rt:
        assert rt.resource(pool) == PoolConfig(("db1",), {"a": 1.0})


# --- scalars --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "good", "bad"),
    [
        (bool, [True, False], [1, 0, "true", None]),
        (int, [0, -3, 10**30], [True, 1.0, 2.9, "1", None]),
        (float, [1, 2.5, -0.0, 10**300], [True, "1.5", None, 10**309, float("inf")]),
        (str, ["", "x"], [1, b"x", None, ["x"]]),
        (type(None), [None], [0, "", False]),
        (Size, [1, 2, Size.S], [True, 1.0, "1", 3]),
        (Mood, ["happy", Mood.HAPPY], ["sad", 1]),
        (Tone, [0.5, True, "name", Tone.LOW], [1, False, "NAME"]),
        (Literal[1, "a", None], [1, "a", None], [True, 1.0, "1", "b"]),
        (Literal[True], [True], [1]),
        (Literal[2.0], [2, 2.0], [True, "2"]),
        (Literal[Size.S], [1, Size.S], [True, 2]),
        (NewType("Count", int), [3], ["3", 3.0]),
        (Annotated[int, "units"], [3], ["3"]),
    ],
)
def test_scalars_come_only_from_their_own_kind(type_: Any, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        structure(value, type_, owner="test", path="input")
    for value in bad:
        with pytest.raises(kernel.ConfigError, match=r"^test: input: expected "):
            structure(value, type_, owner="test", path="input")


def test_scalars_come_back_as_their_type() -> None:
    assert structure(1, Size, owner="t", path="p") is Size.S  # not the int 1
    assert structure("happy", Mood, owner="t", path="p") is Mood.HAPPY
    assert structure(True, Tone, owner="t", path="p") is Tone.ON
    assert structure(2, Literal[2.0], owner="t", path="p") == 2.0
    assert type(structure(3, float, owner="t", path="p")) is float
    nan = structure(float("nan"), float, owner="t", path="p")  # Python's; JSON has none
    assert nan != nan
    assert type(structure(Mood.HAPPY, str, owner="t", path="p")) is str
    assert structure(Mood.HAPPY, str, owner="t", path="p") == "happy"
    assert type(structure(Size.M, int, owner="t", path="p")) is int
    assert type(structure(True, bool, owner="t", path="p")) is bool


def test_a_subclass_of_a_scalar_is_built_from_its_kind_only() -> None:
    class Sku(str):
        pass

    assert type(structure("x", Sku, owner="t", path="p")) is Sku
    assert problems_of(1, Sku) == "input: expected str, got int"


def test_scalar_messages_say_what_was_expected_and_what_came() -> None:
    assert problems_of("1", int) == "input: expected int, got str"
    assert problems_of(True, float) == "input: expected float, got bool"
    assert problems_of(10**400, float) == (
        "input: expected float, got a number beyond the float range"
    )
    assert problems_of(3, Size) == "input: expected one of 1, 2 (Size), got int"
    assert problems_of("c", Literal["a", "b"]) == "input: expected one of 'a', 'b', got str"


def test_dates_and_bytes_come_from_their_text() -> None:
    moment = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert structure("2024-05-01T12:30:00+00:00", datetime, owner="t", path="p") == moment
    assert structure(moment, datetime, owner="t", path="p") is moment
    assert structure("2024-05-01", date, owner="t", path="p") == date(2024, 5, 1)
    assert structure(converter.unstructure(b"\x00hi"), bytes, owner="t", path="p") == b"\x00hi"
    assert structure(b"raw", bytes, owner="t", path="p") == b"raw"
    assert problems_of(1714566600, datetime) == (
        "input: expected an ISO 8601 date and time, got int"
    )
    assert problems_of("yesterday", datetime) == (
        "input: expected an ISO 8601 date and time, got a str that is not one"
    )
    assert problems_of("2024-13-01", date) == (
        "input: expected an ISO 8601 date, got a str that is not one"
    )
    assert problems_of("~~~{", bytes) == "input: expected base85 text, got a str that is not"
    assert problems_of(3, bytes) == "input: expected base85 text, got int"


# --- containers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        (list[int], (1, 2), [1, 2]),
        (tuple[int, ...], [1, 2], (1, 2)),
        (Sequence[int], [1], (1,)),
        (MutableSequence[int], [1], [1]),
        (collections.deque[int], [1], collections.deque([1])),
        (list, [1, "a"], [1, "a"]),
        (set[int], [1, 1, 2], {1, 2}),
        (frozenset[str], ["a"], frozenset({"a"})),
        (Set[str], {"a"}, frozenset({"a"})),
        (set, [1, "a"], {1, "a"}),
        (tuple[int, str], [1, "a"], (1, "a")),
        (dict[str, int], {"a": 1}, {"a": 1}),
        (dict[int, str], {"1": "a", "-20": "b", 3: "c"}, {1: "a", -20: "b", 3: "c"}),
        (Mapping[str, Line], {"a": {"sku": "x"}}, {"a": Line("x")}),
        (collections.OrderedDict[str, int], {"a": 1}, collections.OrderedDict(a=1)),
        (collections.Counter[str], {"a": 2}, collections.Counter(a=2)),
        (dict, {"a": [1]}, {"a": [1]}),
        (int | None, None, None),
        (int | str, "1", "1"),
        (float | int, 1, 1),
        (Line | list[Line], [{"sku": "x"}], [Line("x")]),
    ],
)
def test_containers_take_their_json_shape(type_: Any, value: Any, expected: Any) -> None:
    result = structure(value, type_, owner="test", path="input")
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("type_", "value", "message"),
    [
        (list[str], "abc", "input: expected a list, got str"),
        (list[str], {"a": 1}, "input: expected a list, got dict"),
        (list[str], b"ab", "input: expected a list, got bytes"),
        (list[str], iter(["a"]), "input: expected a list, got list_iterator"),
        (Sequence[str], "abc", "input: expected a list, got str"),
        (tuple[int, ...], "12", "input: expected a list, got str"),
        (set[str], "ab", "input: expected a list, got str"),
        (set[str], {"a": 1}, "input: expected a list, got dict"),
        (set, [[1]], "input: expected a list of hashable items (a set)"),
        (tuple[int, str], [1], "input: expected a list of 2 items, got 1"),
        (tuple[int, str], "ab", "input: expected a list, got str"),
        (tuple[int, str], [1, 2], "input[1]: expected str, got int"),
        (dict[str, int], [["a", 1]], "input: expected a mapping, got list"),
        (dict[str, int], "a", "input: expected a mapping, got str"),
        (dict[str, int], {"a": "1"}, "input['a']: expected int, got str"),
        (dict[int, str], {"x": "a"}, "input['x']: expected int, got str"),
        (dict[int, str], {"1.0": "a"}, "input['1.0']: expected int, got str"),
        (dict[str, int], {1: 1}, "input[1]: expected str, got int"),
        (int | None, "1", "input: expected int | None, got str"),
        (list[int] | None, "12", "input: expected list[int] | None, got str"),
        (Line, "x", "input: expected a mapping of Line's fields, got str"),
        (Line, ["x"], "input: expected a mapping of Line's fields, got list"),
        (Line, {"sku": "x", "cnt": 1}, "input: extra fields found (cnt)"),
        (Line, {}, "input.sku: required field missing"),
    ],
)
def test_a_wrong_shape_is_refused_with_its_path(type_: Any, value: Any, message: str) -> None:
    assert problems_of(value, type_) == message


def test_every_bad_item_is_named_with_its_path() -> None:
    @attrs.frozen
    class Order:
        lines: list[Line]
        counts: dict[str, int]
        maybe: Line | None = None

    value = {
        "lines": [{"sku": "a"}, {"sku": 1}, "x"],
        "counts": {"a": 1, "b": [2]},
        "maybe": {"sku": "a", "count": "2"},
    }
    assert problems_of(value, Order).split("; ") == [
        "input.lines[1].sku: expected str, got int",
        "input.lines[2]: expected a mapping of Line's fields, got str",
        "input.counts['b']: expected int, got list",
        # One member of the union took the mapping: its own error, with its path.
        "input.maybe.count: expected int, got str",
    ]


def test_an_instance_is_taken_as_it_is_at_any_depth() -> None:
    @attrs.frozen
    class Order:
        lines: list[Line]

    line = Line("x")
    assert structure({"lines": [line]}, Order, owner="t", path="p").lines[0] is line
    order = Order([line])
    assert structure(order, Order, owner="t", path="p") is order


def test_dataclasses_and_generic_classes_are_mappings_of_their_fields() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int = 0

    assert structure({"x": 1}, Point, owner="t", path="p") == Point(1)
    assert problems_of("1,2", Point) == "input: expected a mapping of Point's fields, got str"
    assert problems_of({"x": "1"}, Point) == "input.x: expected int, got str"
    assert structure({"content": ["a"]}, Box[list[str]], owner="t", path="p") == Box(["a"])
    assert problems_of({"content": "a"}, Box[list[str]]) == (
        "input.content: expected a list, got str"
    )


def test_a_class_that_contains_itself_is_structured_all_the_way_down() -> None:
    tree = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
    assert structure(tree, Node, owner="t", path="p") == Node("a", [Node("b", [Node("c")])])
    bad = {"name": "a", "children": [{"name": "b", "children": "c"}]}
    assert problems_of(bad, Node) == "input.children[0].children: expected a list, got str"


def test_an_unsupported_type_is_a_config_error_not_a_crash() -> None:
    class Opaque:
        pass

    assert "input: " in problems_of({"x": 1}, Opaque)


def test_a_validator_that_fails_only_once_is_reported_as_it_failed() -> None:
    calls: list[int] = []

    def fails_first(_: Any, __: Any, value: int) -> None:
        calls.append(value)
        if len(calls) % 2:  # the fast path's call fails; the second look passes
            raise ValueError("flaky check")

    Flaky = attrs.make_class("Flaky", {"x": attrs.field(type=int, validator=fails_first)})
    assert problems_of([{"x": 1}], list[Flaky]) == "input: flaky check"  # type: ignore[valid-type]
    assert problems_of({"k": {"x": 1}}, dict[str, Flaky]) == "input: flaky check"  # type: ignore[valid-type]
    assert problems_of([{"x": 1}, 2], tuple[Flaky, int]) == "input: flaky check"  # type: ignore[valid-type]


def test_a_float_in_a_union_is_held_to_the_float_range() -> None:
    assert problems_of(float("inf"), float | None) == "input: expected float | None, got float"
    assert structure(1, float | str, owner="t", path="p") == 1.0


def test_a_validator_keeps_its_own_words() -> None:
    @attrs.frozen
    class Positive:
        n: int = attrs.field(validator=attrs.validators.gt(0))

    assert problems_of({"n": 0}, Positive) == "input: 'n' must be > 0: 0"


def test_each_call_of_the_factory_is_a_converter_with_the_same_rules() -> None:
    fresh = strict_converter()
    assert fresh is not converter
    with pytest.raises(ShapeError, match="expected a list, got str"):
        fresh.structure("abc", list[str])
    assert fresh.unstructure({1, 2}) in ([1, 2], [2, 1])  # JSON-ready: a set is a list


# --- durable records ------------------------------------------------------------------------


def test_durable_records_are_read_back_with_the_same_rules() -> None:
    text = dumps(Item("a", 1, ["x"]), what="step 'add' result")
    assert loads(text, Item, what="step 'add' result") == Item("a", 1, ["x"])
    assert loads(dumps({1: Size.S}, what="w"), dict[int, Size], what="w") == {1: Size.S}
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    assert loads(dumps(moment, what="w"), datetime, what="w") == moment
    with pytest.raises(CorruptRecordError) as caught:
        loads('{"name": "a", "qty": 1, "tags": "abc"}', Item, what="step 'add' result")
    assert str(caught.value) == (
        "step 'add' result cannot be read back as Item: value.tags: expected a list, got str"
    )
    with pytest.raises(CorruptRecordError, match=r"as list\[int\]: value: expected a list"):
        loads('{"a": 1}', list[int], what="w")
