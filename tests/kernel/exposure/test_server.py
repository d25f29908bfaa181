"""kernel.exposure.http against a real server on loopback: calls, errors, request ids,
discovery, health/ready/metrics, and the graceful stop."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import attrs
import httpx
import pytest
import trio
from loguru import logger

import kernel
from kernel import Scope, tags
from kernel._doctor import exposure_rows
from kernel.exposure import Exposure, ExposureConfig, http, principal
from kernel.exposure import request_id as outgoing_request_id
from kernel.exposure._app import build_app
from kernel.exposure._config import EXPOSURE
from kernel.exposure._server import SERVER_LOGGER, _start, server_config
from middleware.observability import MetricsRegistry
from tests.kernel.exposure.servers import AUTH, DEADLINE, HEADERS, TOKEN, failure, serving

UUID_HEX = re.compile(r"[0-9a-f]{32}")


@attrs.frozen
class Order:
    item: str
    quantity: int
    note: str = ""


@attrs.frozen
class Receipt:
    item: str
    total: int


@kernel.task("api.add")
async def add(a: int, b: int = 0) -> int:
    return a + b


@kernel.task("api.nothing")
async def nothing() -> str:
    return "nothing"


@kernel.task("api.order", input=Order)
async def order(o: Order) -> Receipt:
    return Receipt(o.item, o.quantity * 3)


class OutOfStock(kernel.PublicError):
    http_status = 409
    code = "out_of_stock"


@kernel.task("api.sold_out")
async def sold_out() -> None:
    raise OutOfStock("no more widgets")


@kernel.task("api.grouped")
async def grouped() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sold_out.fn)


@kernel.task("api.crash")
async def crash() -> None:
    raise RuntimeError("database password is hunter2")


@kernel.task("api.odd_status")
async def odd_status() -> None:
    raise kernel.PublicError("teapot", code="odd", http_status=200)


@kernel.task("api.unserializable")
async def unserializable() -> object:
    return object()


@kernel.task("api.who")
async def who() -> dict[str, Any]:
    return {"principal": principal.get(), "request_id": outgoing_request_id.get()}


@kernel.resource("store")
async def store() -> list[str]:
    return []


@kernel.task("api.remember", deps={"store": store})
async def remember(word: str, *, store: list[str]) -> list[str]:
    store.append(word)
    return store


noted = kernel.event("api.noted", payload=Order)
pinged = kernel.event("api.pinged")
emitted: list[Any] = []


@kernel.hook("on-noted", on=[noted, pinged])
async def on_noted(emission: kernel.Emission) -> None:
    emitted.append(emission.payload)


EVERYTHING = (
    add,
    nothing,
    order,
    sold_out,
    grouped,
    crash,
    odd_status,
    unserializable,
    who,
    store,
    remember,
    noted,
    pinged,
    on_noted,
)


@pytest.fixture
def records() -> Iterator[list[Any]]:
    """The loguru records the exposure logs during the test."""
    seen: list[Any] = []
    sink = logger.add(
        lambda message: seen.append(message.record),
        level="DEBUG",
        filter=lambda record: record["extra"].get("source") == "kernel.exposure",
    )
    yield seen
    logger.remove(sink)


# --- tasks ----------------------------------------------------------------------------------


async def test_task_calls_map_input_to_arguments() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.*"]) as (_, _, client):
        positional = await client.post("/task/api.add", json={"input": [2, 3]})
        keywords = await client.post("/task/api.add", json={"input": {"a": 2, "b": 5}})
        absent = await client.post("/task/api.nothing", json={})
        null = await client.post("/task/api.nothing", json={"input": None})
        empty = await client.post("/task/api.nothing")
    assert positional.status_code == 200
    assert positional.json() == {"ok": True, "result": 5}
    assert positional.headers["content-type"] == "application/json"
    assert keywords.json() == {"ok": True, "result": 7}
    for response in (absent, null, empty):
        assert response.status_code == 200
        assert response.json() == {"ok": True, "result": "nothing"}


async def test_typed_input_is_structured_and_the_result_unstructured() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.order"]) as (_, _, client):
        response = await client.post(
            "/task/api.order", json={"input": {"item": "widget", "quantity": 2}}
        )
    assert response.json() == {"ok": True, "result": {"item": "widget", "total": 6}}


async def test_invalid_typed_input_is_422_with_field_paths() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.order"]) as (_, _, client):
        wrong = await client.post(
            "/task/api.order", json={"input": {"item": "widget", "quantity": "many", "x": 1}}
        )
        absent = await client.post("/task/api.order", json={})
        scalar = await client.post("/task/api.order", json={"input": 3})
    assert wrong.status_code == 422
    body = failure(wrong)
    assert body["code"] == "invalid_input"
    assert body["message"] == "invalid input for task 'api.order'"
    assert body["details"] == [
        "input.quantity: expected int, got str",
        "input: extra fields found (x)",
    ]
    # Absent input is {}: the missing fields are named.
    assert failure(absent)["details"] == [
        "input.item: required field missing",
        "input.quantity: required field missing",
    ]
    assert failure(scalar)["details"] == [
        "input: expected a mapping of Order's fields, got int",
    ]


async def test_untyped_input_that_does_not_bind_is_422() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.*"]) as (_, _, client):
        missing = await client.post("/task/api.add", json={"input": {"b": 1}})
        extra = await client.post("/task/api.add", json={"input": [1, 2, 3]})
        scalar = await client.post("/task/api.add", json={"input": "two"})
        number = await client.post("/task/api.add", json={"input": 2.5})
        flag = await client.post("/task/api.add", json={"input": True})
    assert failure(missing)["details"] == ["input: missing a required argument: 'a'"]
    assert failure(extra)["details"] == ["input: too many positional arguments"]
    expected = "input: expected null, an array (positional arguments) or an object (keyword "
    assert failure(scalar)["details"] == [expected + "arguments), got a string"]
    assert failure(number)["details"] == [expected + "arguments), got a number"]
    assert failure(flag)["details"] == [expected + "arguments), got a boolean"]
    assert {missing.status_code, extra.status_code, scalar.status_code} == {422}


async def test_a_caller_cannot_pass_an_injected_dependency() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.remember"]) as (rt, _, client):
        hijack = await client.post(
            "/task/api.remember", json={"input": {"word": "a", "store": ["evil"]}}
        )
        fine = await client.post("/task/api.remember", json={"input": ["b"]})
        assert rt.resource(store) == ["b"]
    assert hijack.status_code == 422
    assert failure(hijack)["details"] == ["input: got an unexpected keyword argument 'store'"]
    assert fine.json() == {"ok": True, "result": ["b"]}


async def test_public_errors_pass_their_status_code_and_message() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.*"]) as (_, _, client):
        direct = await client.post("/task/api.sold_out")
        in_group = await client.post("/task/api.grouped")
        odd = await client.post("/task/api.odd_status")
    for response in (direct, in_group):
        assert response.status_code == 409
        body = failure(response)
        assert (body["code"], body["message"]) == ("out_of_stock", "no more widgets")
    # A status that is not an error status cannot pass: 500, with the code and message kept.
    assert odd.status_code == 500
    assert (failure(odd)["code"], failure(odd)["message"]) == ("odd", "teapot")


async def test_an_unexpected_exception_is_a_bare_500_and_logged(records: list[Any]) -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.*"]) as (_, _, client):
        crashed = await client.post("/task/api.crash", headers={"x-request-id": "req-1"})
        unserializable_result = await client.post("/task/api.unserializable")
    assert crashed.status_code == 500
    assert crashed.json() == {
        "ok": False,
        "code": "internal",
        "message": "internal error",
        "request_id": "req-1",
    }
    assert "hunter2" not in crashed.text
    assert "RuntimeError" not in crashed.text
    assert unserializable_result.status_code == 500
    assert failure(unserializable_result)["message"] == "internal error"
    logged = next(r for r in records if r["extra"]["data"]["request_id"] == "req-1")
    assert logged["level"].name == "ERROR"
    assert logged["message"] == "POST /__runner/task/api.crash -> 500: RuntimeError"
    assert logged["exception"].type is RuntimeError


async def test_each_call_is_logged_with_its_request_id_and_principal(
    records: list[Any],
) -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.*"]) as (_, _, client):
        await client.post("/task/api.add", json={"input": [1]}, headers={"x-request-id": "r-9"})
    [logged] = [r for r in records if r["extra"].get("data", {}).get("request_id") == "r-9"]
    assert logged["level"].name == "INFO"
    assert logged["message"] == "POST /__runner/task/api.add -> 200"
    data = logged["extra"]["data"]
    assert {key: data[key] for key in ("method", "path", "status", "principal")} == {
        "method": "POST",
        "path": "/__runner/task/api.add",
        "status": 200,
        "principal": "tester",
    }
    assert data["duration_ms"] >= 0


async def test_tasks_see_the_principal_and_the_request_id() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.who"]) as (_, _, client):
        response = await client.post("/task/api.who", headers={"x-request-id": "abc.1"})
    assert response.json()["result"] == {"principal": "tester", "request_id": "abc.1"}
    assert principal.get() is None


# --- events ---------------------------------------------------------------------------------


async def test_events_are_emitted_with_their_payload() -> None:
    emitted.clear()
    async with serving(*EVERYTHING, allow_events=["api.*"]) as (_, _, client):
        typed = await client.post(
            "/event/api.noted", json={"payload": {"item": "pen", "quantity": 1}}
        )
        untyped = await client.post("/event/api.pinged", json={"payload": [1, "two"]})
        bare = await client.post("/event/api.pinged")
        invalid = await client.post("/event/api.noted", json={"payload": {"item": 1}})
    assert typed.json() == {"ok": True}
    assert untyped.json() == {"ok": True}
    assert bare.json() == {"ok": True}
    assert emitted == [Order("pen", 1), [1, "two"], None]
    assert invalid.status_code == 422
    assert failure(invalid)["message"] == "invalid input for event 'api.noted'"
    assert failure(invalid)["details"] == [
        "payload.item: expected str, got int",
        "payload.quantity: required field missing",
    ]


async def test_a_failing_hook_is_a_bare_500() -> None:
    boom = kernel.event("api.boom")

    @kernel.hook("explodes", on=boom)
    async def explodes(emission: kernel.Emission) -> None:
        raise ValueError("secret detail")

    async with serving(boom, explodes, allow_events=["api.boom"]) as (_, _, client):
        response = await client.post("/event/api.boom", json={"payload": 1})
    assert response.status_code == 500
    assert failure(response)["message"] == "internal error"
    assert "secret" not in response.text


# --- request ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("abc-123", True),
        ("A.b_c:d-9", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("has space", False),
        ("semi;colon", False),
        ("", False),
        ("é", False),
    ],
)
async def test_request_ids_are_echoed_when_valid_else_generated(sent: str, echoed: bool) -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.*"]) as (_, exposure, client):
        headers = {b"x-request-id": sent.encode("utf-8")}
        responses = [
            await client.post("/task/api.add", json={"input": [1]}, headers=headers),
            await client.post("/task/api.unknown", headers=headers),
            await client.get("/task/api.add", headers=headers),
            await client.get(exposure.url + "/health", headers=headers),
            await client.get(exposure.url + "/nowhere", headers=headers),
        ]
    ids = [response.headers["x-request-id"] for response in responses]
    if echoed:
        assert ids == [sent] * len(ids)
    else:
        assert all(UUID_HEX.fullmatch(id) for id in ids)
        assert len(set(ids)) == len(ids)
    for response in responses[1:3]:
        assert failure(response)["request_id"] == response.headers["x-request-id"]


async def test_unknown_routes_and_methods_answer_json() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.*"]) as (_, exposure, client):
        nowhere = await client.get(exposure.url + "/nowhere")
        slash = await client.get("/discovery/")
        method = await client.get("/task/api.add")
        head = await client.head("/task/api.add")
    assert nowhere.status_code == 404
    assert failure(nowhere)["code"] == "not_found"
    assert slash.status_code == 404  # no redirect to the slash-less path
    assert method.status_code == 405
    assert failure(method) | {"request_id": None} == {
        "ok": False,
        "code": "method_not_allowed",
        "message": "method not allowed",
        "request_id": None,
    }
    assert method.headers["allow"] == "POST"
    assert head.status_code == 405


# --- discovery ------------------------------------------------------------------------------


async def test_discovery_lists_the_allowed_ids_with_their_schemas() -> None:
    async with serving(
        *EVERYTHING, allow_tasks=["api.order", "api.add"], allow_events=["api.noted"]
    ) as (_, _, client):
        response = await client.get("/discovery")
        anonymous = await client.get("/discovery", headers={"authorization": ""})
    assert response.status_code == 200
    order_schema = {
        "type": "object",
        "properties": {
            "item": {"type": "string"},
            "quantity": {"type": "integer"},
            "note": {"type": "string"},
        },
        "required": ["item", "quantity"],
        "additionalProperties": False,
    }
    assert response.json() == {
        "ok": True,
        "tasks": [
            {"id": "api.add", "input_schema": None},
            {"id": "api.order", "input_schema": order_schema},
        ],
        "events": [{"id": "api.noted", "payload_schema": order_schema}],
    }
    assert anonymous.status_code == 401


# --- health, ready, metrics -----------------------------------------------------------------


async def test_health_ready_and_metrics_without_auth() -> None:
    registry = MetricsRegistry()
    exposure = http("exposure", auth=AUTH, allow_tasks=["api.add"])
    app = kernel.App("app", register=[add, exposure])
    with trio.fail_after(DEADLINE):
        async with kernel.run(app, metrics=registry) as rt:
            url = rt.resource(exposure).url
            async with httpx.AsyncClient(base_url=url) as client:
                await client.post("/__runner/task/api.add", json={"input": [1]}, headers=HEADERS)
                health = await client.get("/health")
                ready = await client.get("/ready")
                metrics = await client.get("/metrics")
    assert health.status_code == 200
    assert set(health.json()) == {"status", "ready", "timestamp", "checks", "circuits"}
    assert health.json()["status"] == "healthy"
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert metrics.status_code == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'trio_runner_task_calls_total{outcome="success",task="api.add"} 1.0' in metrics.text


async def test_health_is_503_when_a_critical_check_fails() -> None:
    async def failing(value: object) -> None:
        raise ConnectionError("db down")

    @kernel.resource("db", tags=[tags.critical], health=failing)
    async def db() -> str:
        return "db"

    async with serving(db, allow_tasks=["api.*"]) as (_, exposure, client):
        health = await client.get(exposure.url + "/health")
        ready = await client.get(exposure.url + "/ready")
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"
    assert health.json()["checks"]["db"]["error"] == "ConnectionError: db down"
    assert ready.status_code == 200


async def test_health_and_metrics_can_be_switched_off() -> None:
    async with serving(health=False, metrics=False, allow_tasks=["api.*"]) as (_, e, client):
        responses = [await client.get(e.url + path) for path in ("/health", "/ready", "/metrics")]
    assert [response.status_code for response in responses] == [404, 404, 404]
    assert {failure(response)["code"] for response in responses} == {"not_found"}


# --- the resource ---------------------------------------------------------------------------


async def test_the_exposure_value_and_its_tag() -> None:
    async with serving(add, allow_tasks=["api.add"], base_path="/rpc/v1") as (rt, e, client):
        assert isinstance(e, Exposure)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", e.url)
        assert e.base_url == e.url + "/rpc/v1"
        assert e.config.allow_tasks == ("api.add",)
        assert (await client.post("/task/api.add", json={"input": [4]})).json()["result"] == 4
        [(definition, config)] = rt.find(EXPOSURE)
        assert definition.id == "exposure"
        assert config is e.config
        rows = {row.check: row.status for row in exposure_rows(rt.graph)}
    assert rows == {
        "exposure.auth": "pass",
        "exposure.allow_lists": "pass",
        "exposure.body_limit": "pass",
    }


async def test_serves_on_a_given_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with serving(add, port=port, allow_tasks=["api.add"]) as (_, exposure, _):
        assert exposure.url == f"http://127.0.0.1:{port}"


async def test_serves_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:  # pragma: no cover - depends on the machine
        pytest.skip("no IPv6")
    try:
        async with serving(add, host="::1", allow_tasks=["api.add"]) as (_, exposure, client):
            response = await client.post("/task/api.add", json={"input": [1, 1]})
    except kernel.ResourceInitError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no IPv6 loopback: {exc.__cause__}")
    assert re.fullmatch(r"http://\[::1\]:\d+", exposure.url)
    assert response.json()["result"] == 2


async def test_a_port_in_use_fails_the_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exposure = http("exposure", auth=AUTH, port=port)
        with trio.fail_after(DEADLINE), pytest.raises(kernel.ResourceInitError) as caught:
            async with kernel.run(kernel.App("app", register=[exposure])):
                pass  # pragma: no cover - never started
    assert caught.value.resource_id == "exposure"
    assert isinstance(caught.value.__cause__, OSError)


async def test_without_a_runtime_it_refuses_to_start() -> None:
    config = ExposureConfig(auth=AUTH)
    async with trio.open_nursery() as nursery:
        with pytest.raises(kernel.KernelError, match="no runtime to serve"):
            await _start(Scope("exposure", nursery), config)


async def test_without_the_http_extra_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "hypercorn.config", None)
    exposure = http("exposure", auth=AUTH)
    with trio.fail_after(DEADLINE), pytest.raises(kernel.ResourceInitError) as caught:
        async with kernel.run(kernel.App("app", register=[exposure])):
            pass  # pragma: no cover - never started
    cause = caught.value.__cause__
    assert isinstance(cause, kernel.KernelError)
    assert str(cause) == (
        "kernel.exposure.http needs the 'http' extra: pip install 'trio-runner[http]'"
    )
    assert isinstance(cause.__cause__, ImportError)


def test_the_server_logs_to_a_logging_logger_and_no_access_log() -> None:
    from hypercorn.config import Config

    server = server_config(Config(), ExposureConfig(auth=AUTH, graceful_timeout=1.5), 7)
    assert server.bind == ["fd://7"]
    assert server.accesslog is None
    assert isinstance(server.errorlog, logging.Logger)
    assert server.errorlog.name == SERVER_LOGGER
    assert server.graceful_timeout == 1.5
    assert server.include_server_header is False


@pytest.mark.slow
def test_declaring_an_exposure_imports_no_http_stack() -> None:
    code = (
        "import sys, kernel, kernel.exposure._server as s\n"
        "s.http('x', auth=s.BearerAuth(tokens=['t0123']))\n"
        "print(sorted(m for m in ('hypercorn', 'starlette', 'httpx') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(out.stdout.replace("'", '"')) == []


# --- lifecycle ------------------------------------------------------------------------------


async def test_calls_before_the_app_is_ready_are_503_not_ready() -> None:
    exposure = http("exposure", auth=AUTH, allow_tasks=["api.add"])
    seen: list[httpx.Response] = []

    @kernel.resource("early-client", deps={"exposure": exposure})
    async def early_client(exposure: Exposure) -> None:
        # The exposure is up, the app is still starting (this resource is part of it).
        async with httpx.AsyncClient(base_url=exposure.base_url, headers=HEADERS) as client:
            seen.append(await client.post("/task/api.add", json={"input": [1]}))

    app = kernel.App("app", register=[add, exposure, early_client])
    with trio.fail_after(DEADLINE):
        async with kernel.run(app):
            pass
    [response] = seen
    assert response.status_code == 503
    assert failure(response)["code"] == "not_ready"


async def test_graceful_shutdown_drains_calls_in_flight_and_refuses_new_ones() -> None:
    started, gate = trio.Event(), trio.Event()

    @kernel.task("api.slow")
    async def slow() -> str:
        started.set()
        await gate.wait()
        return "done"

    exposure = http("exposure", auth=AUTH, allow_tasks=["api.*"])
    app = kernel.App("app", register=[slow, add, exposure])
    results: dict[str, httpx.Response] = {}
    with trio.fail_after(DEADLINE):
        async with httpx.AsyncClient(headers=HEADERS) as client, trio.open_nursery() as nursery:

            async def call(name: str, url: str) -> None:
                results[name] = await client.post(url)

            async with kernel.run(app, drain_timeout=DEADLINE) as rt:
                value = rt.resource(exposure)
                nursery.start_soon(call, "slow", value.base_url + "/task/api.slow")
                await started.wait()
                rt.shutdown()
                # Draining: new calls are refused with 503, the app is not ready.
                during = await client.post(value.base_url + "/task/api.add", json={"input": [1]})
                ready = await client.get(value.url + "/ready")
                gate.set()
                await trio.Event().wait()  # cancelled once the drain is over
        # The app is gone: nobody listens any more.
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as late:
                await late.get(value.url + "/health")
    assert results["slow"].status_code == 200
    assert results["slow"].json() == {"ok": True, "result": "done"}
    assert during.status_code == 503
    assert failure(during) | {"request_id": None} == {
        "ok": False,
        "code": "shutting_down",
        "message": "the service is shutting down",
        "request_id": None,
    }
    assert ready.status_code == 503
    assert ready.json()["ready"] is False


async def test_shutting_down_raised_by_the_runtime_is_503() -> None:
    # The gate passed, then the runtime refused (it stopped in between): still a 503.
    @kernel.task("api.nested")
    async def nested() -> None:
        raise kernel.ShuttingDown("task 'x' refused: the runtime is shutting down")

    async with serving(nested, allow_tasks=["api.nested"]) as (_, _, client):
        response = await client.post("/task/api.nested")
    assert response.status_code == 503
    assert failure(response)["code"] == "shutting_down"


async def test_connections_are_kept_alive_between_calls() -> None:
    async with serving(add, allow_tasks=["api.add"]) as (_, _, client):
        ports = set()
        for n in range(3):
            response = await client.post("/task/api.add", json={"input": [n]})
            assert response.json()["result"] == n
            stream = response.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr"))
    assert len(ports) == 1


# --- the ASGI app, driven directly ----------------------------------------------------------


async def _asgi_call(rt: kernel.Runtime, path: str, send: Any, method: str = "GET") -> None:
    app = build_app(rt, ExposureConfig(auth=AUTH, allow_tasks=["api.*"]))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
        "query_string": b"",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await app(scope, receive, send)


async def test_a_connection_lost_while_answering_is_a_warning(records: list[Any]) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def broken_send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            raise trio.BrokenResourceError("peer went away")

    async with kernel.run(kernel.App("app", register=[add])) as rt:
        await _asgi_call(rt, "/__runner/task/api.add", broken_send, method="POST")
    assert sent[0]["status"] == 422  # (no input for a required argument)
    [logged] = records
    assert logged["level"].name == "WARNING"
    assert logged["message"] == (
        "POST /__runner/task/api.add -> 422: the connection failed while sending the "
        "response (BrokenResourceError)"
    )
    assert logged["exception"] is None


async def test_an_error_escaping_an_endpoint_is_a_500_and_logged(
    records: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def broken_health(self: kernel.Runtime, **options: Any) -> None:
        raise RuntimeError("health broke")

    async with kernel.run(kernel.App("app", register=[add])) as rt:
        monkeypatch.setattr(kernel.Runtime, "health", broken_health)
        await _asgi_call(rt, "/health", send)
    assert sent[0]["status"] == 500
    body = json.loads(sent[1]["body"])
    assert (body["code"], body["message"]) == ("internal", "internal error")
    [logged] = records
    assert logged["level"].name == "ERROR"
    assert logged["message"] == "GET /health -> 500: RuntimeError"


async def test_non_http_scopes_pass_through() -> None:
    messages: list[MutableMapping[str, Any]] = []
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    async with kernel.run(kernel.App("app", register=[add])) as rt:
        app = build_app(rt, ExposureConfig(auth=AUTH))
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in messages] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_a_call_answered_before_its_body_was_read_closes_the_connection() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.add"]) as (_, exposure, client):
        refused = await client.post("/task/api.crash", json={"input": [1]})
        unauthorized = await client.post(
            "/task/api.add", json={"input": [1]}, headers={"authorization": "Bearer no"}
        )
        served = await client.post("/task/api.add", json={"input": [1]})
        empty = await client.post("/task/api.add", content=b"", headers={"content-length": "0"})
        health = await client.get(exposure.url + "/health")
    assert refused.status_code == 404
    assert refused.headers["connection"] == "close"
    assert unauthorized.headers["connection"] == "close"
    assert served.status_code == 200
    assert "connection" not in served.headers
    assert empty.status_code == 422
    assert "connection" not in empty.headers
    assert "connection" not in health.headers


async def test_http2_calls_are_served_and_refusals_keep_the_connection() -> None:
    async with serving(*EVERYTHING, allow_tasks=["api.add"]) as (_, exposure, _):
        h2 = httpx.AsyncClient(base_url=exposure.base_url, headers=HEADERS, http1=False, http2=True)
        async with h2:
            refused = await h2.post("/task/api.crash", json={"input": [1]})
            served = await h2.post("/task/api.add", json={"input": [2]})
    assert (refused.http_version, refused.status_code) == ("HTTP/2", 404)
    assert "connection" not in refused.headers
    assert (served.http_version, served.json()) == ("HTTP/2", {"ok": True, "result": 2})
