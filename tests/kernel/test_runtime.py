from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing
from loguru import logger

import kernel
import middleware as mw
import resilience as rs
from kernel import run


def lifecycle(log: list[str], id: str, deps: dict[str, Any] | None = None) -> kernel.Resource:
    """A resource that logs its init and dispose and yields its id."""

    @kernel.resource(id, deps=deps)
    async def res(**_: Any) -> Any:
        log.append(f"init {id}")
        yield id
        log.append(f"dispose {id}")

    return res


async def test_a_server_depending_on_a_db_is_disposed_first() -> None:
    log: list[str] = []
    db = lifecycle(log, "db")
    server = lifecycle(log, "server", {"db": db})
    app = kernel.App("shop", register=[server, db])
    async with run(app) as rt:
        assert rt.resource(server) == "server"
        log.append("running")
    assert log == ["init db", "init server", "running", "dispose server", "dispose db"]


async def test_partial_init_failure_disposes_what_was_up_in_reverse() -> None:
    log: list[str] = []
    a = lifecycle(log, "a")
    b = lifecycle(log, "b", {"a": a})

    @kernel.resource("c", deps={"b": b})
    async def c(b: str) -> Any:
        log.append("init c")
        raise OSError("disk on fire")
        yield  # pragma: no cover - makes c an async generator

    d = lifecycle(log, "d", {"c": c})
    with pytest.raises(kernel.ResourceInitError, match="resource 'c' failed to initialise") as info:
        async with run(kernel.App("app", register=[a, b, c, d])):
            pytest.fail("the body must not run")
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.resource_id == "c"
    assert log == ["init a", "init b", "init c", "dispose b", "dispose a"]


async def test_every_disposer_runs_and_failures_are_grouped() -> None:
    log: list[str] = []

    def failing(id: str) -> kernel.Resource:
        @kernel.resource(id)
        async def res() -> Any:
            yield id
            log.append(f"dispose {id}")
            raise RuntimeError(f"{id} would not close")

        return res

    app = kernel.App("app", register=[failing("x"), lifecycle(log, "y"), failing("z")])
    with pytest.raises(ExceptionGroup) as info:
        async with run(app):
            pass
    assert log == ["init y", "dispose z", "dispose y", "dispose x"]
    assert [str(e) for e in info.value.exceptions] == ["z would not close", "x would not close"]
    assert "while disposing resource 'z'" in info.value.exceptions[0].__notes__


async def test_a_body_error_comes_out_as_itself_after_disposal() -> None:
    log: list[str] = []

    @kernel.resource("flaky")
    async def flaky() -> Any:
        yield 1
        raise RuntimeError("close failed")

    app = kernel.App("app", register=[lifecycle(log, "a"), flaky])
    with pytest.raises(KeyError) as info:
        async with run(app):
            raise KeyError("boom")
    assert log == ["init a", "dispose a"]
    assert info.value.__notes__ == ["also, while disposing: RuntimeError: close failed"]


async def test_cancellation_during_init_disposes_what_was_up(autojump_clock) -> None:
    log: list[str] = []
    a = lifecycle(log, "a")

    @kernel.resource("slow", deps={"a": a})
    async def slow(a: str) -> Any:
        log.append("init slow")
        await trio.sleep(10)
        yield "never"  # pragma: no cover

    with trio.move_on_after(1) as scope:
        async with run(kernel.App("app", register=[a, slow])):
            pytest.fail("the body must not run")
    assert scope.cancelled_caught
    assert log == ["init a", "init slow", "dispose a"]


async def test_cancellation_during_run_disposes_everything(autojump_clock) -> None:
    log: list[str] = []
    app = kernel.App("app", register=[lifecycle(log, "a"), lifecycle(log, "b")])
    with trio.move_on_after(5) as scope:
        async with run(app):
            await trio.sleep(100)
    assert scope.cancelled_caught
    assert trio.current_time() == 5
    assert log == ["init a", "init b", "dispose b", "dispose a"]


async def test_disposers_run_even_when_cancelled_and_may_await(autojump_clock) -> None:
    log: list[str] = []

    @kernel.resource("graceful")
    async def graceful() -> Any:
        yield None
        await trio.sleep(1)  # shielded: a cancelled runtime still closes properly
        log.append(f"closed at {trio.current_time()}")

    with trio.move_on_after(2):
        async with run(kernel.App("app", register=[graceful])):
            await trio.sleep(10)
    assert log == ["closed at 3.0"]


async def test_background_work_is_cancelled_before_dispose(autojump_clock) -> None:
    log: list[str] = []

    @kernel.resource("poller")
    async def poller(scope: kernel.Scope) -> Any:
        async def poll() -> None:
            try:
                while True:
                    await trio.sleep(1)
                    log.append(f"poll {trio.current_time():g}")
            except trio.Cancelled:
                log.append("poller cancelled")
                raise

        scope.nursery.start_soon(poll)
        assert scope.id == "poller"
        yield None
        log.append("dispose poller")

    async with run(kernel.App("app", register=[poller])):
        await trio.sleep(2.5)
    assert log == ["poll 1", "poll 2", "poller cancelled", "dispose poller"]


async def test_a_crashing_background_task_brings_the_runtime_down(autojump_clock) -> None:
    log: list[str] = []

    @kernel.resource("consumer")
    async def consumer(scope: kernel.Scope) -> Any:
        async def consume() -> None:
            await trio.sleep(1)
            raise ConnectionResetError("broker went away")

        scope.nursery.start_soon(consume)
        yield None
        log.append("dispose consumer")

    with pytest.raises(ExceptionGroup) as info:
        async with run(kernel.App("app", register=[consumer, lifecycle(log, "other")])):
            await trio.sleep(100)
    assert info.value.subgroup(ConnectionResetError) is not None
    assert trio.current_time() == 1
    assert log == ["init other", "dispose other", "dispose consumer"]


async def test_plain_async_function_resource_and_config() -> None:
    @attrs.frozen
    class DbConfig:
        url: str
        pool: int = 4

    @kernel.resource("db", config=DbConfig)
    async def db(config: DbConfig) -> str:
        return f"{config.url} x{config.pool}"

    app = kernel.App("app", register=[db.with_config({"url": "sqlite://"})])
    async with run(app) as rt:
        assert rt.resource(db) == "sqlite:// x4"


async def test_tasks_get_deps_and_injected_tasks_run_their_pipeline() -> None:
    calls: list[str] = []

    async def count(call: mw.Call, next: mw.Next) -> Any:
        calls.append(call.target_id)
        return await next(call)

    @kernel.resource("prices")
    async def prices() -> dict[str, float]:
        return {"tea": 2.5}

    @kernel.task("price", deps={"prices": prices}, middleware=[count])
    async def price(item: str, *, prices: dict[str, float]) -> float:
        return prices[item]

    @kernel.task("total", deps={"price": price})
    async def total(items: list[str], *, price: Any) -> float:
        return sum([await price(item) for item in items])

    app = kernel.App("app", register=[prices, price, total])
    async with run(app) as rt:
        assert await rt.run_task(total, ["tea", "tea"]) == 5.0
    assert calls == ["price", "price"]
    # Calling the definition runs the bare body with explicit deps.
    assert await price("tea", prices={"tea": 1.0}) == 1.0


async def test_app_level_middleware_wraps_every_task() -> None:
    seen: list[str] = []

    async def policy(call: mw.Call, next: mw.Next) -> Any:
        seen.append(f"policy {call.target_id}")
        return await next(call)

    async def own(call: mw.Call, next: mw.Next) -> Any:
        seen.append(f"own {call.target_id}")
        return await next(call)

    @kernel.task("t", middleware=[own])
    async def t() -> int:
        return 1

    async with run(kernel.App("app", register=[t]), middleware=[policy]) as rt:
        assert await rt.run_task(t) == 1
    assert seen == ["policy t", "own t"]


async def test_task_input_and_result_are_validated() -> None:
    @attrs.frozen
    class Order:
        item: str
        quantity: int = attrs.field(validator=attrs.validators.gt(0))

    @attrs.frozen
    class Receipt:
        total: float

    @kernel.task("order", input=Order, result=Receipt)
    async def order(order: Order) -> Any:
        return {"total": order.quantity * 2.0} if order.item != "bad" else {"sum": 1}

    async with run(kernel.App("app", register=[order])) as rt:
        assert await rt.run_task(order, {"item": "tea", "quantity": 3}) == Receipt(6.0)
        assert await rt.run_task(order, Order("tea", 1)) == Receipt(2.0)
        assert await rt.run_task(order, item="tea", quantity=2) == Receipt(4.0)
        with pytest.raises(
            kernel.ConfigError, match=r"task 'order': input: 'quantity' must be > 0"
        ):
            await rt.run_task(order, {"item": "tea", "quantity": 0})
        with pytest.raises(kernel.ConfigError, match=r"task 'order': result.total: required"):
            await rt.run_task(order, {"item": "bad", "quantity": 1})
        with pytest.raises(kernel.ConfigError, match="input: pass one value"):
            await rt.run_task(order, {"item": "tea"}, quantity=1)


async def test_task_failures_are_logged_with_the_task_id() -> None:
    records: list[dict[str, Any]] = []
    sink = logger.add(lambda m: records.append(m.record), level="DEBUG")

    @kernel.task("orders.fail")
    async def fail() -> None:
        raise LookupError("no such order")

    try:
        async with run(kernel.App("app", register=[fail])) as rt:
            with pytest.raises(LookupError):
                await rt.run_task(fail)
    finally:
        logger.remove(sink)
    assert [(r["extra"]["source"], r["exception"].type) for r in records] == [
        ("orders.fail", LookupError)
    ]


async def test_logger_dependency_is_bound_to_the_dependent() -> None:
    sources: list[str] = []
    sink = logger.add(lambda m: sources.append(m.record["extra"].get("source")), level="INFO")

    @kernel.resource("cache", deps={"log": kernel.logger})
    async def cache(log: Any) -> None:
        log.info("warming up")

    try:
        async with run(kernel.App("app", register=[cache])):
            pass
    finally:
        logger.remove(sink)
    assert sources == ["cache"]


async def test_events_hooks_and_lifecycle_events() -> None:
    seen: list[str] = []

    @attrs.frozen
    class Placed:
        order_id: int

    placed = kernel.event("orders.placed", payload=Placed)

    @kernel.task("orders.place", deps={"notify": placed})
    async def place(order_id: int, *, notify: Any) -> None:
        await notify({"order_id": order_id})

    @kernel.hook("mail", on=placed, deps={"log": kernel.logger})
    async def mail(emission: Any, *, log: Any) -> None:
        seen.append(f"mail {emission.payload.order_id} from {emission.source}")

    @kernel.hook("lifecycle", on=[kernel.events.ready, kernel.events.disposing])
    async def lifecycle_hook(emission: Any) -> None:
        seen.append(emission.event.id)

    @kernel.hook("closed", on=kernel.events.disposed)
    async def closed(emission: Any) -> None:
        seen.append("disposed")

    app = kernel.App("app", register=[placed, place, mail, lifecycle_hook, closed])
    async with run(app) as rt:
        await rt.run_task(place, 7)
        await rt.emit(placed, Placed(8))
    assert seen == [
        "kernel.ready",
        "mail 7 from orders.place",
        "mail 8 from None",
        "kernel.disposing",
        "disposed",
    ]


async def test_optional_dependencies_and_overrides() -> None:
    @kernel.resource("mailer")
    async def mailer() -> str:
        return "smtp"

    @kernel.resource("fake-mailer")
    async def fake_mailer() -> str:
        return "memory"

    @kernel.task("notify", deps={"mailer": kernel.optional(mailer)})
    async def notify(*, mailer: str | None) -> str | None:
        return mailer

    async with run(kernel.App("app", register=[notify])) as rt:
        assert await rt.run_task(notify) is None
    overridden = kernel.App(
        "app", register=[notify, mailer], overrides=[kernel.override(mailer, fake_mailer)]
    )
    async with run(overridden) as rt:
        assert await rt.run_task(notify) == "memory"


async def test_find_and_resource_lookup_errors() -> None:
    public = kernel.tag("public")

    @kernel.task("a", tags=[public])
    async def a() -> None:
        return None

    @kernel.task("b")
    async def b() -> None:
        return None

    @kernel.resource("unregistered")
    async def unregistered() -> None:
        return None

    async with run(kernel.App("app", register=[a, b])) as rt:
        assert rt.find(public) == [(a, None)]
        assert rt.graph.root.id == "app"
        with pytest.raises(kernel.KernelError, match="'unregistered' is not registered"):
            rt.resource(unregistered)
        with pytest.raises(kernel.KernelError, match="task 'missing' is not registered"):
            await rt.run_task(kernel.task("missing")(b.fn))


async def test_parallel_init_starts_independent_resources_together(autojump_clock) -> None:
    def slow(id: str, seconds: float, deps: dict[str, Any] | None = None) -> kernel.Resource:
        @kernel.resource(id, deps=deps)
        async def res(**_: Any) -> Any:
            await trio.sleep(seconds)
            yield trio.current_time()

        return res

    a, b = slow("a", 2), slow("b", 3)
    c = slow("c", 1, {"a": a, "b": b})
    async with run(kernel.App("app", register=[a, b, c]), parallel_init=True) as rt:
        assert (rt.resource(a), rt.resource(b), rt.resource(c)) == (2, 3, 4)
    start = trio.current_time()
    async with run(kernel.App("app", register=[a, b, c])) as rt:
        # One after the other: a by 2, b by 2 + 3, c by 5 + 1.
        assert [rt.resource(r) - start for r in (a, b, c)] == [2, 5, 6]


async def test_parallel_init_failure_reports_the_first_and_disposes_the_rest() -> None:
    log: list[str] = []

    @kernel.resource("broken")
    async def broken() -> None:
        raise ValueError("bad")

    app = kernel.App("app", register=[lifecycle(log, "ok"), broken])
    with pytest.raises(kernel.ResourceInitError, match="'broken'"):
        async with run(app, parallel_init=True):
            pass  # pragma: no cover
    assert log == ["init ok", "dispose ok"]


async def test_generators_must_yield_exactly_once() -> None:
    @kernel.resource("empty")
    async def empty() -> Any:
        if False:
            yield None  # pragma: no cover

    with pytest.raises(kernel.ResourceInitError) as info:
        async with run(kernel.App("app", register=[empty])):
            pass  # pragma: no cover
    assert "ended without yielding" in str(info.value.__cause__)

    @kernel.resource("twice")
    async def twice() -> Any:
        yield 1
        yield 2

    with pytest.raises(ExceptionGroup, match="1 error"):
        async with run(kernel.App("app", register=[twice])):
            pass


async def test_dispose_early_then_exit_does_nothing_more() -> None:
    log: list[str] = []

    @kernel.task("t")
    async def t() -> int:
        return 1

    async with run(kernel.App("app", register=[lifecycle(log, "a"), t])) as rt:
        await rt.dispose()
        assert log == ["init a", "dispose a"]
        with pytest.raises(kernel.KernelError, match="the runtime is disposed"):
            await rt.run_task(t)
        await rt.dispose()
    assert log == ["init a", "dispose a"]


async def test_hook_depending_on_a_resource_not_up_yet() -> None:
    early = kernel.event("early")

    @kernel.resource("late")
    async def late() -> str:
        return "late"

    @kernel.hook("needs-late", on=early, deps={"late": late})
    async def needs_late(emission: Any, *, late: str) -> None:
        return None

    @kernel.resource("emitter", deps={"emit": early})
    async def emitter(emit: Any) -> None:
        await emit()

    app = kernel.App("app", register=[early, emitter, late, needs_late])
    with pytest.raises(kernel.ResourceInitError) as info:
        async with run(app):
            pass  # pragma: no cover
    assert "needs resource 'late', which is not started yet" in str(info.value.__cause__)


async def test_lookups_after_disposal_and_kind_mismatches() -> None:
    log: list[str] = []
    a = lifecycle(log, "a")
    async with run(kernel.App("app", register=[a])) as rt:
        await rt.dispose()
        with pytest.raises(kernel.KernelError, match="resource 'a' is not started"):
            rt.resource(a)
    async with run(kernel.App("app", register=[a])) as rt:

        async def nothing() -> None:
            return None

        impostor = kernel.task("a")(nothing)  # a task definition carrying a resource's id
        with pytest.raises(kernel.KernelError, match="'a' is a resource, not a task"):
            await rt.run_task(impostor)


async def test_several_parallel_failures_report_the_first_in_order() -> None:
    def broken(id: str) -> kernel.Resource:
        @kernel.resource(id)
        async def res() -> None:
            raise ValueError(id)

        return res

    app = kernel.App("app", register=[broken("x"), broken("y")])
    with pytest.raises(kernel.ResourceInitError, match="'x'"):
        async with run(app, parallel_init=True):
            pass  # pragma: no cover


async def test_a_failing_disposing_hook_is_reported_after_disposal() -> None:
    log: list[str] = []

    @kernel.hook("cleanup", on=kernel.events.disposing)
    async def cleanup(emission: Any) -> None:
        raise RuntimeError("hook broke")

    with pytest.raises(ExceptionGroup) as info:
        async with run(kernel.App("app", register=[lifecycle(log, "a"), cleanup])):
            pass
    assert log == ["init a", "dispose a"]
    [group] = info.value.exceptions
    assert isinstance(group, ExceptionGroup)
    assert str(group.exceptions[0]) == "hook broke"


async def test_input_without_result_and_result_without_input() -> None:
    @attrs.frozen
    class Point:
        x: int

    @kernel.task("echo", input=Point)
    async def echo(point: Point) -> int:
        return point.x

    @kernel.task("make", result=Point)
    async def make(x: int) -> dict[str, int]:
        return {"x": x}

    async with run(kernel.App("app", register=[echo, make])) as rt:
        assert await rt.run_task(echo, {"x": 3}) == 3
        assert await rt.run_task(make, 4) == Point(4)


async def test_bad_input_is_refused_before_the_middleware_and_logged_briefly() -> None:
    @attrs.frozen
    class Item:
        quantity: int = attrs.field(validator=attrs.validators.gt(0))

    attempts: list[int] = []

    async def count(call: mw.Call, next: mw.Next) -> Any:
        attempts.append(1)
        return await next(call)

    @kernel.task("buy", input=Item, middleware=[count, mw.retry(attempts=3)])
    async def buy(item: Item) -> int:
        return item.quantity

    records: list[Any] = []
    sink = logger.add(lambda m: records.append(m.record), level="WARNING")
    try:
        async with run(kernel.App("app", register=[buy])) as rt:
            with pytest.raises(kernel.ConfigError):
                await rt.run_task(buy, {"quantity": 0})
            assert await rt.run_task(buy, {"quantity": 2}) == 2
    finally:
        logger.remove(sink)
    assert attempts == [1]  # only the valid call entered the pipeline
    assert [(r["level"].name, r["exception"]) for r in records] == [("WARNING", None)]
    assert "task input rejected: task 'buy': input: 'quantity' must be > 0" in records[0]["message"]


async def test_a_resource_serving_tasks_reaches_the_runtime_through_its_scope() -> None:
    @kernel.task("double")
    async def double(x: int) -> int:
        return 2 * x

    @kernel.resource("server")
    async def server(scope: kernel.Scope) -> Any:
        yield scope.runtime

    async with run(kernel.App("app", register=[double, server])) as rt:
        assert rt.resource(server) is rt
        assert await rt.resource(server).run_task(double, 21) == 42


async def test_task_state_is_what_the_pipeline_exposes_the_very_objects_calls_use() -> None:
    @kernel.task(
        "guarded",
        middleware=[
            mw.circuit_breaker(failure_threshold=1),
            mw.retry(attempts=2, wait=rs.backoff.constant(0)),
        ],
    )
    async def guarded() -> None:
        raise ValueError("no")

    @kernel.task("plain")
    async def plain() -> int:
        return 1

    async with kernel.run(kernel.App("app", register=[guarded, plain])) as rt:
        state = rt.task_state(guarded)
        assert set(state) == {"breaker"}
        breaker = state["breaker"]
        assert isinstance(breaker, rs.CircuitBreaker)
        with pytest.raises(ValueError, match="no"):
            await rt.run_task(guarded)
        assert breaker.state is rs.CircuitState.OPEN
        assert rt.task_state(guarded)["breaker"] is breaker
        assert rt.task_state(plain) == {}
    with pytest.raises(kernel.KernelError, match="disposed"):
        rt.task_state(plain)
