"""The console's JSON API against a live exposure: auth, shapes, pagination and filters,
bad parameters (400/404 with the usual envelope), durable actions, lanes, and its place in
the OpenAPI document."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import attrs
import httpx
import jsonschema
import openapi_spec_validator
import pytest
import trio

import kernel
import middleware as mw
from kernel import durable
from kernel.exposure import http
from kernel.exposure.console import LaneView
from kernel.exposure.console._views import started_values
from kernel.metrics import MetricsRegistry
from resilience import redis as shared
from tests.kernel.exposure.console.apps import (
    DEFINITIONS,
    ENGINE,
    Order,
    approval,
    buy,
    fresh_store,
)
from tests.kernel.exposure.servers import AUTH, DEADLINE, HEADERS, failure
from tests.resilience.redis.helpers import eventually_async

API = "/console/api"


async def shaped(client: httpx.AsyncClient, name: str, path: str, **options: Any) -> Any:
    """``GET {API}/{path}``'s JSON, validated against the console schema ``name`` of the
    exposure's own OpenAPI document."""
    response = await client.get(f"{API}/{path}", **options)
    assert response.status_code == 200, response.text
    body = response.json()
    document = (await client.get("/openapi.json")).json()
    root = {"$ref": f"#/components/schemas/console.{name}", "components": document["components"]}
    jsonschema.Draft202012Validator(root).validate(body)
    return body


OPTIONS: dict[str, Any] = {"allow_tasks": ("shop.buy",), "console": True}


@asynccontextmanager
async def console(
    *extra: object, **options: Any
) -> AsyncIterator[tuple[kernel.Runtime, httpx.AsyncClient]]:
    """The test app with a console exposure, counting task calls in a registry of its own."""
    exposure = http("exposure", auth=AUTH, **{**OPTIONS, **options})
    app = kernel.App("app", register=[*DEFINITIONS, *extra, exposure], overrides=[fresh_store()])
    with trio.fail_after(DEADLINE):
        async with (
            kernel.run(app, metrics=MetricsRegistry()) as rt,
            httpx.AsyncClient(
                base_url=rt.resource(exposure).base_url, headers=dict(HEADERS), timeout=DEADLINE
            ) as client,
        ):
            yield rt, client


async def test_every_endpoint_needs_the_token_but_the_page_does_not() -> None:
    async with console() as (_, client):
        bare = {"authorization": ""}
        for path in ("overview", "app", "graph", "health", "primitives", "tasks", "lanes"):
            refused = await client.get(f"{API}/{path}", headers=bare)
            assert refused.status_code == 401, path
            assert failure(refused)["code"] == "unauthorized"
        for path in ("durable/executions", "durable/executions/x"):
            assert (await client.get(f"{API}/{path}", headers=bare)).status_code == 401
        posted = await client.post(f"{API}/durable/recover", headers=bare)
        assert posted.status_code == 401
        wrong = await client.get(f"{API}/app", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        page = await client.get("/console/", headers=bare)
        script = await client.get("/console/static/console.js", headers=bare)
        missing = await client.get("/console/static/secrets.txt", headers=bare)
        redirect = await client.get("/console", headers=bare)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "set-cookie" not in page.headers
    assert '<form id="token-form">' in page.text
    assert script.status_code == 200
    assert "sessionStorage" in script.text
    assert missing.status_code == 404
    failure(missing)
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/__runner/console/")


async def test_an_exposure_without_console_serves_none_of_it() -> None:
    async with console(console=False) as (_, client):
        assert (await client.get("/console/")).status_code == 404
        assert (await client.get(f"{API}/app")).status_code == 404
        document = (await client.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if "/console/" in path]


async def test_app_graph_health_primitives_and_tasks() -> None:
    async with console(health_cache=0) as (rt, client):
        await rt.run_task(buy, Order("tea"))
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await rt.run_task(buy, Order("fail"))
        app = await shaped(client, "app", "app")
        graph = await shaped(client, "graph", "graph")
        health = await shaped(client, "health", "health")
        primitives = await shaped(client, "primitives", "primitives")
        tasks = await shaped(client, "tasks", "tasks")
        rt.resource(DEFINITIONS[0]).broken = True
        broken = await shaped(client, "health", "health")
    assert app["id"] == "app"
    assert (app["state"], app["ready"], app["shutting_down"]) == ("ready", True, False)
    assert app["uptime_s"] >= 0
    kinds = {node["id"]: node["kind"] for node in graph["nodes"]}
    assert kinds["shop.buy"] == "task"
    assert kinds["shop.warehouse"] == "resource"
    assert kinds["shop.placed"] == "event"
    assert kinds["shop.notify"] == "hook"
    assert "kernel.logger" not in kinds  # the kernel's built-ins are not the app's graph
    edges = {(edge["from"], edge["to"], edge["kind"]) for edge in graph["edges"]}
    assert ("shop.buy", "shop.warehouse", "dep") in edges
    assert ("shop.notify", "shop.placed", "on") in edges
    assert health["status"] == "degraded"  # the breaker opened
    assert broken["checks"]["shop.warehouse"]["status"] == "unhealthy"
    assert "warehouse does not answer" in broken["checks"]["shop.warehouse"]["error"]
    (circuit,) = primitives["circuits"]
    assert (circuit["name"], circuit["tasks"], circuit["scope"]) == (
        "payments",
        ["shop.buy"],
        "local",
    )
    assert circuit["state"] == "open"
    assert 0 < circuit["probe_in_s"] <= 30
    assert circuit["failures"] == 2
    (limiter,) = primitives["limiters"]
    assert limiter["tasks"] == ["shop.limited"]
    (bulkhead,) = primitives["bulkheads"]
    assert (bulkhead["max_concurrent"], bulkhead["active"]) == (3, 0)
    rows = {row["id"]: row for row in tasks["tasks"]}
    assert tasks["metrics"] is True
    assert rows["shop.buy"]["allowed"] is True
    assert rows["shop.limited"]["allowed"] is False
    assert (rows["shop.buy"]["calls"], rows["shop.buy"]["errors"]) == (3, 2)
    assert rows["shop.buy"]["p50_ms"] is not None
    assert rows["shop.buy"]["p99_ms"] >= rows["shop.buy"]["p50_ms"]
    assert rows["shop.buy"]["history"][-1][1:] == [3, 2]
    assert rows["shop.limited"]["calls"] == 0


async def _start(rt: kernel.Runtime, items: list[str]) -> list[str]:
    engine = rt.resource(ENGINE)
    ids = []
    for item in items:
        ids.append(await engine.start(approval, Order(item)))
        await trio.sleep(0.002)  # distinct creation times: newest first is well defined
    return ids


async def _until(client: httpx.AsyncClient, execution_id: str, status: str) -> dict[str, Any]:
    with trio.fail_after(5):
        while True:
            detail = (await client.get(f"{API}/durable/executions/{execution_id}")).json()
            if detail["execution"]["status"] == status:
                return detail
            await trio.sleep(0.02)


async def test_executions_newest_first_filtered_and_paged() -> None:
    async with console() as (rt, client):
        ids = await _start(rt, ["a", "b", "c", "d", "e"])
        await _until(client, ids[-1], "waiting")
        first = await shaped(client, "executions", "durable/executions", params={"limit": 2})
        second = (
            await client.get(f"{API}/durable/executions", params={"limit": 2, "offset": 2})
        ).json()
        last = (
            await client.get(f"{API}/durable/executions", params={"limit": 2, "offset": 4})
        ).json()
        waiting = (
            await client.get(f"{API}/durable/executions", params={"status": "waiting"})
        ).json()
        done = (
            await client.get(f"{API}/durable/executions", params={"status": "completed"})
        ).json()
        other = (
            await client.get(f"{API}/durable/executions", params={"workflow": "nothing.here"})
        ).json()
    assert first["engines"] == ["shop.durable"]
    assert first["workflows"] == ["shop.approval"]
    assert first["total"] == 5
    listed = [e["id"] for page in (first, second, last) for e in page["executions"]]
    assert listed == ids[::-1]
    assert len(waiting["executions"]) == waiting["total"]
    assert {e["status"] for e in waiting["executions"]} <= {"waiting"}
    assert done["total"] == 0
    assert other["total"] == 0


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"limit": "0"}, 400),
        ({"limit": "201"}, 400),
        ({"limit": "ten"}, 400),
        ({"offset": "-1"}, 400),
        ({"status": "asleep"}, 400),
        ({"colour": "red"}, 400),
        ({"engine": "nope"}, 404),
    ],
)
async def test_bad_listing_parameters(params: dict[str, str], status: int) -> None:
    async with console() as (_, client):
        response = await client.get(f"{API}/durable/executions", params=params)
    assert response.status_code == status
    failure(response)


async def test_detail_signal_cancel_and_recover() -> None:
    async with console() as (rt, client):
        waiting_id, cancelled_id = await _start(rt, ["tea", "cake"])
        await _until(client, waiting_id, "waiting")
        missing = await client.get(f"{API}/durable/executions/nope")
        extra = await client.get(f"{API}/durable/executions/{waiting_id}", params={"x": "1"})
        bad_bodies = [
            await client.post(f"{API}/durable/executions/{waiting_id}/signal", json=body)
            for body in (
                {},
                {"signal": 3},
                {"signal": "not an id!"},
                {"signal": "shop.approved", "more": 1},
                [1],
            )
        ]
        not_json = await client.post(
            f"{API}/durable/executions/{waiting_id}/signal", content=b"{nope"
        )
        sent = await client.post(
            f"{API}/durable/executions/{waiting_id}/signal",
            json={"signal": "shop.approved", "payload": True},
        )
        await _until(client, waiting_id, "completed")
        detail = await shaped(client, "execution", f"durable/executions/{waiting_id}")
        again = await client.post(
            f"{API}/durable/executions/{waiting_id}/signal",
            json={"signal": "shop.approved", "payload": True},
        )
        cancelled = await client.post(f"{API}/durable/executions/{cancelled_id}/cancel")
        unknown_cancel = await client.post(f"{API}/durable/executions/nope/cancel")
        recovered = await client.post(f"{API}/durable/recover")
    assert missing.status_code == 404
    assert failure(missing)["code"] == "not_found"
    assert extra.status_code == 400
    assert [response.status_code for response in bad_bodies] == [400] * 5
    assert not_json.status_code == 400
    assert sent.json() == {"ok": True}
    execution = detail["execution"]
    assert execution["input"] == {"item": "tea"}
    assert execution["result"] == {"reserved": "reserved tea", "approved": True}
    steps = {step["step_id"]: step["result"] for step in detail["steps"]}
    assert steps["reserve"] == "reserved tea"
    kinds = [entry["kind"] for entry in detail["audit"]]
    assert "step_completed" in kinds
    assert "signal_delivered" in kinds
    assert [entry["seq"] for entry in detail["audit"]] == sorted(e["seq"] for e in detail["audit"])
    assert again.status_code == 409
    failure(again)
    assert cancelled.status_code == 200
    assert cancelled.json()["execution"]["status"] == "cancelled"
    assert unknown_cancel.status_code == 404
    assert recovered.json() == {"ok": True, "active": []}


@attrs.define
class DeadLetter:
    message_id: str
    event_id: str
    payload: Any
    error: str
    attempts: int


@attrs.define
class FakeLane:
    """Implements the lane value of API.md in memory, as `LaneView` reads it."""

    letters: list[DeadLetter]
    replayed: list[str] = attrs.Factory(list)

    async def pending(self) -> int:
        return 2

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.letters[:limit]

    async def replay(self, message_id: str) -> None:
        self.replayed.append(message_id)
        self.letters = [d for d in self.letters if d.message_id != message_id]

    async def lag(self) -> int:
        return 7


@kernel.resource("shop.lane")
async def lane() -> FakeLane:
    return FakeLane([DeadLetter("1-0", "shop.placed", {"n": 1}, "ValueError: bad", 5)])


async def test_lanes_are_read_through_the_protocol_and_replayed() -> None:
    async with console() as (_, client):
        empty = (await client.get(f"{API}/lanes")).json()
    assert empty == {"lanes": []}
    async with console(lane) as (rt, client):
        fake = rt.resource(lane)
        assert isinstance(fake, LaneView)
        view = await shaped(client, "lanes", "lanes")
        bad = await client.post(f"{API}/lanes/shop.lane/replay", json={"id": "1-0"})
        unknown = await client.post(f"{API}/lanes/nope/replay", json={"message_id": "1-0"})
        replayed = await client.post(f"{API}/lanes/shop.lane/replay", json={"message_id": "1-0"})
        after = (await client.get(f"{API}/lanes")).json()
    (row,) = view["lanes"]
    assert (row["id"], row["pending"], row["lag"], row["oldest_pending_age"]) == (
        "shop.lane",
        2,
        7,
        None,
    )
    assert row["dead_letters"] == [
        {
            "message_id": "1-0",
            "event_id": "shop.placed",
            "payload": {"n": 1},
            "error": "ValueError: bad",
            "attempts": 5,
        }
    ]
    assert bad.status_code == 400
    assert unknown.status_code == 404
    assert replayed.json() == {"ok": True}
    assert fake.replayed == ["1-0"]
    assert after["lanes"][0]["dead_letters"] == []


@attrs.frozen
class Placed:
    order_id: str


placed = kernel.event("shop.order_placed", payload=Placed)
real_lane = kernel.lanes.memory(
    "shop.orders", events=[placed], max_attempts=1, retry_delay=0.01, claim_idle=5.0
)


@kernel.hook("shop.refuse", on=placed)
async def refuse(emission: kernel.Emission) -> None:
    raise ValueError(f"no stock for {emission.payload.order_id}")


async def test_a_kernel_lane_shows_its_dead_letters_and_replays_one() -> None:
    async with console(placed, real_lane, refuse) as (rt, client):
        value = rt.resource(real_lane)
        assert isinstance(value, LaneView)
        await rt.emit(placed, Placed("A-1"))

        async def buried(count: int) -> bool:
            return value.stats().dead_lettered >= count

        await eventually_async(lambda: buried(1), within=DEADLINE)
        view = await shaped(client, "lanes", "lanes")
        (row,) = view["lanes"]
        (letter,) = row["dead_letters"]
        replayed = await client.post(
            f"{API}/lanes/shop.orders/replay", json={"message_id": letter["message_id"]}
        )
        await eventually_async(lambda: buried(2), within=DEADLINE)  # it ran again, and failed
    assert (row["id"], row["pending"], row["lag"], row["oldest_pending_age"]) == (
        "shop.orders",
        0,
        0,
        None,
    )
    assert (letter["event_id"], letter["payload"], letter["attempts"]) == (
        "shop.order_placed",
        {"order_id": "A-1"},
        1,
    )
    assert "no stock for A-1" in letter["error"]
    assert replayed.json() == {"ok": True}


async def test_the_console_api_is_in_the_openapi_document() -> None:
    async with console() as (_, client):
        document = (await client.get("/openapi.json")).json()
    openapi_spec_validator.validate(document)
    paths = document["paths"]
    assert "get" in paths["/__runner/console/api/durable/executions"]
    assert "post" in paths["/__runner/console/api/durable/executions/{id}/signal"]
    listing = paths["/__runner/console/api/durable/executions"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "engine",
        "status",
        "workflow",
        "offset",
        "limit",
    }
    assert "401" in listing["responses"]


async def test_tasks_not_run_yet_count_from_zero_and_the_worker_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIO_RUNNER_WORKER", "2")
    async with console() as (_, client):
        tasks = await shaped(client, "tasks", "tasks")
        app = await shaped(client, "app", "app")
        bad = await client.get(f"{API}/tasks", params={"since": "1"})
    row = next(row for row in tasks["tasks"] if row["id"] == "shop.limited")
    assert (row["calls"], row["errors"], row["in_flight"], row["p99_ms"]) == (0, 0, 0, None)
    assert row["history"] == [[0.0, 0, 0]]
    assert app["worker"] == "2"
    assert bad.status_code == 400
    assert "since" in failure(bad)["message"]


async def test_an_app_without_a_durable_engine_lists_no_executions() -> None:
    exposure = http("exposure", auth=AUTH, allow_tasks=("shop.buy",), console=True)
    app = kernel.App("bare", register=[DEFINITIONS[0], buy, exposure])
    with trio.fail_after(DEADLINE):
        async with (
            kernel.run(app) as rt,
            httpx.AsyncClient(
                base_url=rt.resource(exposure).base_url, headers=dict(HEADERS)
            ) as client,
        ):
            listed = (await client.get(f"{API}/durable/executions")).json()
            named = await client.get(f"{API}/durable/executions", params={"engine": "x"})
            detail = await client.get(f"{API}/durable/executions/abc")
            tasks = (await client.get(f"{API}/tasks")).json()
    assert (listed["engines"], listed["total"], listed["executions"]) == ([], 0, [])
    assert named.status_code == 404
    assert detail.status_code == 404
    assert tasks["metrics"] is False
    assert "calls" not in tasks["tasks"][0]


async def test_records_that_do_not_read_back_fail_only_themselves(tmp_path: Path) -> None:
    path = tmp_path / "shop.sqlite3"
    kept = durable.engine("shop.durable", store=durable.SqliteStore(path), worker=False)
    exposure = http("exposure", auth=AUTH, allow_tasks=("shop.buy",), console=True)
    app = kernel.App(
        "app", register=[*DEFINITIONS, exposure], overrides=[kernel.override(ENGINE, kept)]
    )
    with trio.fail_after(DEADLINE):
        async with kernel.run(app) as rt:
            sound, garbled, broken = await _start(rt, ["a", "b", "c"])
            with closing(sqlite3.connect(path)) as db, db:
                db.execute("UPDATE executions SET input = '{nope' WHERE id = ?", (garbled,))
                db.execute("UPDATE executions SET attempt = 'many' WHERE id = ?", (broken,))
            async with httpx.AsyncClient(
                base_url=rt.resource(exposure).base_url, headers=dict(HEADERS)
            ) as client:
                listed = (await client.get(f"{API}/durable/executions")).json()
                shown = (await client.get(f"{API}/durable/executions/{garbled}")).json()
                refused = await client.get(f"{API}/durable/executions/{broken}")
                signalled = await client.post(
                    f"{API}/durable/executions/{broken}/signal", json={"signal": "shop.approved"}
                )
                by_name = await client.get(
                    f"{API}/durable/executions/{sound}", params={"engine": "shop.durable"}
                )
    assert [e["id"] for e in listed["executions"]] == [garbled, sound]
    assert shown["execution"]["input"] == {"unparsed": "{nope"}
    assert refused.status_code == 409
    assert failure(refused)["code"] == "corrupt_record"
    assert "many" not in refused.text
    assert signalled.status_code == 409
    assert by_name.json()["execution"]["input"] == {"item": "a"}


async def test_a_shared_primitive_whose_store_fails_shows_the_error_in_its_row() -> None:
    store = shared.Store.from_url("redis://127.0.0.1:9")  # never opened
    fleet = shared.CircuitBreaker(store, name="fleet")

    @kernel.task("shop.fleet", middleware=[mw.circuit_breaker(fleet)])
    async def fleet_task() -> None:
        pass

    async with console(fleet_task) as (_, client):
        primitives = await shaped(client, "primitives", "primitives")
    row = next(row for row in primitives["circuits"] if row["name"] == "fleet")
    assert (row["scope"], row["tasks"]) == ("shared", ["shop.fleet"])
    assert row["error"].startswith("StoreClosed: ")
    assert "state" not in row


@attrs.define
class FailingLane(FakeLane):
    async def pending(self) -> int:
        raise ConnectionError("redis is away")


@kernel.resource("shop.failing_lane")
async def failing_lane() -> FailingLane:
    return FailingLane([])


@kernel.resource("shop.odd_lane")
async def odd_lane() -> FakeLane:
    return FakeLane([DeadLetter("2-0", "shop.placed", {1, 2}, "boom", 1)])


async def test_a_lane_that_fails_shows_its_error_and_odd_values_their_repr() -> None:
    async with console(failing_lane, odd_lane) as (_, client):
        view = (await client.get(f"{API}/lanes")).json()
        wrong = await client.post(f"{API}/lanes/shop.odd_lane/replay", json={"message_id": 7})
    rows = {row["id"]: row for row in view["lanes"]}
    assert rows["shop.failing_lane"]["error"] == "ConnectionError: redis is away"
    assert rows["shop.odd_lane"]["dead_letters"][0]["payload"] == "{1, 2}"
    assert wrong.status_code == 400


def test_resources_not_started_are_left_out() -> None:
    class Starting:
        """A runtime whose second resource is still starting (``parallel_init``)."""

        graph = kernel.dry_run(kernel.App("a", register=[DEFINITIONS[0], lane]))

        def resource(self, definition: Any) -> Any:
            if definition.id == "shop.lane":
                raise kernel.KernelError("resource 'shop.lane' is not started")
            return "value"

    values = started_values(Starting())  # type: ignore[arg-type]
    assert values["shop.warehouse"] == "value"
    assert "shop.lane" not in values


async def test_the_console_shares_the_health_report_of_the_probes() -> None:
    async with console(health_cache=60) as (rt, client):
        probed = (await client.get(client.base_url.copy_with(path="/health"))).json()
        rt.resource(DEFINITIONS[0]).broken = True
        shown = (await client.get(f"{API}/health")).json()
    assert shown == probed  # one report per period: open consoles do not multiply checks


async def test_the_overview_holds_what_the_page_polls() -> None:
    async with console(health_cache=60) as (_, client):
        overview = await shaped(client, "overview", "overview")
        parts = {
            name: (await client.get(f"{API}/{name}")).json()
            for name in ("health", "primitives", "lanes")
        }
    assert set(overview) == {"app", "health", "primitives", "tasks", "lanes"}
    assert {name: overview[name] for name in parts} == parts
    assert overview["app"]["id"] == "app"
    assert [row["id"] for row in overview["tasks"]["tasks"]] == [
        "shop.buy",
        "shop.limited",
        "shop.approval",
    ]


async def test_an_anonymous_console_takes_posts_only_as_json() -> None:
    exposure = http("exposure", allow_anonymous=True, allow_tasks=("shop.buy",), console=True)
    app = kernel.App("app", register=[*DEFINITIONS, exposure], overrides=[fresh_store()])
    with trio.fail_after(DEADLINE):
        async with kernel.run(app) as rt:
            (execution_id,) = await _start(rt, ["tea"])
            async with httpx.AsyncClient(base_url=rt.resource(exposure).base_url) as client:
                # What a cross-site form could send: refused before anything runs.
                form = await client.post(
                    f"{API}/durable/executions/{execution_id}/cancel",
                    content=b"x=1",
                    headers={"content-type": "text/plain"},
                )
                status = (await client.get(f"{API}/durable/executions/{execution_id}")).json()
                cancelled = await client.post(
                    f"{API}/durable/executions/{execution_id}/cancel", json={}
                )
                document = (await client.get("/openapi.json")).json()
    assert form.status_code == 415
    assert status["execution"]["status"] != "cancelled"
    assert cancelled.json()["execution"]["status"] == "cancelled"
    responses = document["paths"]["/__runner/console/api/durable/recover"]["post"]["responses"]
    assert "415" in responses
    assert "401" not in responses
