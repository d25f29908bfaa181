"""Round trips: a generated attrs settings class and instance, written into an environment
the way a person would write it, read back by from_env into an equal instance."""

from __future__ import annotations

import json
import keyword
import string
from collections.abc import Callable
from typing import Any, Literal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.config import Duration, Secret, from_env

BOOLS = {True: ["true", "True", "1", "yes", "on", "ON"], False: ["false", "0", "no", "off", "Off"]}
#: Any text an environment can hold, with the characters that matter to a reader often.
TEXT = st.text(
    st.sampled_from(' ,[]"\t0a')
    | st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
)
#: Items a comma-separated list can hold as they are: no comma, no edge spaces, not empty.
PLAIN_ITEM = st.text(string.ascii_letters + string.digits + "-_./:", min_size=1)


@attrs.frozen
class Kind:
    """One field type: how to draw a value and how a person writes it in a variable."""

    hint: Any
    values: st.SearchStrategy[Any]
    write: Callable[[st.DataObject, Any], str]


def _float_text(data: st.DataObject, value: float) -> str:
    return repr(value)


def _duration_text(data: st.DataObject, value: float) -> str:
    if value == int(value) and abs(value) < 10**9:
        whole = int(value)
        forms = [repr(value), f"{whole}s", f"{whole * 1000}ms"]
        if whole % 60 == 0:
            forms.append(f"{whole // 60}m")
        if whole % 3600 == 0:
            forms.append(f"{whole // 3600}h")
        return data.draw(st.sampled_from(forms))
    return data.draw(st.sampled_from([repr(value), f"{value!r}s", f"{value!r} s"]))


def _list_text(write_item: Callable[[st.DataObject, Any], str], plain: bool):
    def write(data: st.DataObject, items: list[Any]) -> str:
        if plain and data.draw(st.booleans()):
            return data.draw(st.sampled_from([",", ", ", " , "])).join(
                write_item(data, item) for item in items
            )
        return json.dumps(items)

    return write


KINDS = [
    Kind(int, st.integers(), lambda data, v: str(v)),
    Kind(float, st.floats(allow_nan=False, allow_infinity=False), _float_text),
    Kind(bool, st.booleans(), lambda data, v: data.draw(st.sampled_from(BOOLS[v]))),
    Kind(str, TEXT, lambda data, v: v),
    Kind(Secret, TEXT.map(Secret), lambda data, v: v.reveal()),
    Kind(
        Duration,
        st.one_of(
            st.integers(-(10**6), 10**6).map(float),
            st.floats(0, 1e9, allow_nan=False),
        ),
        _duration_text,
    ),
    Kind(int | None, st.none() | st.integers(), lambda data, v: "" if v is None else str(v)),
    Kind(Literal["a", "b", "c"], st.sampled_from("abc"), lambda data, v: v),
    Kind(list[int], st.lists(st.integers()), _list_text(lambda data, v: str(v), plain=True)),
    Kind(list[str], st.lists(TEXT), _list_text(lambda data, v: v, plain=False)),
    Kind(
        list[str],
        st.lists(PLAIN_ITEM, min_size=1),
        _list_text(lambda data, v: v, plain=True),
    ),
]
NAMES = st.lists(
    st.text(string.ascii_lowercase, min_size=1, max_size=8).filter(
        lambda name: not keyword.iskeyword(name)
    ),
    min_size=1,
    max_size=6,
    unique=True,
)


@attrs.frozen
class Shape:
    """A generated settings class, an instance of it, and the environment that spells it."""

    cls: type[Any]
    instance: Any
    environ: dict[str, str]


def draw_shape(data: st.DataObject, prefix: str, depth: int) -> Shape:
    names = data.draw(NAMES)
    fields: dict[str, Any] = {}
    values: dict[str, Any] = {}
    environ: dict[str, str] = {}
    for name in names:
        var = prefix + name.upper()
        if depth < 1 and data.draw(st.integers(0, 4)) == 0:
            inner = draw_shape(data, var + "__", depth + 1)
            fields[name] = attrs.field(type=inner.cls)
            values[name] = inner.instance
            environ.update(inner.environ)
            continue
        kind = data.draw(st.sampled_from(KINDS))
        value = data.draw(kind.values)
        if data.draw(st.booleans()):
            # A default that the environment leaves alone: the field keeps it.
            fields[name] = attrs.field(type=kind.hint, default=value)
        else:
            fields[name] = attrs.field(type=kind.hint)
            environ[var] = kind.write(data, value)
        values[name] = value
    cls = attrs.make_class(f"Generated{depth}", fields, frozen=True, kw_only=True)
    return Shape(cls, cls(**values), environ)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_settings_written_into_an_environment_read_back_equal(data: st.DataObject) -> None:
    shape = draw_shape(data, "APP_", 0)
    assert from_env(shape.cls, prefix="APP_", environ=shape.environ) == shape.instance


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1).filter(lambda t: t.strip().lower() not in BOOLS_TEXT))
def test_any_other_text_for_a_bool_is_refused_naming_the_variable(text: str) -> None:
    cls = attrs.make_class("Flag", {"flag": attrs.field(type=bool)})
    with pytest.raises(ValueError, match=r"^environment: APP_FLAG: expected a bool"):
        from_env(cls, environ={"APP_FLAG": text})


BOOLS_TEXT = {"true", "false", "1", "0", "yes", "no", "on", "off"}
