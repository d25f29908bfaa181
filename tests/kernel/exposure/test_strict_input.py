"""Typed input over real HTTP: a wrong shape is a 422 naming the field, never a coercion,
and the discovery schema of the task says the same as the answers."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import kernel
from tests.kernel.exposure.servers import failure, serving
from tests.kernel.exposure.test_schema import accepted_by_schema


@attrs.frozen
class Item:
    name: str
    qty: int
    tags: list[str]
    sizes: dict[str, float] = attrs.Factory(dict)


@kernel.task("shop.add", input=Item)
async def add(item: Item) -> dict[str, Any]:
    return {"tags": item.tags, "sizes": item.sizes}


added = kernel.event("shop.added", payload=Item)

GOOD = {"name": "a", "qty": 1, "tags": ["a", "b"]}
WRONG = [
    # The reported cases: a str and a mapping were taken as lists of their letters / keys.
    ({**GOOD, "tags": "abc"}, ["input.tags: expected a list, got str"]),
    ({**GOOD, "tags": {"x": 1}}, ["input.tags: expected a list, got dict"]),
    ({**GOOD, "tags": ["a", 1]}, ["input.tags[1]: expected str, got int"]),
    ({**GOOD, "qty": 1.0}, ["input.qty: expected int, got float"]),
    ({**GOOD, "qty": True}, ["input.qty: expected int, got bool"]),
    ({**GOOD, "sizes": [["s", 1]]}, ["input.sizes: expected a mapping, got list"]),
    ({**GOOD, "sizes": {"s": "1"}}, ["input.sizes['s']: expected float, got str"]),
    (
        {**GOOD, "name": ["a"], "tags": "a"},
        ["input.name: expected str, got list", "input.tags: expected a list, got str"],
    ),
]


async def test_a_wrong_shape_is_422_naming_the_field_and_the_schema_says_so() -> None:
    async with serving(add, added, allow_tasks=["shop.*"], allow_events=["shop.*"]) as (
        _,
        _,
        client,
    ):
        discovery = (await client.get("/discovery")).json()
        good = await client.post("/task/shop.add", json={"input": {**GOOD, "sizes": {"s": 1}}})
        answers = [await client.post("/task/shop.add", json={"input": v}) for v, _ in WRONG]
        events = [await client.post("/event/shop.added", json={"payload": v}) for v, _ in WRONG]
    assert good.status_code == 200
    assert good.json()["result"] == {"tags": ["a", "b"], "sizes": {"s": 1.0}}
    for (_, details), answer in zip(WRONG, answers, strict=True):
        assert answer.status_code == 422
        body = failure(answer)
        assert (body["code"], body["details"]) == ("invalid_input", details)
    for (_, details), answer in zip(WRONG, events, strict=True):
        assert answer.status_code == 422
        assert failure(answer)["details"] == [d.replace("input", "payload", 1) for d in details]
    # What the server answers, its discovery schema predicts.
    [task] = discovery["tasks"]
    schema = task["input_schema"]
    assert schema["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert accepted_by_schema(schema, GOOD)
    for value, _ in WRONG:
        assert not accepted_by_schema(schema, value)


@pytest.mark.parametrize(("value", "details"), WRONG[:2])
async def test_run_task_refuses_the_reported_shapes_too(
    value: dict[str, Any], details: list[str]
) -> None:
    async with kernel.run(kernel.App("app", register=[add])) as rt:
        with pytest.raises(kernel.ConfigError) as caught:
            await rt.run_task(add, value)
    assert caught.value.problems == details
