from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import middleware as mw
import resilience as rs


async def failing() -> None:
    raise ConnectionError("down")


async def test_each_wrapped_function_gets_its_own_breaker_named_after_it() -> None:
    breaker = mw.circuit_breaker(failure_threshold=1, reset_timeout=60)

    @mw.apply(breaker)
    async def first() -> None:
        raise ConnectionError

    @mw.apply(breaker)
    async def second() -> str:
        return "fine"

    with pytest.raises(ConnectionError):
        await first()
    assert first.breaker.state is rs.CircuitState.OPEN  # type: ignore[attr-defined]
    assert second.breaker.state is rs.CircuitState.CLOSED  # type: ignore[attr-defined]
    assert first.breaker is not second.breaker  # type: ignore[attr-defined]
    assert first.breaker.name.endswith(".first")  # type: ignore[attr-defined]
    with pytest.raises(rs.CircuitOpen):
        await first()
    assert await second() == "fine"


async def test_a_passed_instance_is_shared() -> None:
    shared = rs.CircuitBreaker(failure_threshold=1, reset_timeout=60, name="payments")

    @mw.apply(mw.circuit_breaker(shared))
    async def charge() -> None:
        raise ConnectionError

    @mw.apply(mw.circuit_breaker(shared))
    async def refund() -> str:
        return "ok"

    assert charge.breaker is shared is refund.breaker  # type: ignore[attr-defined]
    with pytest.raises(ConnectionError):
        await charge()
    with pytest.raises(rs.CircuitOpen):
        await refund()


async def test_an_explicit_name_is_kept(events: list[rs.Event]) -> None:
    @mw.apply(mw.retry(attempts=2, wait=rs.backoff.constant(0), name="upstream"))
    async def fetch() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await fetch()
    assert {e.source for e in events} == {"upstream"}


async def test_retry_counts_attempts_in_call_state(autojump_clock) -> None:
    attempts: list[int] = []

    async def watch(call: mw.Call, next: mw.Next) -> Any:
        try:
            return await next(call)
        finally:
            attempts.append(call.state["attempt"])

    calls = 0

    @mw.apply(watch, mw.retry(attempts=3, wait=rs.backoff.constant(0.5)))
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return "ok"

    assert await flaky() == "ok"
    assert attempts == [3]
    assert trio.current_time() == 1.0


async def test_timeout_accepts_an_instance_and_a_name(autojump_clock) -> None:
    shared = rs.Timeout(1.0)

    @mw.apply(mw.timeout(shared))
    async def slow() -> None:
        await trio.sleep(2)

    with pytest.raises(rs.TimeoutExceeded):
        await slow()
    assert mw.timeout(2.0, name="db").bind("x").middleware is not None
    with pytest.raises(TypeError, match=r"mw\.timeout: pass an rs\.Timeout to share, or options"):
        mw.timeout(shared, name="db")


async def test_rate_limit_per_key(autojump_clock) -> None:
    done: list[tuple[str, float]] = []

    @mw.apply(mw.rate_limit(rate=1, per=1.0, key=lambda call: call.args[0]))
    async def send(tenant: str) -> None:
        done.append((tenant, trio.current_time()))

    for tenant in ("a", "a", "b"):
        await send(tenant)
    assert done == [("a", 0.0), ("a", 1.0), ("b", 1.0)]
    assert isinstance(send.limiter, rs.RateLimiter)  # type: ignore[attr-defined]


async def test_rate_limit_without_key_uses_one_bucket(autojump_clock) -> None:
    @mw.apply(mw.rate_limit(rate=2, per=1.0, max_wait=0))
    async def ping(n: int) -> int:
        return n

    assert [await ping(1), await ping(2)] == [1, 2]
    with pytest.raises(rs.RateLimited):
        await ping(3)


async def test_cache_serves_repeated_calls_and_marks_hits(autojump_clock) -> None:
    computed: list[tuple[Any, ...]] = []
    hits: list[bool] = []

    async def watch(call: mw.Call, next: mw.Next) -> Any:
        result = await next(call)
        hits.append(call.state["cache_hit"])
        return result

    @mw.apply(watch, mw.cache(ttl=10.0))
    async def price(sku: str, *, currency: str = "EUR") -> str:
        computed.append((sku, currency))
        return f"{sku}:{currency}"

    assert await price("a") == "a:EUR"
    assert await price("a") == "a:EUR"
    assert await price("a", currency="USD") == "a:USD"
    assert await price("a", currency="USD") == "a:USD"
    assert computed == [("a", "EUR"), ("a", "USD")]
    assert hits == [False, True, False, True]
    assert price.cache.statistics().hits == 2  # type: ignore[attr-defined]


async def test_default_cache_key_includes_the_function() -> None:
    shared = rs.Cache(ttl=10.0)

    @mw.apply(mw.cache(shared))
    async def one(x: int) -> str:
        return "one"

    @mw.apply(mw.cache(shared))
    async def two(x: int) -> str:
        return "two"

    assert (await one(1), await two(1)) == ("one", "two")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([1],), {}, r"argument 0 \(list\)"),
        ((1, {"a": 1}), {}, r"argument 1 \(dict\)"),
        ((1,), {"tags": {"x"}}, r"argument 'tags' \(set\)"),
        (((1, [2]),), {}, r"argument 0 \(tuple\)"),
    ],
)
async def test_unhashable_argument_is_named(args, kwargs, message) -> None:
    @mw.apply(mw.cache(ttl=1.0))
    async def lookup(*args: Any, **kwargs: Any) -> int:
        return 1

    with pytest.raises(TypeError, match=message + r" of .*lookup is not hashable"):
        await lookup(*args, **kwargs)


async def test_cache_key_override() -> None:
    @mw.apply(mw.cache(ttl=1.0, key=lambda call: call.args[0]["id"]))
    async def profile(user: dict[str, int]) -> dict[str, int]:
        return dict(user)

    first = await profile({"id": 1, "v": 1})
    assert await profile({"id": 1, "v": 2}) is first


async def test_fallback_handler_gets_the_call_arguments() -> None:
    async def default(exc: Exception, user: str, *, region: str) -> str:
        return f"default for {user} in {region} after {type(exc).__name__}"

    @mw.apply(mw.fallback(handler=default, on=ConnectionError))
    async def recommend(user: str, *, region: str) -> str:
        raise ConnectionError

    assert await recommend("ann", region="eu") == "default for ann in eu after ConnectionError"

    @mw.apply(mw.fallback(value=[], on=ConnectionError))
    async def other() -> list[str]:
        raise KeyError("not selected")

    with pytest.raises(KeyError):
        await other()


async def test_bulkhead_and_hedge(autojump_clock) -> None:
    @mw.apply(mw.bulkhead(max_concurrent=1))
    async def exclusive() -> None:
        await trio.sleep(1)

    rejected = 0

    async def attempt() -> None:
        nonlocal rejected
        try:
            await exclusive()
        except rs.BulkheadFull:
            rejected += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt)
        nursery.start_soon(attempt)
    assert rejected == 1
    assert exclusive.bulkhead.statistics().rejected == 1  # type: ignore[attr-defined]

    latencies = iter([10.0, 0.5])

    @mw.apply(mw.hedge(delay=1.0))
    async def search() -> float:
        latency = next(latencies)
        await trio.sleep(latency)
        return latency

    start = trio.current_time()
    assert await search() == 0.5
    assert trio.current_time() - start == 1.5


@pytest.mark.parametrize(
    ("make", "exc", "message"),
    [
        (lambda: mw.timeout(-1), ValueError, "Timeout: seconds must be >= 0"),
        (lambda: mw.retry(attempts=0), ValueError, "Retry: attempts must be >= 1"),
        (
            lambda: mw.circuit_breaker(failure_ratio=2.0),
            ValueError,
            "CircuitBreaker: failure_ratio",
        ),
        (lambda: mw.rate_limit(rate=0), ValueError, "RateLimiter: rate"),
        (lambda: mw.bulkhead(max_concurrent=0), ValueError, "Bulkhead: max_concurrent"),
        (lambda: mw.cache(ttl=-1), ValueError, "Cache: ttl"),
        (lambda: mw.fallback(), ValueError, "Fallback: value or handler"),
        (lambda: mw.hedge(delay=-1), ValueError, "Hedge: delay"),
        (lambda: mw.retry(rs.Timeout(1)), TypeError, "mw.retry: expected an rs.Retry to share"),
        (
            lambda: mw.circuit_breaker(rs.CircuitBreaker(), failure_threshold=2),
            TypeError,
            r"not both",
        ),
        (lambda: mw.cache(ttl=1, key="id"), TypeError, "mw.cache: key must be a callable"),
        (lambda: mw.rate_limit(rate=1, key=3), TypeError, "mw.rate_limit: key must be a callable"),
    ],
)
def test_bad_options_fail_where_the_pipeline_is_written(make, exc, message) -> None:
    with pytest.raises(exc, match=message):
        make()


def test_exposes_the_outermost_primitive_of_a_kind() -> None:
    outer = rs.CircuitBreaker(name="outer")

    @mw.apply(mw.circuit_breaker(outer), mw.circuit_breaker(name="inner"))
    async def guarded() -> None:
        return None

    assert guarded.breaker is outer  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("adapter", "primitive"),
    [
        (mw.retry, rs.Retry),
        (mw.circuit_breaker, rs.CircuitBreaker),
        (mw.rate_limit, rs.RateLimiter),
        (mw.bulkhead, rs.Bulkhead),
        (mw.cache, rs.Cache),
        (mw.fallback, rs.Fallback),
        (mw.hedge, rs.Hedge),
    ],
)
def test_adapter_options_are_the_primitives_with_the_same_defaults(
    adapter: Callable[..., object], primitive: type
) -> None:
    fields = {field.alias: field for field in attrs.fields(primitive) if field.init}
    options = {
        name: parameter.default
        for name, parameter in inspect.signature(adapter).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("key", "returns")
    }
    assert set(options) == set(fields)
    for name, default in options.items():
        field_default = fields[name].default
        if field_default is attrs.NOTHING or isinstance(field_default, attrs.Factory):
            assert default is None, name  # None: the primitive's required or computed value
        elif name == "value":
            assert repr(default) == "NO_VALUE"  # not None: a fallback may answer None
        else:
            assert default == field_default, name


def test_a_misspelt_option_is_refused() -> None:
    with pytest.raises(TypeError, match="atempts"):
        mw.retry(atempts=3)  # type: ignore[call-arg]


def test_options_left_at_their_default_are_not_passed() -> None:
    shared = rs.Retry(attempts=2)
    assert mw.retry(shared, attempts=3).kind == "retry"  # 3 is the default: not "both"
    with pytest.raises(TypeError, match=r"not both"):
        mw.retry(shared, attempts=4)
    with pytest.raises(TypeError, match="delay"):
        mw.hedge()  # a required option of the primitive
