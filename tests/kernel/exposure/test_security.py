"""The security points of kernel.exposure.http, each against a real server on loopback:
fail-closed auth, bearer tokens, allow-lists, body and depth limits, malformed bodies."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import timedelta
from typing import Any

import h11
import httpx
import pytest
import trio
from hypercorn.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

import kernel
from kernel._doctor import exposure_rows
from kernel.exposure import BearerAuth, ExposureConfig, _limits, http, principal
from kernel.exposure._app import build_app
from kernel.exposure._limits import Refusal, nesting_depth, parse_json, read_body
from kernel.exposure._server import listening_socket, serve, server_config
from tests.kernel.exposure.servers import AUTH, DEADLINE, HEADERS, TOKEN, failure, serving


@kernel.task("api.public.echo")
async def echo(value: Any = None) -> Any:
    return value


@kernel.task("api.private.secret")
async def secret() -> str:
    return "secret"


@kernel.task("api/v1/slashed")
async def slashed() -> str:
    return "slashed"


@kernel.task("api.whoami")
async def whoami() -> Any:
    return principal.get()


@kernel.resource("api.public.resource")
async def a_resource() -> str:
    return "resource"


public_event = kernel.event("api.public.happened")


@kernel.hook("api.public.hook", on=public_event)
async def a_hook(emission: kernel.Emission) -> None:
    pass


ALL = (echo, secret, slashed, whoami, a_resource, public_event, a_hook)


# --- fail closed ----------------------------------------------------------------------------


def test_an_exposure_without_auth_is_refused_when_declared() -> None:
    message = "ExposureConfig: auth is required: pass auth=kernel.exposure.BearerAuth"
    with pytest.raises(kernel.DefinitionError, match=message):
        http("exposure")
    with pytest.raises(kernel.DefinitionError, match="allow_anonymous=True"):
        http("exposure", auth=None, allow_anonymous=False)
    with pytest.raises(kernel.DefinitionError, match="auth is required"):
        ExposureConfig()


async def test_an_anonymous_exposure_must_be_asked_for_and_wants_json() -> None:
    async with serving(
        *ALL, auth=None, allow_anonymous=True, allow_tasks=["api.*"], headers={}
    ) as (rt, _, client):
        as_json = await client.post("/task/api.whoami", json={})
        vendor_json = await client.post(
            "/task/api.whoami",
            content=b"{}",
            headers={"content-type": "application/vnd.runner+json; charset=utf-8"},
        )
        as_text = await client.post(
            "/task/api.whoami", content=b"{}", headers={"content-type": "text/plain"}
        )
        untyped = await client.post("/task/api.whoami")
        discovery = await client.get("/discovery")
        rows = {row.check: row.status for row in exposure_rows(rt.graph)}
    assert as_json.json() == {"ok": True, "result": None}
    assert vendor_json.status_code == 200
    for refused in (as_text, untyped):
        assert refused.status_code == 415
        assert failure(refused)["code"] == "unsupported_media_type"
    assert discovery.status_code == 200
    assert rows["exposure.auth"] == "fail"


# --- bearer tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {TOKEN}", f"{TOKEN}"],
)
async def test_a_missing_or_wrong_token_is_401(authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    async with serving(*ALL, allow_tasks=["api.*"], headers=headers) as (_, _, client):
        responses = [
            await client.post("/task/api.public.echo", json={"input": [1]}),
            await client.post("/task/no.such.task"),
            await client.post("/event/api.public.happened"),
            await client.get("/discovery"),
        ]
    for response in responses:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        body = failure(response)
        assert (body["code"], body["message"]) == (
            "unauthorized",
            "missing or invalid bearer token",
        )


async def test_the_scheme_is_case_insensitive_and_the_principal_is_known() -> None:
    headers = {"authorization": f"bearer  {TOKEN}"}
    async with serving(*ALL, allow_tasks=["api.*"], headers=headers) as (_, _, client):
        response = await client.post("/task/api.whoami")
    assert response.json() == {"ok": True, "result": "tester"}


async def test_every_token_is_compared_without_early_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    auth = BearerAuth(tokens={TOKEN: "first", "second-token": "second", "third-token": "third"})
    async with serving(*ALL, auth=auth, allow_tasks=["api.*"]) as (_, _, client):
        first = await client.post("/task/api.whoami")
        calls_for_first = len(compared)
        wrong = await client.post("/task/api.whoami", headers={"authorization": "Bearer nope"})
    assert first.json()["result"] == "first"
    assert calls_for_first == 3
    assert len(compared) == 6
    assert wrong.status_code == 401
    # Fixed-size digests are compared, never the tokens themselves.
    assert {len(a) for a, _ in compared} == {32}


def test_bearer_auth_keeps_no_token_and_names_principals() -> None:
    auth = BearerAuth(tokens=["alpha-token", "beta-token"])
    assert auth.principal("alpha-token") == "token#0"
    assert auth.principal("beta-token") == "token#1"
    assert auth.principal("gamma-token") is None
    assert auth.principal("é") is None
    assert repr(auth) == "BearerAuth(<2 token(s)>)"
    config = ExposureConfig(auth=auth)
    assert "alpha" not in repr(config)
    assert "alpha" not in str(kernel.tag("t", config=ExposureConfig).with_config(config))


@pytest.mark.parametrize(
    ("tokens", "error", "message"),
    [
        ("a-token", TypeError, "BearerAuth: tokens must be a mapping"),
        (42, TypeError, "BearerAuth: tokens must be a mapping"),
        ({}, ValueError, "BearerAuth: tokens must not be empty"),
        ([""], ValueError, r"BearerAuth: tokens\[0\] must be a non-empty str of visible"),
        (["ok-token", "has space"], ValueError, r"tokens\[1\] must be a non-empty str"),
        ([b"bytes"], ValueError, r"tokens\[0\]"),
        ({"a-token": ""}, TypeError, r"the principal of tokens\[0\] must be a non-empty str"),
        ({"a-token": 3}, TypeError, "got 3"),
    ],
)
def test_bearer_auth_validates_its_tokens(
    tokens: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        BearerAuth(tokens=tokens)
    assert "has space" not in str(caught.value)


async def test_a_verify_function_authenticates() -> None:
    class Denied(kernel.PublicError):
        http_status = 403
        code = "forbidden"

    async def verify(token: str) -> Any:
        if token == "boom":
            raise RuntimeError("verifier broke: token store at 10.0.0.1")
        if token == "banned":
            raise Denied("this token is banned")
        return {"user": "ada"} if token == "ada-token" else None

    async with serving(*ALL, auth=verify, allow_tasks=["api.*"], headers={}) as (_, _, client):

        async def call(token: str) -> httpx.Response:
            return await client.post(
                "/task/api.whoami", headers={"authorization": f"Bearer {token}"}
            )

        ada, nobody, boom, banned = [
            await call(token) for token in ("ada-token", "other", "boom", "banned")
        ]
    assert ada.json() == {"ok": True, "result": {"user": "ada"}}
    assert nobody.status_code == 401
    assert boom.status_code == 500
    assert "10.0.0.1" not in boom.text
    assert (banned.status_code, failure(banned)["code"]) == (403, "forbidden")


def test_a_callable_object_with_an_async_call_is_an_authenticator() -> None:
    class Verifier:
        async def __call__(self, token: str) -> str | None:
            return None

    assert isinstance(ExposureConfig(auth=Verifier()).auth, Verifier)


# --- allow-lists ----------------------------------------------------------------------------


async def test_nothing_is_allowed_by_default() -> None:
    async with serving(*ALL) as (_, _, client):
        task = await client.post("/task/api.public.echo")
        event = await client.post("/event/api.public.happened")
        discovery = await client.get("/discovery")
    assert (task.status_code, event.status_code) == (404, 404)
    assert discovery.json() == {"ok": True, "tasks": [], "events": []}


async def test_glob_patterns_allow_matching_ids_only() -> None:
    async with serving(
        *ALL, allow_tasks=["api.public.*", "api/v1/*"], allow_events=["api.public.*"]
    ) as (_, _, client):
        allowed = await client.post("/task/api.public.echo", json={"input": [5]})
        nested = await client.post("/task/api/v1/slashed")
        refused = await client.post("/task/api.private.secret")
        event = await client.post("/event/api.public.happened")
    assert allowed.json() == {"ok": True, "result": 5}
    assert nested.json() == {"ok": True, "result": "slashed"}
    assert refused.status_code == 404
    assert event.json() == {"ok": True}


async def test_durable_workflows_are_never_exposed_they_run_under_their_engine() -> None:
    engine = kernel.durable.engine("api.durable", store=kernel.durable.MemoryStore())

    @kernel.task("api.public.flow", deps={"d": engine}, tags=[kernel.durable.workflow()])
    async def flow(value: int, *, d: kernel.durable.Engine) -> int:
        return value

    async with serving(*ALL, engine, flow, allow_tasks=["api.public.*"]) as (_, _, client):
        refused = await client.post("/task/api.public.flow", json={"input": 1})
        allowed = await client.post("/task/api.public.echo", json={"input": [5]})
        discovery = await client.get("/discovery")
    assert refused.status_code == 404
    assert allowed.json() == {"ok": True, "result": 5}
    assert "api.public.flow" not in {task["id"] for task in discovery.json()["tasks"]}


async def test_unknown_and_refused_ids_get_the_same_404() -> None:
    async with serving(*ALL, allow_tasks=["api.public.*"]) as (_, _, client):
        same_id = {"x-request-id": "probe"}
        refused = await client.post("/task/api.private.secret", headers=same_id)
        unknown = await client.post("/task/api.nothing.here", headers=same_id)
        refused_event = await client.post("/event/api.private.secret", headers=same_id)
    assert refused.status_code == unknown.status_code == refused_event.status_code == 404
    assert refused.content == unknown.content == refused_event.content
    assert refused.json() == {
        "ok": False,
        "code": "not_found",
        "message": "not found",
        "request_id": "probe",
    }
    for header in ("content-type", "content-length", "x-request-id"):
        assert refused.headers[header] == unknown.headers[header]


async def test_hooks_resources_and_the_kernel_events_are_never_exposed() -> None:
    async with serving(*ALL, allow_tasks=["*"], allow_events=["*"]) as (_, _, client):
        responses = [
            await client.post("/task/api.public.hook"),
            await client.post("/task/api.public.resource"),
            await client.post("/task/kernel.logger"),
            await client.post("/event/api.public.hook"),
            await client.post("/event/api.public.resource"),
            await client.post("/event/api.public.echo"),
            await client.post("/event/kernel.ready"),
            await client.post("/event/kernel.disposing"),
        ]
        discovery = (await client.get("/discovery")).json()
    assert [response.status_code for response in responses] == [404] * len(responses)
    assert [event["id"] for event in discovery["events"]] == ["api.public.happened"]


# --- body size ------------------------------------------------------------------------------


async def _chunks(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


class Counting:
    """An ASGI wrapper counting the request body bytes the app pulled."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pulled = 0
        self.messages: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                self.pulled += size
                self.messages.append(size)
            return message

        await self.app(scope, counted, send)


async def _counted_server(
    rt: kernel.Runtime, config: ExposureConfig, nursery: trio.Nursery
) -> tuple[str, Counting]:
    counting = Counting(build_app(rt, config))
    fd = listening_socket("127.0.0.1", 0).detach()
    [url] = await nursery.start(serve, counting, server_config(Config(), config, fd))
    return url, counting


async def _early_response(url: str, target: str, chunks: int, size: int) -> tuple[Any, bytes]:
    """Send ``chunks`` chunks of ``size`` bytes of a chunked body that never ends, then read
    the response the server gives to the incomplete request."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = h11.Request(
            method="POST",
            target=target,
            headers=[
                ("host", host),
                ("authorization", f"Bearer {TOKEN}"),
                ("transfer-encoding", "chunked"),
            ],
        )
        await stream.send_all(connection.send(request) or b"")
        for _ in range(chunks):
            await stream.send_all(connection.send(h11.Data(data=b" " * size)) or b"")
        response, body = None, b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some())
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            else:
                assert isinstance(event, h11.EndOfMessage)
                return response, body


async def test_body_limit_is_enforced_while_reading() -> None:
    limit = 10_000
    config = ExposureConfig(auth=AUTH, allow_tasks=["api.*"], body_limit=limit)
    app = kernel.App("app", register=[*ALL])
    with trio.fail_after(DEADLINE):
        async with kernel.run(app) as rt, trio.open_nursery() as nursery:
            url, counting = await _counted_server(rt, config, nursery)
            async with httpx.AsyncClient(
                base_url=url + config.base_path, headers=HEADERS
            ) as client:
                # Declared too large: refused before a byte is read.
                declared = await client.post("/task/api.public.echo", content=b" " * (limit + 1))
                assert counting.pulled == 0
                # Exactly the limit is fine, with a Content-Length or chunked.
                padded = json.dumps({"input": ["x"]}).encode().ljust(limit)
                exact = await client.post("/task/api.public.echo", content=padded)
                pieces = [padded[i : i + 1000] for i in range(0, limit, 1000)]
                chunked = await client.post("/task/api.public.echo", content=_chunks(pieces))
            # Streamed without Content-Length: refused at the chunk crossing the limit, with
            # the body still incomplete (the server does not wait for the rest).
            counting.pulled = 0
            counting.messages.clear()
            response, body = await _early_response(url, "/__runner/task/api.public.echo", 11, 1000)
            nursery.cancel_scope.cancel()
    assert counting.pulled == 11_000
    assert counting.pulled - counting.messages[-1] <= limit
    assert response is not None
    assert response.status_code == 413
    assert json.loads(body)["code"] == "payload_too_large"
    assert declared.status_code == 413
    body_of_declared = failure(declared)
    assert (body_of_declared["code"], body_of_declared["message"]) == (
        "payload_too_large",
        "the request body exceeds 10000 bytes",
    )
    assert exact.json() == {"ok": True, "result": "x"}
    assert chunked.json() == {"ok": True, "result": "x"}


async def _receiving(messages: Iterable[Mapping[str, Any]]) -> Any:
    queue = list(messages)

    async def receive() -> Mapping[str, Any]:
        return queue.pop(0)

    return receive


async def test_read_body_refuses_a_bad_length_and_a_client_that_left() -> None:
    with pytest.raises(Refusal, match="invalid Content-Length header") as bad_length:
        await read_body(await _receiving([]), content_length="12x", limit=100)
    assert (bad_length.value.status, bad_length.value.code) == (400, "bad_request")
    gone = await _receiving(
        [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    )
    with pytest.raises(Refusal, match="the client left"):
        await read_body(gone, content_length=None, limit=100)
    with pytest.raises(Refusal, match="the client left"):
        await read_body(
            await _receiving([{"type": "http.disconnect"}]), content_length="5", limit=100
        )
    parts = await _receiving(
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "more_body": True},
            {"type": "http.request", "body": b"c"},
        ]
    )
    assert await read_body(parts, content_length=None, limit=3) == b"abc"


async def test_read_body_takes_a_body_already_waiting_without_waiting() -> None:
    async def never() -> Mapping[str, Any]:
        raise AssertionError("nothing more to receive")

    waiting = [{"type": "http.request", "body": b"[1]"}]
    assert await read_body(never, content_length="3", limit=10, received=waiting.pop) == b"[1]"
    # Part of it waiting: the rest is received (under the deadline).
    rest = await _receiving([{"type": "http.request", "body": b"2]"}])
    first = [{"type": "http.request", "body": b"[1,", "more_body": True}]
    assert await read_body(rest, content_length=None, limit=10, received=first.pop) == b"[1,2]"
    # Nothing waiting: received as usual.
    later = await _receiving([{"type": "http.request", "body": b"{}"}])
    assert await read_body(later, content_length=None, limit=10, received=lambda: None) == b"{}"
    # Too large, or the client left, already in what was waiting.
    big = [{"type": "http.request", "body": b"x" * 11}]
    with pytest.raises(Refusal, match="exceeds 10 bytes"):
        await read_body(never, content_length=None, limit=10, received=big.pop)
    left = [{"type": "http.disconnect"}]
    with pytest.raises(Refusal, match="the client left"):
        await read_body(never, content_length=None, limit=10, received=left.pop)


# --- JSON -----------------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"input": ' + b"[" * depth + b"]" * depth + b"}"


async def test_nesting_beyond_max_depth_is_400() -> None:
    async with serving(*ALL, allow_tasks=["api.*"], max_depth=32) as (_, _, client):
        deepest = await client.post("/task/api.public.echo", content=_nested(31))
        too_deep = await client.post("/task/api.public.echo", content=_nested(32))
        very_deep = await client.post("/task/api.public.echo", content=_nested(100_000))
        in_string = await client.post(
            "/task/api.public.echo", json={"input": ["[{" * 1000 + '"\\"[' * 100]}
        )
    assert deepest.status_code == 200
    for refused in (too_deep, very_deep):
        assert refused.status_code == 400
        body = failure(refused)
        assert (body["code"], body["message"]) == (
            "malformed_json",
            "the JSON body nests deeper than 32 levels",
        )
    assert in_string.json()["result"].startswith("[{[{")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "the request body is not valid JSON: Expecting property name enclosed in double"),
        # json's own words for a trailing comma differ between Python versions (3.13 names it).
        (b'{"input": [1,]}', "the request body is not valid JSON: "),
        (b"\xff\xfe{}", "the request body is not valid UTF-8"),
        (b'{"input": "\xc3\x28"}', "the request body is not valid UTF-8"),
        (b'{"input": NaN}', "the request body is not valid JSON: NaN is not JSON"),
        (b'{"input": -Infinity}', "the request body is not valid JSON: -Infinity is not JSON"),
        (b'{"input": 1e999}', "the request body is not valid JSON: number 1e999 is out of"),
        (b'{"input": ' + b"9" * 5000 + b"}", "the request body is not valid JSON: Exceeds"),
        (b"\xef\xbb\xbf{}", "the request body is not valid JSON: Unexpected UTF-8 BOM"),
        (b" ", "the request body is not valid JSON: Expecting value"),
    ],
)
async def test_malformed_bodies_are_400(body: bytes, message: str) -> None:
    async with serving(*ALL, allow_tasks=["api.*"]) as (_, _, client):
        response = await client.post("/task/api.public.echo", content=body)
    assert response.status_code == 400
    found = failure(response)
    assert found["code"] == "malformed_json"
    assert found["message"].startswith(message)


@pytest.mark.parametrize(
    "envelope",
    [[], "input", 3, None, {"input": 1, "extra": 2}, {"payload": 1}, {"Input": 1}],
)
async def test_a_wrong_envelope_is_400_bad_request(envelope: Any) -> None:
    async with serving(*ALL, allow_tasks=["api.*"], allow_events=["api.*"]) as (_, _, client):
        task = await client.post("/task/api.public.echo", content=json.dumps(envelope))
        event = await client.post("/event/api.public.happened", json={"input": 1})
    assert task.status_code == 400
    assert failure(task) | {"request_id": None} == {
        "ok": False,
        "code": "bad_request",
        "message": 'the body must be a JSON object {"input": ...} (or empty)',
        "request_id": None,
    }
    assert failure(event)["message"] == 'the body must be a JSON object {"payload": ...} (or empty)'


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


TRICKY_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\ab\u00e9\u2028\x00'), max_size=12)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TRICKY_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(TRICKY_TEXT, children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, ascii=st.booleans())
def test_nesting_depth_matches_the_parsed_depth(value: Any, ascii: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii).encode()
    assert nesting_depth(text) == _depth(value)
    assert parse_json(text, max_depth=max(1, _depth(value))) == value


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_nesting_depth_of_any_bytes_is_a_count_of_brackets(body: bytes) -> None:
    depth = nesting_depth(body)
    assert 0 <= depth <= body.count(b"[") + body.count(b"{")


def test_nesting_depth_runs_in_linear_time_on_adversarial_input() -> None:
    bodies = [
        b'"\\' * 500_000,
        b'"\\"' * 300_000,
        b'"' + b"[" * 1_000_000,
        b"[]" * 500_000,
        b'"a",' * 250_000,
    ]
    started = time.perf_counter()
    depths = [nesting_depth(body) for body in bodies]
    assert time.perf_counter() - started < 2.0
    assert depths == [0, 0, 0, 1, 0]


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"host": ""}, TypeError, "ExposureConfig: host must be a host name or address"),
        ({"host": "a b"}, TypeError, "host must be"),
        ({"host": 1}, TypeError, "host must be"),
        ({"port": -1}, ValueError, "ExposureConfig: port must be in 0..65535"),
        ({"port": 70000}, ValueError, "port must be in 0..65535"),
        ({"port": "80"}, TypeError, "ExposureConfig: port must be an int"),
        ({"port": True}, TypeError, "port must be an int"),
        ({"base_path": "runner"}, ValueError, "ExposureConfig: base_path must be a path"),
        ({"base_path": "/runner/"}, ValueError, "base_path must be a path"),
        ({"base_path": "/"}, ValueError, "base_path must be a path"),
        ({"base_path": "/a b"}, ValueError, "base_path must be a path"),
        ({"base_path": 1}, TypeError, "ExposureConfig: base_path must be a str"),
        ({"auth": "token"}, TypeError, "ExposureConfig: auth must be a kernel.exposure.Bearer"),
        ({"auth": lambda token: token}, TypeError, "auth must be"),
        ({"allow_tasks": "api.*"}, TypeError, "ExposureConfig: allow_tasks must be a sequence"),
        ({"allow_events": [""]}, TypeError, "allow_events must hold non-empty str patterns"),
        ({"allow_events": [1]}, TypeError, "allow_events must hold non-empty str patterns"),
        ({"body_limit": 0}, ValueError, "ExposureConfig: body_limit must be >= 1"),
        ({"body_limit": 1.5}, TypeError, "body_limit must be an int"),
        ({"max_depth": 0}, ValueError, "ExposureConfig: max_depth must be >= 1"),
        ({"max_depth": 513}, ValueError, "ExposureConfig: max_depth must be <= 512"),
        ({"health": 1}, TypeError, "ExposureConfig: health must be a bool"),
        ({"metrics": None}, TypeError, "ExposureConfig: metrics must be a bool"),
        ({"allow_anonymous": "yes"}, TypeError, "allow_anonymous must be a bool"),
        ({"graceful_timeout": -1}, ValueError, "ExposureConfig: graceful_timeout must be >= 0"),
        ({"graceful_timeout": "1"}, TypeError, "graceful_timeout must be a number"),
    ],
)
def test_bad_settings_name_the_setting(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    options.setdefault("auth", AUTH)
    with pytest.raises(error, match=message):
        http("exposure", **options)


def test_settings_are_normalised() -> None:
    config = ExposureConfig(
        auth=AUTH,
        allow_tasks=(pattern for pattern in ["a.*", "b"]),
        graceful_timeout=timedelta(milliseconds=250),
    )
    assert config.allow_tasks == ("a.*", "b")
    assert config.graceful_timeout == 0.25


async def test_the_server_does_not_announce_itself() -> None:
    async with serving(*ALL, allow_tasks=["api.*"]) as (_, exposure, client):
        response = await client.get(exposure.url + "/health")
    assert "server" not in response.headers


async def test_bearer_auth_is_an_authenticator_too() -> None:
    assert await AUTH(TOKEN) == "tester"
    assert await AUTH("not-it") is None


def test_a_parser_recursing_too_deeply_is_400(monkeypatch: pytest.MonkeyPatch) -> None:
    def recursing(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(_limits._DECODER, "decode", recursing)
    with pytest.raises(Refusal, match="the JSON body nests too deeply") as caught:
        parse_json(b"[]", max_depth=5)
    assert (caught.value.status, caught.value.code) == (400, "malformed_json")
