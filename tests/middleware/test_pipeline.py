from __future__ import annotations

import inspect
import operator
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import middleware as mw
import resilience as rs


def recorder(label: str, trace: list[str]) -> mw.Middleware:
    async def middleware(call: mw.Call, next: mw.Next) -> Any:
        trace.append(f"{label}>")
        result = await next(call)
        trace.append(f"<{label}")
        return result

    return middleware


async def test_first_listed_is_outermost() -> None:
    trace: list[str] = []

    @mw.apply(recorder("a", trace), recorder("b", trace), recorder("c", trace))
    async def target(x: int) -> int:
        trace.append("body")
        return x * 2

    assert await target(21) == 42
    assert trace == ["a>", "b>", "c>", "body", "<c", "<b", "<a"]


async def test_timeout_outside_retry_bounds_all_attempts(autojump_clock) -> None:
    starts: list[float] = []

    @mw.apply(mw.timeout(5.0), mw.retry(attempts=10, wait=rs.backoff.constant(0.0)))
    async def slow_then_fail() -> None:
        starts.append(trio.current_time())
        await trio.sleep(2.0)
        raise ConnectionError

    with pytest.raises(rs.TimeoutExceeded):
        await slow_then_fail()
    assert starts == [0.0, 2.0, 4.0]
    assert trio.current_time() == 5.0


async def test_retry_outside_timeout_bounds_each_attempt(autojump_clock) -> None:
    starts: list[float] = []

    @mw.apply(
        mw.retry(attempts=3, wait=rs.backoff.constant(1.0), on=rs.TimeoutExceeded),
        mw.timeout(5.0),
    )
    async def hangs() -> None:
        starts.append(trio.current_time())
        await trio.sleep(100.0)

    with pytest.raises(rs.TimeoutExceeded):
        await hangs()
    assert starts == [0.0, 6.0, 12.0]
    assert trio.current_time() == 17.0


async def test_state_is_shared_between_middlewares_and_private_to_a_call() -> None:
    seen: list[dict[str, Any]] = []

    async def writer(call: mw.Call, next: mw.Next) -> Any:
        call.state["user"] = call.args[0]
        return await next(call)

    async def reader(call: mw.Call, next: mw.Next) -> Any:
        seen.append(dict(call.state))
        return await next(call)

    @mw.apply(writer, reader)
    async def target(user: str) -> str:
        return user

    await target("ann")
    await target("bob")
    assert seen == [{"user": "ann"}, {"user": "bob"}]


async def test_a_middleware_can_replace_the_arguments() -> None:
    async def lowercase(call: mw.Call, next: mw.Next) -> Any:
        return await next(
            call.replace(args=(call.args[0].lower(),), kwargs={"suffix": call.kwargs["suffix"]})
        )

    async def only_kwargs(call: mw.Call, next: mw.Next) -> Any:
        replaced = call.replace(kwargs={"suffix": "?"})
        assert replaced.args == call.args
        assert replaced.state is call.state
        return await next(replaced)

    @mw.apply(lowercase, only_kwargs)
    async def greet(name: str, *, suffix: str) -> str:
        return f"hello {name}{suffix}"

    assert await greet("ANN", suffix="!") == "hello ann?"


async def test_wrapped_function_keeps_its_metadata() -> None:
    async def fetch(url: str, *, retries: int = 2) -> bytes:
        """Fetch a URL."""
        return url.encode()

    pipeline = mw.Pipeline([mw.timeout(1.0)], name="io")
    wrapped = pipeline.wrap(fetch)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch a URL."
    assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert wrapped.pipeline is pipeline  # type: ignore[attr-defined]
    assert wrapped.target_id.endswith("test_wrapped_function_keeps_its_metadata.<locals>.fetch")  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped("x") == b"x"


async def test_empty_pipeline_passes_the_call_through() -> None:
    async def echo(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return args, kwargs

    wrapped = mw.Pipeline([]).wrap(echo, target_id="echo")
    assert await wrapped(1, k=2) == ((1,), {"k": 2})
    assert wrapped.target_id == "echo"  # type: ignore[attr-defined]
    assert len(mw.Pipeline()) == 0


async def test_target_id_can_be_given() -> None:
    ids: list[str] = []

    async def record(call: mw.Call, next: mw.Next) -> Any:
        ids.append(call.target_id)
        return await next(call)

    async def body() -> None:
        return None

    await mw.Pipeline([record]).wrap(body, target_id="orders.create")()
    assert ids == ["orders.create"]


async def test_pipelines_nest_and_concatenate() -> None:
    trace: list[str] = []
    a, b, c = (recorder(x, trace) for x in "abc")
    inner = mw.Pipeline([b])
    nested = mw.Pipeline([a, inner, c])
    assert nested.middlewares == (a, b, c)
    assert (mw.Pipeline([a]) + mw.Pipeline([b, c])).middlewares == (a, b, c)

    @mw.apply(mw.Pipeline([a]), b)
    async def target() -> str:
        return "ok"

    assert await target() == "ok"
    assert trace == ["a>", "b>", "<b", "<a"]


def test_adding_something_else_is_refused() -> None:
    with pytest.raises(TypeError, match="unsupported operand"):
        operator.add(mw.Pipeline(), [1])


class AsyncCallable:
    async def __call__(self, call: mw.Call, next: mw.Next) -> Any:
        return await next(call)


def test_an_object_with_async_call_is_a_middleware() -> None:
    instance = AsyncCallable()
    assert mw.Pipeline([instance]).middlewares == (instance,)


@pytest.mark.parametrize(
    ("middlewares", "message"),
    [
        ([5], r"Pipeline: middlewares\[0\] is not a middleware: 5"),
        ([AsyncCallable(), lambda call, next: None], r"middlewares\[1\] is not a middleware"),
        ("abc", "Pipeline: middlewares must be a list of middlewares"),
        (7, "Pipeline: middlewares must be a list of middlewares"),
    ],
)
def test_a_non_middleware_is_refused_naming_its_place(middlewares: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        mw.Pipeline(middlewares)


def test_apply_refuses_a_sync_function_at_decoration_time() -> None:
    def blocking() -> int:
        return 1

    with pytest.raises(TypeError, match=r"mw.apply: .*blocking is not an async function"):
        mw.apply(mw.timeout(1))(blocking)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Pipeline.wrap: .*blocking is not an async function"):
        mw.Pipeline().wrap(blocking)  # type: ignore[arg-type]


@given(
    st.lists(st.integers(min_value=0, max_value=3), max_size=4),
    st.lists(st.integers(min_value=0, max_value=3), max_size=4),
    st.lists(st.integers(min_value=0, max_value=3), max_size=4),
    st.integers(min_value=-5, max_value=5),
)
def test_composition_is_associative(
    a: list[int], b: list[int], c: list[int], argument: int
) -> None:
    """``(a + b) + c`` and ``a + (b + c)`` give identical call traces, for random middleware
    lists mixing pass-through, argument-changing, short-circuiting and twice-calling ones."""

    def build(trace: list[str]) -> list[mw.Pipeline]:
        def make(kind: int, label: str) -> mw.Middleware:
            async def middleware(call: mw.Call, next: mw.Next) -> Any:
                trace.append(f"{label}:{kind}>{call.args}")
                if kind == 0:
                    result = await next(call)
                elif kind == 1:
                    result = await next(call.replace(args=(call.args[0] + 1,)))
                elif kind == 2 and call.args[0] > 3:
                    result = -1  # answers without calling the rest
                else:
                    result = (await next(call)) + (await next(call))
                trace.append(f"<{label}={result}")
                return result

            return middleware

        return [
            mw.Pipeline([make(kind, f"{name}{i}") for i, kind in enumerate(kinds)])
            for name, kinds in (("a", a), ("b", b), ("c", c))
        ]

    async def body(x: int) -> int:
        return x * 10

    async def run(group: str) -> list[str]:
        trace: list[str] = []
        pa, pb, pc = build(trace)
        pipeline = (pa + pb) + pc if group == "left" else pa + (pb + pc)
        trace.append(f"result={await pipeline.wrap(body)(argument)}")
        return trace

    assert trio.run(run, "left") == trio.run(run, "right")


def test_concatenation_keeps_a_name() -> None:
    named, anonymous = mw.Pipeline([], name="outer"), mw.Pipeline([])
    assert (named + anonymous).name == "outer"
    assert (anonymous + mw.Pipeline([], name="inner")).name == "inner"
    assert (named + mw.Pipeline([], name="inner")).name == "outer"
    assert (anonymous + anonymous).name is None
