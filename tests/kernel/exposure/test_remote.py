"""Remote tasks (``kernel.exposure.remote`` + ``kernel.remote``) against a real server on
loopback: a small Starlette app speaking the exposure contract's ``/task`` endpoint, served
by hypercorn's trio worker in the test's own trio run.

No autojump clock here: real sockets and a mock clock do not mix (httpx's timeouts would
fire as soon as every task waits on the network). ``trio.fail_after(10)`` bounds each test;
nothing sleeps: what must wait, waits on an event.
"""

from __future__ import annotations

import functools
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import kernel
import middleware as mw
import resilience as rs
from kernel.exposure import (
    BearerAuth,
    RemoteEndpoint,
    http,
    remote,
    remote_task,
    request_id,
    retryable,
)
from kernel.exposure._remote import PROTOCOL_CODES, public_error_for

TOKEN = "s3cret-token"
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


# ---------------------------------------------------------------- the domain


@attrs.frozen
class NewOrder:
    item: str
    quantity: int


@attrs.frozen
class Order:
    id: int
    item: str
    quantity: int
    status: str


class OutOfStock(kernel.PublicError):
    http_status = 409
    code = "out_of_stock"


class OutOfStockWithSku(OutOfStock):
    """Inherits its parent's code: the wire cannot tell them apart."""

    def __init__(self, sku: str) -> None:
        super().__init__(f"{sku} is out of stock")


class SameCodeLater(kernel.PublicError):
    """Declares a code already declared by OutOfStock, defined later."""

    code = "out_of_stock"


class ProtocolLookalike(kernel.PublicError):
    """Declares a code the exposure uses itself."""

    http_status = 404
    code = "not_found"


calls: list[str] = []


@kernel.task("orders.place", input=NewOrder, result=Order, middleware=[mw.timeout(5.0)])
async def place_order(order: NewOrder) -> Order:
    """The implementation (what the remote one replaces on the caller's side)."""
    calls.append("local")
    if order.quantity > 10:
        raise OutOfStockWithSku(order.item)
    return Order(1, order.item, order.quantity, "local")


async def plain(*args: Any, **kwargs: Any) -> Any:
    return {"args": args, "kwargs": kwargs}


def task_named(id: str) -> kernel.Task:
    return kernel.task(id)(plain)


# ---------------------------------------------------------------- the server


Handler = Callable[[Any], Awaitable[Response]]


def _reply(status: int, body: Any, rid: str | None) -> Response:
    headers = {} if rid is None else {"x-request-id": rid}
    return JSONResponse(body, status_code=status, headers=headers)


def _failure(status: int, code: str, message: str, rid: str, **more: Any) -> Response:
    body = {"ok": False, "code": code, "message": message, "request_id": rid, **more}
    return _reply(status, body, rid)


class ContractServer:
    """The exposure contract's ``POST {base}/task/{id}``, with canned behaviours by id."""

    def __init__(self, token: str | None = TOKEN) -> None:
        self.token = token
        self.url = ""
        self.seen: list[dict[str, str]] = []
        self.bodies: list[Any] = []
        self.flaky_failures = 0
        self.arrived = trio.Event()

    def app(self) -> Starlette:
        routes = [
            Route("/__runner/task/{id:path}", self.task, methods=["POST"]),
            Route("/task/{id:path}", self.task, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    async def task(self, request: Request) -> Response:
        incoming = request.headers.get("x-request-id", "")
        rid = incoming if VALID_ID.match(incoming) else uuid.uuid4().hex
        self.seen.append(dict(request.headers))
        if self.token is not None and request.headers.get("authorization") != (
            f"Bearer {self.token}"
        ):
            response = _failure(401, "unauthorized", "unauthorized", rid)
            response.headers["www-authenticate"] = "Bearer"
            return response
        body = await request.json()
        self.bodies.append(body)
        name = re.sub(r"[./]", "_", request.path_params["id"])
        handler = getattr(self, f"on_{name}", None)
        if handler is None:
            return _failure(404, "not_found", "not found", rid)
        reply: Response = await handler(body.get("input"), rid)
        return reply

    async def on_echo(self, x: Any, rid: str) -> Response:
        return _reply(200, {"ok": True, "result": x}, rid)

    on_nested_a_b = on_echo

    async def on_orders_place(self, x: Any, rid: str) -> Response:
        if x["quantity"] > 10:
            return _failure(409, "out_of_stock", f"{x['item']} is out of stock", rid)
        return _reply(200, {"ok": True, "result": {"id": 7, **x, "status": "remote"}}, rid)

    async def on_invalid(self, x: Any, rid: str) -> Response:
        details = ["input.quantity: invalid value for type, expected int"]
        return _failure(422, "invalid_input", "invalid input", rid, details=details)

    async def on_boom(self, x: Any, rid: str) -> Response:
        return _failure(500, "internal", "internal error", rid)

    async def on_lookalike(self, x: Any, rid: str) -> Response:
        return _failure(404, "not_found", "not found", rid)

    async def on_unknown_code(self, x: Any, rid: str) -> Response:
        return _failure(418, "teapot", "I'm a teapot", rid)

    async def on_plain_public(self, x: Any, rid: str) -> Response:
        return _failure(400, "bad_request", "quantity must be even", rid)

    async def on_proxy(self, x: Any, rid: str) -> Response:
        return PlainTextResponse("upstream down", status_code=502)

    async def on_odd_status(self, x: Any, rid: str) -> Response:
        return PlainTextResponse("?", status_code=599)

    async def on_list_error(self, x: Any, rid: str) -> Response:
        return _reply(400, ["not", "an", "object"], None)

    async def on_body_id_only(self, x: Any, rid: str) -> Response:
        return _reply(500, {"ok": False, "code": "internal", "request_id": "from-body"}, None)

    async def on_malformed(self, x: Any, rid: str) -> Response:
        return _reply(200, {"ok": False}, rid)

    async def on_not_json(self, x: Any, rid: str) -> Response:
        return PlainTextResponse("fine", status_code=200)

    async def on_flaky(self, x: Any, rid: str) -> Response:
        if self.flaky_failures > 0:
            self.flaky_failures -= 1
            return _failure(503, "shutting_down", "shutting down", rid)
        return _reply(200, {"ok": True, "result": "finally"}, rid)

    async def on_hang(self, x: Any, rid: str) -> Response:
        self.arrived.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def serve_on_loopback(app: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` with hypercorn on 127.0.0.1, a free port; report the base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(serve, app, config))
        task_status.started(binds[0])


@pytest.fixture
async def server(nursery: trio.Nursery) -> ContractServer:
    contract = ContractServer()
    contract.url = await nursery.start(serve_on_loopback, contract.app())
    return contract


def client_app(server: ContractServer, *register: object, **options: Any) -> tuple[Any, ...]:
    endpoint = remote("orders.api", base_url=server.url, token=TOKEN, **options)
    return endpoint, kernel.App("client", register=[endpoint, *register])


# ---------------------------------------------------------------- remote(): arguments


def test_remote_refuses_a_bad_base_url() -> None:
    with pytest.raises(TypeError, match="remote: base_url must be a str, got 8080"):
        remote("r", base_url=8080)  # type: ignore[arg-type]
    for bad in ("localhost:8080", "ftp://x", "http://"):
        with pytest.raises(ValueError, match="base_url must be an http:// or https:// URL"):
            remote("r", base_url=bad)


def test_remote_refuses_a_bad_token_without_echoing_it() -> None:
    with pytest.raises(TypeError, match="token must be a str or None, got bytes"):
        remote("r", base_url="http://x", token=b"abc")  # type: ignore[arg-type]
    for bad in ("", "two words", "new\nline", "caf\u00e9"):
        with pytest.raises(ValueError, match="token must be non-empty printable ASCII") as info:
            remote("r", base_url="http://x", token=bad)
        assert bad not in str(info.value) or bad == ""


def test_remote_refuses_a_bad_timeout() -> None:
    with pytest.raises(TypeError, match="timeout must be a number of seconds or a timedelta"):
        remote("r", base_url="http://x", timeout="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout must be a number"):
        remote("r", base_url="http://x", timeout=True)
    for bad in (0, -1.0, float("nan"), timedelta(0)):
        with pytest.raises(ValueError, match=r"remote: timeout must (be > 0|not be NaN)"):
            remote("r", base_url="http://x", timeout=bad)


def test_remote_refuses_a_bad_base_path_and_id() -> None:
    with pytest.raises(TypeError, match="base_path must be a str, got None"):
        remote("r", base_url="http://x", base_path=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="base_path must start with '/', got 'api'"):
        remote("r", base_url="http://x", base_path="api")
    with pytest.raises(kernel.DefinitionError, match="resource: id must be"):
        remote("9 lives", base_url="http://x")


async def test_the_resource_holds_a_configured_client_closed_at_dispose() -> None:
    endpoint = remote(
        "api", base_url="http://127.0.0.1:9", token=TOKEN, timeout=timedelta(seconds=2.5)
    )
    assert isinstance(endpoint, kernel.Resource)
    async with kernel.run(kernel.App("app", register=[endpoint])) as rt:
        value = rt.resource(endpoint)
        assert isinstance(value, RemoteEndpoint)
        assert value.base_path == "/__runner"
        assert value.client.base_url == httpx.URL("http://127.0.0.1:9")
        assert value.client.timeout == httpx.Timeout(2.5)
        assert value.client.headers["authorization"] == f"Bearer {TOKEN}"
        assert not value.client.is_closed
    assert value.client.is_closed


async def test_without_a_token_no_authorization_header_is_sent() -> None:
    endpoint = remote("api", base_url="https://example.invalid", base_path="/")
    async with kernel.run(kernel.App("app", register=[endpoint])) as rt:
        value = rt.resource(endpoint)
        assert "authorization" not in value.client.headers
        assert value.base_path == ""


# ---------------------------------------------------------------- remote_task(): definition


def test_the_remote_task_keeps_id_types_tags_and_middleware() -> None:
    endpoint = remote("api", base_url="http://x")
    tagged = kernel.task("t", tags=[kernel.tags.external_io], middleware=[mw.timeout(1.0)])(plain)
    twin = remote_task(tagged, via=endpoint)
    assert isinstance(twin, kernel.Task)
    assert (twin.id, twin.tags, twin.pipeline) == ("t", tagged.tags, tagged.pipeline)
    typed = remote_task(place_order, via=endpoint)
    assert (typed.input, typed.result) == (NewOrder, Order)
    assert typed.fn.__name__ == "remote:orders.place"
    assert dict(typed.deps) == {"_remote_via": endpoint}  # type: ignore[arg-type]


def test_middleware_replaces_the_local_pipeline() -> None:
    endpoint = remote("api", base_url="http://x")
    bare = remote_task(place_order, via=endpoint, middleware=[])
    assert len(bare.pipeline) == 0
    assert len(remote_task(place_order, via=endpoint).pipeline) == 1


def test_remote_task_refuses_bad_arguments() -> None:
    endpoint = remote("api", base_url="http://x")
    with pytest.raises(
        kernel.DefinitionError, match=r"kernel\.remote: task must be a kernel\.Task"
    ):
        remote_task(plain, via=endpoint)  # type: ignore[arg-type]
    with pytest.raises(kernel.DefinitionError, match=r"via must be a kernel\.exposure\.remote"):
        remote_task(place_order, via="http://x")  # type: ignore[arg-type]
    with pytest.raises(kernel.DefinitionError, match=r"kernel\.remote: .*not a middleware"):
        remote_task(place_order, via=endpoint, middleware=[42])


async def test_the_endpoint_must_be_registered() -> None:
    endpoint = remote("api", base_url="http://x")
    app = kernel.App(
        "app",
        overrides=[kernel.override(place_order, remote_task(place_order, via=endpoint))],
        register=[place_order],
    )
    with pytest.raises(kernel.MissingDependencyError, match="'api'"):
        async with kernel.run(app):
            pass


# ---------------------------------------------------------------- calls over HTTP


async def test_override_moves_the_task_without_touching_its_caller(
    server: ContractServer,
) -> None:
    @kernel.task("checkout", deps={"place": place_order})
    async def checkout(item: str, *, place: Any) -> Order:
        order: Order = await place(NewOrder(item, 2))
        return order

    calls.clear()
    endpoint, app = client_app(server, place_order, checkout)
    moved = kernel.App(
        "moved",
        register=[app],
        overrides=[kernel.override(place_order, remote_task(place_order, via=endpoint))],
    )
    with trio.fail_after(10):
        async with kernel.run(moved) as rt:
            assert await rt.run_task(checkout, "book") == Order(7, "book", 2, "remote")
            # A dict input is structured locally, then sent unstructured.
            assert await rt.run_task(place_order, {"item": "pen", "quantity": 1}) == Order(
                7, "pen", 1, "remote"
            )
    assert calls == []
    assert server.bodies == [
        {"input": {"item": "book", "quantity": 2}},
        {"input": {"item": "pen", "quantity": 1}},
    ]
    assert server.seen[0]["authorization"] == f"Bearer {TOKEN}"


async def test_arguments_travel_as_a_list_an_object_or_null(server: ContractServer) -> None:
    endpoint = remote("api", base_url=server.url, token=TOKEN)
    twin = remote_task(task_named("echo"), via=endpoint)
    app = kernel.App("client", register=[endpoint, twin])
    with trio.fail_after(10):
        async with kernel.run(app) as rt:
            assert await rt.run_task(twin, 1, NewOrder("a", 1)) == [1, {"item": "a", "quantity": 1}]
            assert await rt.run_task(twin, a=1, b=[2]) == {"a": 1, "b": [2]}
            assert await rt.run_task(twin) is None
            with pytest.raises(TypeError, match="positional or keyword arguments, not both"):
                await rt.run_task(twin, 1, b=2)
    assert server.bodies == [
        {"input": [1, {"item": "a", "quantity": 1}]},
        {"input": {"a": 1, "b": [2]}},
        {"input": None},
    ]


async def test_a_typed_remote_task_takes_exactly_its_input(server: ContractServer) -> None:
    twin = remote_task(place_order, via=remote("api", base_url=server.url))
    endpoint = RemoteEndpoint(httpx.AsyncClient(base_url=server.url), "/__runner")
    with pytest.raises(TypeError, match=r"task 'orders.place' \(remote\): takes one argument"):
        await twin(NewOrder("a", 1), NewOrder("b", 2), _remote_via=endpoint)
    with pytest.raises(TypeError, match="takes one argument, its NewOrder input"):
        await twin(NewOrder("a", 1), extra=1, _remote_via=endpoint)
    await endpoint.client.aclose()
    assert server.bodies == []


async def test_a_result_that_does_not_fit_is_a_config_error(server: ContractServer) -> None:
    @attrs.frozen
    class Strict:
        count: int

    echo = kernel.task("echo", result=Strict)(plain)
    endpoint, app = client_app(server)
    twin = remote_task(echo, via=endpoint)
    with trio.fail_after(10):
        async with kernel.run(kernel.App("c", register=[app, twin])) as rt:
            assert await rt.run_task(twin, count=3) == Strict(3)
            with pytest.raises(kernel.ConfigError, match=r"task 'echo' \(remote\): result"):
                await rt.run_task(twin, count="many")


async def test_base_path_and_slashes_in_ids(server: ContractServer) -> None:
    endpoint = remote("api", base_url=server.url, token=TOKEN, base_path="")
    twin = remote_task(task_named("nested.a/b"), via=endpoint)
    with trio.fail_after(10):
        async with kernel.run(kernel.App("c", register=[endpoint, twin])) as rt:
            assert await rt.run_task(twin, 5) == [5]


# ---------------------------------------------------------------- errors


async def call(server: ContractServer, id: str, *args: Any, token: str | None = TOKEN) -> Any:
    endpoint = remote("api", base_url=server.url, token=token)
    twin = remote_task(task_named(id), via=endpoint)
    with trio.fail_after(10):
        async with kernel.run(kernel.App("c", register=[endpoint, twin])) as rt:
            return await rt.run_task(twin, *args)


async def test_a_known_public_error_is_raised_as_itself(server: ContractServer) -> None:
    twin = remote_task(
        place_order, via=(endpoint := remote("api", base_url=server.url, token=TOKEN))
    )
    with trio.fail_after(10):
        async with kernel.run(kernel.App("c", register=[endpoint, twin])) as rt:
            with pytest.raises(OutOfStock) as info:
                await rt.run_task(twin, NewOrder("ink", 11))
    error = info.value
    assert type(error) is OutOfStock
    assert (error.message, error.code, error.http_status) == (
        "ink is out of stock",
        "out_of_stock",
        409,
    )
    rid = server.seen[-1]["x-request-id"]
    assert error.__notes__ == [f"raised by remote task 'orders.place' (HTTP 409, request id {rid})"]


async def test_a_plain_public_error_comes_back_as_public_error(server: ContractServer) -> None:
    with pytest.raises(kernel.PublicError) as info:
        await call(server, "plain_public")
    assert type(info.value) is kernel.PublicError
    assert (info.value.code, info.value.http_status) == ("bad_request", 400)
    assert str(info.value) == "quantity must be even"


@pytest.mark.parametrize(
    ("id", "status", "code", "message"),
    [
        ("boom", 500, "internal", "internal error"),
        ("lookalike", 404, "not_found", "not found"),
        ("unknown_code", 418, "teapot", "I'm a teapot"),
        ("no.such.task", 404, "not_found", "not found"),
        (
            "invalid",
            422,
            "invalid_input",
            "invalid input: input.quantity: invalid value for type, expected int",
        ),
    ],
)
async def test_failures_come_back_as_remote_errors(
    server: ContractServer, id: str, status: int, code: str, message: str
) -> None:
    with pytest.raises(kernel.RemoteError) as info:
        await call(server, id)
    error = info.value
    assert (error.status, error.code, error.message) == (status, code, message)
    assert error.request_id == server.seen[-1]["x-request-id"]
    assert str(error) == f"{message} (HTTP {status}, code {code!r}, request id {error.request_id})"


async def test_a_wrong_token_is_a_401_remote_error(server: ContractServer) -> None:
    with pytest.raises(kernel.RemoteError, match="HTTP 401, code 'unauthorized'"):
        await call(server, "echo", token="wrong")
    with pytest.raises(kernel.RemoteError, match="HTTP 401"):
        await call(server, "echo", token=None)


async def test_bodies_that_are_not_the_contract_s(server: ContractServer) -> None:
    with pytest.raises(kernel.RemoteError) as info:
        await call(server, "proxy")
    assert (info.value.status, info.value.code, info.value.message) == (
        502,
        "http_error",
        "Bad Gateway",
    )
    assert info.value.request_id is None
    with pytest.raises(kernel.RemoteError) as info:
        await call(server, "odd_status")
    assert (info.value.status, info.value.message) == (599, "HTTP 599")
    with pytest.raises(kernel.RemoteError) as info:
        await call(server, "list_error")
    assert (info.value.code, info.value.message) == ("http_error", "Bad Request")
    with pytest.raises(kernel.RemoteError) as info:
        await call(server, "body_id_only")
    assert (info.value.message, info.value.request_id) == ("Internal Server Error", "from-body")
    for id in ("malformed", "not_json"):
        with pytest.raises(kernel.RemoteError, match="malformed body") as info:
            await call(server, id)
        assert (info.value.status, info.value.code) == (200, "malformed_response")


def test_public_error_for_picks_the_declaring_class() -> None:
    assert public_error_for("out_of_stock") is OutOfStock  # not the subclass, not the later one
    assert public_error_for("bad_request") is kernel.PublicError
    assert public_error_for("no_such_code") is None
    for code in PROTOCOL_CODES:
        assert public_error_for(code) is None
    assert ProtocolLookalike.code in PROTOCOL_CODES
    assert SameCodeLater.code == OutOfStockWithSku.code == "out_of_stock"


async def test_a_refused_connection_is_remote_unavailable_from_httpx_error() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = remote("api", base_url=f"http://127.0.0.1:{port}")
    twin = remote_task(task_named("echo"), via=endpoint)
    with trio.fail_after(10):
        async with kernel.run(kernel.App("c", register=[endpoint, twin])) as rt:
            with pytest.raises(kernel.RemoteUnavailable) as info:
                await rt.run_task(twin)
    error = info.value
    assert isinstance(error, kernel.RemoteError)
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert (error.status, error.code, error.request_id) == (None, "unavailable", None)
    assert "remote task 'echo': no answer from http://127.0.0.1:" in str(error)
    assert retryable(error)


async def _raw_server(
    handler: Callable[[trio.SocketStream], Awaitable[None]], nursery: trio.Nursery
) -> str:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), handler, 0)
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def _read_request(stream: trio.SocketStream) -> None:
    """The whole request, body included (closing with unread data would reset)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some()
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *([0-9]+)", head)
    while length is not None and len(body) < int(length.group(1)):
        body += await stream.receive_some()


async def test_a_connection_cut_mid_answer_is_remote_unavailable() -> None:
    async def cut(stream: trio.SocketStream) -> None:
        await _read_request(stream)
        await stream.send_all(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"ok": tr')
        await stream.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            endpoint = remote("api", base_url=await _raw_server(cut, nursery))
            twin = remote_task(task_named("echo"), via=endpoint)
            async with kernel.run(kernel.App("c", register=[endpoint, twin])) as rt:
                with pytest.raises(kernel.RemoteUnavailable) as info:
                    await rt.run_task(twin)
            nursery.cancel_scope.cancel()
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)


async def test_a_server_that_never_answers_is_remote_unavailable_after_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def mute(stream: trio.SocketStream) -> None:
        await _read_request(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        endpoint = remote("api", base_url=await _raw_server(mute, nursery), timeout=3.0)
        twin = remote_task(task_named("echo"), via=endpoint)
        async with kernel.run(kernel.App("c", register=[endpoint, twin])) as rt:
            start = trio.current_time()
            with pytest.raises(kernel.RemoteUnavailable) as info:
                await rt.run_task(twin)
            assert trio.current_time() - start == pytest.approx(3.0)
        nursery.cancel_scope.cancel()
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


def test_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    def remote_error(status: int) -> kernel.RemoteError:
        return kernel.RemoteError("x", status=status, code="c", request_id=None)

    assert [retryable(remote_error(s)) for s in (502, 503, 504)] == [True] * 3
    assert [retryable(remote_error(s)) for s in (400, 404, 422, 500)] == [False] * 4
    assert retryable(httpx.ReadTimeout("slow"))
    assert retryable(kernel.RemoteUnavailable("no answer"))
    assert not retryable(httpx.HTTPStatusError("x", request=None, response=None))  # type: ignore[arg-type]
    assert not retryable(OutOfStock("x"))
    monkeypatch.delitem(sys.modules, "httpx")
    assert not retryable(ValueError("no httpx loaded"))


async def test_a_caller_side_retry_rides_out_503s(server: ContractServer) -> None:
    flaky = kernel.task(
        "flaky", middleware=[mw.retry(attempts=3, wait=rs.backoff.constant(0), on=retryable)]
    )(plain)
    server.flaky_failures = 2
    assert await call_task(server, flaky) == "finally"
    assert len(server.seen) == 3
    ids = [headers["x-request-id"] for headers in server.seen]
    assert len(set(ids)) == 3  # each attempt is a request of its own
    server.flaky_failures = 3
    with pytest.raises(kernel.RemoteError, match="HTTP 503"):
        await call_task(server, flaky)


async def call_task(server: ContractServer, task: kernel.Task, *args: Any) -> Any:
    endpoint = remote("api", base_url=server.url, token=TOKEN)
    with trio.fail_after(10):
        async with kernel.run(
            kernel.App(
                "c",
                register=[endpoint, task],
                overrides=[kernel.override(task, remote_task(task, via=endpoint))],
            )
        ) as rt:
            return await rt.run_task(task, *args)


async def test_cancellation_abandons_the_request(server: ContractServer) -> None:
    endpoint, app = client_app(server)
    twin = remote_task(task_named("hang"), via=endpoint)
    finished = False
    with trio.fail_after(10):
        async with kernel.run(kernel.App("c", register=[app, twin])) as rt:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def caller() -> None:
                        nonlocal finished
                        await rt.run_task(twin)
                        finished = True

                    nursery.start_soon(caller)
                    await server.arrived.wait()
                    scope.cancel()
            assert scope.cancelled_caught
    assert not finished


# ---------------------------------------------------------------- propagation


async def test_each_call_gets_a_fresh_request_id_unless_one_is_current(
    server: ContractServer,
) -> None:
    endpoint, app = client_app(server)
    twin = remote_task(task_named("echo"), via=endpoint)
    with trio.fail_after(10):
        async with kernel.run(kernel.App("c", register=[app, twin])) as rt:
            await rt.run_task(twin)
            await rt.run_task(twin)
            token = request_id.set("req-42")
            try:
                await rt.run_task(twin)
            finally:
                request_id.reset(token)
    first, second, third = (headers["x-request-id"] for headers in server.seen)
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second
    assert third == "req-42"
    assert all("traceparent" not in headers for headers in server.seen)


async def test_traceparent_follows_the_current_span(
    server: ContractServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    endpoint, app = client_app(server)
    twin = remote_task(task_named("echo"), via=endpoint)
    with trio.fail_after(10):
        async with kernel.run(kernel.App("c", register=[app, twin])) as rt:
            with tracer.start_as_current_span("caller") as span:
                await rt.run_task(twin)
                # Not loaded, no span possible: the header is not even looked for.
                monkeypatch.delitem(sys.modules, "opentelemetry.trace")
                await rt.run_task(twin)
    context = span.get_span_context()
    assert server.seen[0]["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )
    assert "traceparent" not in server.seen[1]


# ---------------------------------------------------------------- end to end


@asynccontextmanager
async def exposing(*definitions: object, port: int = 0) -> AsyncIterator[str]:
    """A server app exposing the ``orders.*`` tasks of ``definitions``; yields its URL."""
    exposure = http(
        "exposure", port=port, auth=BearerAuth(tokens=[TOKEN]), allow_tasks=["orders.*"]
    )
    async with kernel.run(kernel.App("server", register=[*definitions, exposure])) as rt:
        yield rt.resource(exposure).url


@kernel.task("checkout", deps={"place": place_order})
async def checkout(item: str, quantity: int, *, place: Any) -> Order:
    """The caller: its code does not know where ``place_order`` runs."""
    order: Order = await place(NewOrder(item, quantity))
    return order


def moved(url: str, *register: object, middleware: Any = None) -> kernel.App:
    """The client app: ``checkout`` with ``place_order`` overridden to run at ``url``."""
    endpoint = remote("orders.api", base_url=url, token=TOKEN)
    twin = remote_task(place_order, via=endpoint, middleware=middleware)
    return kernel.App(
        "client",
        register=[endpoint, place_order, checkout, *register],
        overrides=[kernel.override(place_order, twin)],
    )


async def test_end_to_end_through_the_real_exposure() -> None:
    untyped = task_named("orders.place")  # the same id, declared without input=
    with trio.fail_after(10):
        async with exposing(place_order) as url:
            endpoint = remote("raw.api", base_url=url, token=TOKEN)
            raw = remote_task(untyped, via=endpoint)
            secret = remote_task(task_named("internal.secret"), via=endpoint)
            calls.clear()
            async with kernel.run(moved(url)) as rt:
                assert await rt.run_task(checkout, "book", 2) == Order(1, "book", 2, "local")
                assert calls == ["local"]  # run by the server app (same process, other runtime)
                # A bad input fails on the caller's side, exactly as it does locally.
                with pytest.raises(kernel.ConfigError, match=r"input\.quantity"):
                    await rt.run_task(place_order, {"item": "pen", "quantity": "two"})
                with pytest.raises(OutOfStock) as out:
                    await rt.run_task(checkout, "ink", 11)
            async with kernel.run(kernel.App("raw", register=[endpoint, raw, secret])) as rt:
                # The server's own validation, when the caller declared no input type.
                with pytest.raises(kernel.RemoteError) as invalid:
                    await rt.run_task(raw, item="pen", quantity="two")
                with pytest.raises(kernel.RemoteError) as hidden:
                    await rt.run_task(secret)
    assert calls == ["local", "local"]
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_input")
    assert "input.quantity: expected int, got str" in invalid.value.message
    # Raised as the class declaring the code (the subclass inherits it: indistinguishable).
    assert type(out.value) is OutOfStock
    assert (out.value.message, out.value.http_status) == ("ink is out of stock", 409)
    assert (hidden.value.status, hidden.value.code) == (404, "not_found")


async def test_end_to_end_the_request_id_crosses_two_hops() -> None:
    seen: list[str | None] = []

    @kernel.task("orders.back")
    async def back() -> str:
        seen.append(request_id.get())
        return "back"

    @kernel.task("orders.front", deps={"back": back})
    async def front(*, back: Any) -> str:
        return f"front+{await back()}"

    with trio.fail_after(10):
        async with exposing(back) as back_url:
            to_back = remote("back.api", base_url=back_url, token=TOKEN)
            front_app = kernel.App(
                "front-side",
                register=[to_back, back, front],
                overrides=[kernel.override(back, remote_task(back, via=to_back))],
            )
            async with exposing(front_app) as front_url:
                to_front = remote("front.api", base_url=front_url, token=TOKEN)
                remote_front = remote_task(front, via=to_front)
                client = kernel.App("client", register=[to_front, remote_front])
                async with kernel.run(client) as rt:
                    token = request_id.set("order-1234")
                    try:
                        assert await rt.run_task(remote_front) == "front+back"
                    finally:
                        request_id.reset(token)
                    assert await rt.run_task(remote_front) == "front+back"
    assert seen[0] == "order-1234"
    assert seen[1] is not None
    assert re.fullmatch(r"[0-9a-f]{32}", seen[1])


async def test_end_to_end_a_caller_side_retry_rides_out_a_503() -> None:
    failures = [kernel.ShuttingDown("draining"), kernel.ShuttingDown("draining")]

    @kernel.task("orders.flaky")
    async def flaky() -> str:
        if failures:
            raise failures.pop()
        return "served"

    retry = mw.retry(attempts=3, wait=rs.backoff.constant(0), on=retryable)
    with trio.fail_after(10):
        async with exposing(flaky) as url:
            endpoint = remote("api", base_url=url, token=TOKEN)
            twin = remote_task(flaky, via=endpoint, middleware=[retry])
            async with kernel.run(kernel.App("client", register=[endpoint, twin])) as rt:
                assert await rt.run_task(twin) == "served"
    assert failures == []


async def test_end_to_end_a_caller_side_retry_waits_for_the_server_to_come_up() -> None:
    with socket.socket() as probe:  # a port free now, refused until the server is up
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused: list[Exception] = []
    server_wanted = trio.Event()

    def on(exc: Exception) -> bool:
        refused.append(exc)
        server_wanted.set()
        return retryable(exc)

    retry = mw.retry(attempts=1000, wait=rs.backoff.constant(0), on=on)
    url = f"http://127.0.0.1:{port}"
    with trio.fail_after(10):
        async with kernel.run(moved(url, middleware=[retry])) as rt, trio.open_nursery() as nursery:

            async def serve_when_wanted() -> None:
                await server_wanted.wait()
                async with exposing(place_order, port=port):
                    await trio.sleep_forever()

            nursery.start_soon(serve_when_wanted)
            assert await rt.run_task(checkout, "map", 1) == Order(1, "map", 1, "local")
            nursery.cancel_scope.cancel()
    assert refused
    assert all(isinstance(exc, kernel.RemoteUnavailable) for exc in refused)
    assert all(isinstance(exc.__cause__, httpx.ConnectError) for exc in refused)


# ---------------------------------------------------------------- packaging


@pytest.mark.slow
def test_importing_the_module_imports_neither_httpx_nor_opentelemetry() -> None:
    code = (
        "import sys, kernel.exposure._remote\n"
        "loaded = [m for m in ('httpx', 'opentelemetry', 'starlette', 'hypercorn') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
