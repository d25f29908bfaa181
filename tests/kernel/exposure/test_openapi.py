"""``GET {base}/openapi.json``: a valid OpenAPI 3.1 document, built from the discovery
schemas, that a live server lives up to (schemathesis fuzzes it: no 5xx, every response
conforms)."""

from __future__ import annotations

import importlib.metadata
from datetime import date
from typing import Any, Literal

import attrs
import httpx
import hypothesis
import openapi_spec_validator
import pytest
import schemathesis
import trio
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks

import kernel
from kernel.exposure._openapi import openapi_document
from tests.kernel.exposure.console.apps import DEFINITIONS as CONSOLE_DEFINITIONS
from tests.kernel.exposure.console.apps import ENGINE, approval
from tests.kernel.exposure.console.apps import Order as ConsoleOrder
from tests.kernel.exposure.servers import AUTH, HEADERS, TOKEN, failure, serving


@attrs.frozen
class Item:
    name: str
    tags: tuple[str, ...] = ()


@attrs.frozen
class Tree:
    label: str
    children: list[Tree] = attrs.Factory(list)


@attrs.frozen
class Receipt:
    total: int
    kind: Literal["sale", "refund"]
    day: date | None = None


class SoldOut(kernel.PublicError):
    http_status = 409
    # (Codes are process-wide: test_remote has its own out_of_stock.)
    code = "cart_sold_out"


@kernel.task("cart.buy", input=Item, result=Receipt)
async def buy(item: Item) -> Receipt:
    """Buy one item (409 when it is called 'gone')."""
    if item.name == "gone":
        raise SoldOut("sold out")
    return Receipt(len(item.name), "sale", date(2026, 1, 2))


@kernel.task("cart.count", input=Tree)
async def count(tree: Tree) -> int:
    """Nodes in the tree (the result from the return annotation)."""
    return 1 + sum([await count.fn(child) for child in tree.children])


@kernel.task("cart.echo")
async def echo(*values: Any, scale: Any = 1) -> dict[str, list[Any]]:
    # Without input=, arguments arrive unchecked (any JSON): the body must take any.
    return {"values": list(values), "scales": [scale] * len(values)}


@kernel.task("cart.anything")
async def anything(value: Any = None):  # type: ignore[no-untyped-def]
    return value


restocked = kernel.event("cart.restocked", payload=Item)
pinged = kernel.event("cart.pinged")


@kernel.hook("cart.on_restock", on=restocked)
async def on_restock(emission: kernel.Emission) -> None:
    pass


DEFINITIONS = (buy, count, echo, anything, restocked, pinged, on_restock)
OPTIONS: dict[str, Any] = {"allow_tasks": ("cart.*", "shop.buy"), "allow_events": ("cart.*",)}


async def test_the_document_is_valid_openapi_and_needs_the_token() -> None:
    async with serving(*DEFINITIONS, **OPTIONS) as (_, _, client):
        response = await client.get("/openapi.json")
        refused = await client.get("/openapi.json", headers={"authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    openapi_spec_validator.validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert refused.status_code == 401
    failure(refused)


async def test_schemas_are_discoverys_with_references_rebased() -> None:
    async with serving(*DEFINITIONS, **OPTIONS) as (_, _, client):
        document = (await client.get("/openapi.json")).json()
        discovery = (await client.get("/discovery")).json()
    schemas = document["components"]["schemas"]
    inputs = {task["id"]: task["input_schema"] for task in discovery["tasks"]}
    assert schemas["task.cart.buy.input"] == inputs["cart.buy"]
    # Tree contains itself: discovery's "#" is the component's pointer here.
    tree = schemas["task.cart.count.input"]
    assert tree["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/task.cart.count.input"
    }
    assert schemas["task.cart.count.result"] == {"type": "integer"}
    assert schemas["task.cart.buy.result"]["properties"]["kind"] == {
        "type": "string",
        "enum": ["sale", "refund"],
    }
    assert schemas["task.cart.echo.result"] == {
        "type": "object",
        "additionalProperties": {"type": "array"},
    }
    assert schemas["task.cart.anything.result"] == {}
    buy_op = document["paths"]["/__runner/task/cart.buy"]["post"]
    assert buy_op["requestBody"]["required"] is True
    statuses = set(buy_op["responses"])
    assert {"200", "400", "401", "404", "408", "413", "422", "500", "503", "default"} == statuses
    event = document["paths"]["/__runner/event/cart.restocked"]["post"]
    assert event["requestBody"]["content"]["application/json"]["schema"]["required"] == ["payload"]
    assert document["paths"]["/health"]["get"]["security"] == []


def test_an_anonymous_exposure_has_no_security_and_may_answer_415() -> None:
    config = kernel.exposure.ExposureConfig(allow_anonymous=True, allow_tasks=("cart.*",))
    document = openapi_document(title="a", config=config, tasks={"cart.buy": buy}, events={})
    openapi_spec_validator.validate(document)
    assert "security" not in document
    responses = document["paths"]["/__runner/task/cart.buy"]["post"]["responses"]
    assert "415" in responses
    assert "401" not in responses


def _fuzz(document: dict[str, Any], base_url: str) -> int:
    """Every operation of ``document``, fuzzed against the live server at ``base_url``;
    returns how many requests were sent."""
    schema = schemathesis.openapi.from_dict(document)
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        # (A GET without parameters has nothing to get wrong: no negative cases.)
        modes = [GenerationMode.POSITIVE]
        if operation.method == "post":
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @hypothesis.settings(
                max_examples=5,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                nonlocal sent
                sent += 1
                case.call_and_validate(
                    base_url=base_url,
                    # Spelt as the security scheme's header: the ignored_auth check's probes
                    # take it off, and put a wrong token in its place.
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    # positive_data_acceptance: attrs validators and business rules may
                    # refuse (422, 409) an input the schema allows.
                    excluded_checks=[checks.positive_data_acceptance],
                    timeout=10,
                )

            run()
    return sent


@pytest.mark.slow
async def test_schemathesis_finds_no_5xx_and_no_response_off_the_document() -> None:
    # With the console on, and a durable engine behind it: its API is fuzzed too. Its own
    # deadline: a few hundred requests take a few seconds (more under coverage).
    exposure = kernel.exposure.http("exposure", auth=AUTH, console=True, **OPTIONS)
    app = kernel.App("app", register=[*DEFINITIONS, *CONSOLE_DEFINITIONS, exposure])
    with trio.fail_after(120):
        async with kernel.run(app) as rt:
            await rt.resource(ENGINE).start(approval, ConsoleOrder("tea"))
            served = rt.resource(exposure)
            async with httpx.AsyncClient(base_url=served.base_url, headers=HEADERS) as client:
                document = (await client.get("/openapi.json")).json()
            sent = await trio.to_thread.run_sync(_fuzz, document, served.url)
    assert sum("/console/api/" in path for path in document["paths"]) == 13
    assert sent > 120


@kernel.task("cart.unknown")
async def unknown() -> Missing:  # type: ignore[name-defined]  # noqa: F821
    return None


def test_what_cannot_be_described_is_any_value_and_probes_follow_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_distribution(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", no_distribution)
    config = kernel.exposure.ExposureConfig(
        auth=AUTH, allow_tasks=("cart.*",), health=False, metrics=False
    )
    document = openapi_document(
        title="a", config=config, tasks={"cart.unknown": unknown}, events={"cart.pinged": pinged}
    )
    openapi_spec_validator.validate(document)
    assert document["components"]["schemas"]["task.cart.unknown.result"] == {}
    assert document["info"]["version"] == "0"
    assert not {"/health", "/ready", "/metrics"} & set(document["paths"])
    event = document["paths"]["/__runner/event/cart.pinged"]["post"]
    assert event["requestBody"]["required"] is False


def test_a_result_type_that_contains_itself_is_a_component_of_its_own() -> None:
    @kernel.task("cart.trees")
    async def trees() -> list[Tree]:
        return []

    config = kernel.exposure.ExposureConfig(auth=AUTH, allow_tasks=("cart.*",))
    document = openapi_document(title="a", config=config, tasks={"cart.trees": trees}, events={})
    openapi_spec_validator.validate(document)
    result = document["components"]["schemas"]["task.cart.trees.result"]
    pointer = "#/components/schemas/task.cart.trees.result/$defs/Tree"
    assert result["items"]["properties"]["children"]["items"] == {"$ref": pointer}
    assert result["$defs"]["Tree"]["properties"]["children"]["items"] == {"$ref": pointer}
