"""Fuzzing a live exposure: hypothesis-generated bodies, nestings, header values and ids
against one server (started once for the module, in a thread of its own) — never a 500,
always the contract's JSON, never a hang (every request has a timeout)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import kernel
from kernel.exposure import http
from tests.kernel.exposure.servers import AUTH, HEADERS, TOKEN

LIMIT = 4096
MAX_DEPTH = 32
TIMEOUT = 5.0
FUZZ = settings(max_examples=120, deadline=None)


@attrs.frozen
class Item:
    name: str
    quantity: int
    tags: list[str] = attrs.Factory(list)


@kernel.task("fuzz.echo")
async def echo(*args: Any, **kwargs: Any) -> Any:
    return {"args": list(args), "kwargs": kwargs}


@kernel.task("fuzz.typed", input=Item)
async def typed(item: Item) -> Item:
    return item


@kernel.task("fuzz.fixed")
async def fixed(a: int, b: str = "", *, c: bool = False) -> list[Any]:
    return [a, b, c]


@kernel.task("secret.task")
async def secret() -> str:  # pragma: no cover - never allowed, never run
    return "secret"


item_noted = kernel.event("fuzz.noted", payload=Item)
anything = kernel.event("fuzz.anything")


@kernel.hook("fuzz.listener", on=[item_noted, anything])
async def listener(emission: kernel.Emission) -> None:
    pass


TASKS = ("fuzz.echo", "fuzz.typed", "fuzz.fixed")
EVENTS = ("fuzz.noted", "fuzz.anything")
TARGETS = [f"/task/{id}" for id in (*TASKS, "secret.task")] + [
    f"/event/{id}" for id in (*EVENTS, "fuzz.listener")
]


@attrs.define
class Live:
    """The server's base URL and a client on it, shared by the module's examples."""

    url: str
    base_url: str
    client: httpx.Client


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    exposure = http(
        "fuzz.exposure",
        auth=AUTH,
        allow_tasks=["fuzz.*"],
        allow_events=["fuzz.*"],
        body_limit=LIMIT,
        max_depth=MAX_DEPTH,
    )
    app = kernel.App(
        "fuzz", register=[echo, typed, fixed, secret, item_noted, anything, listener, exposure]
    )
    up = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with kernel.run(app) as rt:
            box["exposure"] = rt.resource(exposure)
            box["token"] = trio.lowlevel.current_trio_token()
            box["stop"] = stop = trio.Event()
            up.set()
            await stop.wait()

    def serve() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # pragma: no cover - reported by the assertions below
            box["error"] = exc
            up.set()

    thread = threading.Thread(target=serve, name="fuzzed exposure")
    thread.start()
    assert up.wait(TIMEOUT)
    assert "error" not in box, box.get("error")
    value = box["exposure"]
    with httpx.Client(base_url=value.base_url, headers=HEADERS, timeout=TIMEOUT) as client:
        yield Live(value.url, value.base_url, client)
    trio.from_thread.run_sync(box["stop"].set, trio_token=box["token"])
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert "error" not in box, box.get("error")


def check(response: httpx.Response, *expected: int) -> dict[str, Any]:
    """``response`` follows the contract: never a 500, JSON with the contract's keys, the
    request id in the header and the body."""
    assert response.status_code < 500, response.text
    if expected:
        assert response.status_code in expected, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict)
    request_id = response.headers["x-request-id"]
    if response.status_code == 200:
        assert body["ok"] is True
        assert set(body) in ({"ok"}, {"ok", "result"})
    else:
        assert body["ok"] is False
        keys = {"ok", "code", "message", "request_id"}
        assert set(body) == (keys | {"details"} if response.status_code == 422 else keys)
        assert isinstance(body["code"], str)
        assert isinstance(body["message"], str)
        assert body["request_id"] == request_id
        if response.status_code == 422:
            assert all(isinstance(line, str) for line in body["details"])
    return body


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
ENVELOPES = st.one_of(
    st.fixed_dictionaries({"input": JSON_VALUES}),
    st.fixed_dictionaries({"payload": JSON_VALUES}),
    st.fixed_dictionaries(
        {"input": st.fixed_dictionaries({"name": JSON_VALUES, "quantity": JSON_VALUES})}
    ),
    st.fixed_dictionaries(
        {"payload": st.fixed_dictionaries({"name": st.text(), "quantity": st.integers()})}
    ),
    JSON_VALUES,
)


@st.composite
def jsonish(draw: st.DrawFn) -> bytes:
    """Valid JSON of an envelope, sometimes cut short or with a byte changed."""
    text = json.dumps(draw(ENVELOPES), ensure_ascii=draw(st.booleans())).encode()
    mutation = draw(st.sampled_from(["none", "cut", "insert", "replace"]))
    if mutation == "none" or not text:
        return text
    at = draw(st.integers(0, len(text) - 1))
    if mutation == "cut":
        return text[:at]
    byte = bytes([draw(st.integers(0, 255))])
    if mutation == "insert":
        return text[:at] + byte + text[at:]
    return text[:at] + byte + text[at + 1 :]


@FUZZ
@given(
    body=st.binary(max_size=LIMIT + 200) | jsonish(),
    target=st.sampled_from(TARGETS),
    content_type=st.sampled_from(["application/json", "text/plain", None]),
)
def test_any_body_gets_a_contract_answer(
    live: Live, body: bytes, target: str, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = live.client.post(target, content=body, headers=headers)
    check(response, 200, 400, 404, 413, 422)
    if target.endswith(("secret.task", "fuzz.listener")):
        assert response.status_code == 404
    if len(body) > LIMIT:
        assert response.status_code == 413


@FUZZ
@given(
    depth=st.integers(0, 3 * MAX_DEPTH),
    brackets=st.lists(st.sampled_from(["[]", "{}"]), min_size=1, max_size=3),
    filler=st.sampled_from(["", "1", '"[{"', "null"]),
)
def test_nesting_is_answered_by_its_depth(
    live: Live, depth: int, brackets: list[str], filler: str
) -> None:
    opening, closing = "", ""
    for level in range(depth):
        pair = brackets[level % len(brackets)]
        opening += pair[0] + ('"k":' if pair == "{}" else "")
        closing = pair[1] + closing
    if not filler:
        filler = "0"  # an object member needs a value, and so does the argument list
    value = opening + filler + closing
    body = f'{{"input": [{value}]}}'.encode()
    response = live.client.post("/task/fuzz.echo", content=body)
    if len(body) > LIMIT:
        check(response, 413)
    elif depth + 2 > MAX_DEPTH:
        assert check(response, 400)["code"] == "malformed_json"
    else:
        assert check(response, 200)["result"] == {"args": [json.loads(value)], "kwargs": {}}


HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
).map(str.strip)


@FUZZ
@given(request_id=HEADER_TEXT, authorization=HEADER_TEXT | st.just(f"Bearer {TOKEN}"))
def test_any_header_values_get_a_contract_answer(
    live: Live, request_id: str, authorization: str
) -> None:
    headers = {
        b"x-request-id": request_id.encode("latin-1"),
        b"authorization": authorization.encode("latin-1"),
    }
    response = live.client.post("/task/fuzz.echo", json={"input": [1]}, headers=headers)
    body = check(response, 200, 401)
    if authorization == f"Bearer {TOKEN}":
        assert body == {"ok": True, "result": {"args": [1], "kwargs": {}}}
    else:
        assert response.headers["www-authenticate"] == "Bearer"
    valid = 0 < len(request_id) <= 64 and all(
        c.isascii() and (c.isalnum() or c in "._:-") for c in request_id
    )
    assert (response.headers["x-request-id"] == request_id) is valid


@FUZZ
@given(id=st.text(max_size=40), kind=st.sampled_from(["task", "event"]))
def test_any_id_is_found_only_when_allowed(live: Live, id: str, kind: str) -> None:
    path = f"/{kind}/" + urllib.parse.quote(id, safe="")
    response = live.client.post(path, json={})
    allowed = TASKS if kind == "task" else EVENTS
    if id in allowed:
        check(response, 200, 422)
    else:
        body = check(response, 404)
        assert (body["code"], body["message"]) == ("not_found", "not found")


def test_the_server_is_still_healthy_after_the_fuzzing(live: Live) -> None:
    response = live.client.get(live.url + "/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
