"""`kernel.durable.metrics`: an engine's executions by status, backlog, oldest due age and
step durations, in the Prometheus text format (with a MockClock: exact times)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import kernel
from kernel import durable
from kernel.durable import DurableCollector, Engine, MemoryStore

waited: durable.Signal[object] = durable.signal("metrics.go")


def samples(collector: DurableCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of what a scrape would read."""
    text = generate_latest(collector).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def app_of(
    store: MemoryStore, *, worker: bool
) -> tuple[kernel.App, kernel.Resource, dict[str, Any]]:
    engine = durable.engine("durable", store=store, worker=worker)
    metrics = durable.metrics(engine, interval=10)

    async def half_a_second(n: int) -> int:
        await trio.sleep(0.5)
        return n

    @kernel.task("metrics.twice", deps={"durable": engine}, tags=[durable.workflow()])
    async def twice(n: int, *, durable: Engine) -> int:
        ctx = durable.context()
        return await ctx.step("a", half_a_second, n) + await ctx.step("b", half_a_second, n)

    @kernel.task("metrics.waits", deps={"durable": engine}, tags=[durable.workflow()])
    async def waits(_: None, *, durable: Engine) -> object:
        return await durable.context().wait_for_signal(waited)

    flows = {"twice": twice, "waits": waits, "engine": engine}
    return kernel.App("metrics", register=[engine, metrics, twice, waits]), metrics, flows


async def test_statuses_and_step_durations(autojump_clock: trio.abc.Clock) -> None:
    app, metrics, flows = app_of(MemoryStore(), worker=True)
    async with kernel.run(app) as rt:
        engine: Engine = rt.resource(flows["engine"])
        collector: DurableCollector = rt.resource(metrics)
        for n in range(2):
            await engine.start_and_wait(flows["twice"], n)
        await engine.start(flows["waits"])
        await engine.schedule(flows["twice"], 5, delay=100)
        await trio.sleep(10 - trio.current_time() + 1)  # the sample at t=10
        got = samples(collector)
    engine_label = (("engine", "durable"),)
    for status, count in {"completed": 2, "waiting": 1, "pending": 1, "failed": 0}.items():
        key = ("trio_runner_durable_executions", (("engine", "durable"), ("status", status)))
        assert got[key] == count
    assert got["trio_runner_durable_backlog", engine_label] == 0
    assert got["trio_runner_durable_oldest_due_age_seconds", engine_label] == 0
    assert got["trio_runner_durable_stats_age_seconds", engine_label] == 1.0
    labels = (("engine", "durable"), ("workflow", "metrics.twice"))
    assert got["trio_runner_durable_step_duration_seconds_count", labels] == 4
    assert got["trio_runner_durable_step_duration_seconds_sum", labels] == 2.0
    below, at = ((*labels, ("le", le)) for le in ("0.25", "0.5"))
    assert got["trio_runner_durable_step_duration_seconds_bucket", tuple(sorted(below))] == 0
    assert got["trio_runner_durable_step_duration_seconds_bucket", tuple(sorted(at))] == 4


async def test_backlog_and_the_age_of_the_oldest_due_execution(
    autojump_clock: trio.abc.Clock,
) -> None:
    # No worker: what is started waits, and its age grows.
    app, metrics, flows = app_of(MemoryStore(), worker=False)
    async with kernel.run(app) as rt:
        engine: Engine = rt.resource(flows["engine"])
        collector: DurableCollector = rt.resource(metrics)
        await engine.start(flows["twice"], 1)
        await trio.sleep(3)
        await engine.start(flows["twice"], 2)
        await trio.sleep(22)  # samples at 0, 10, 20; read at 25
        got = samples(collector)
    engine_label = (("engine", "durable"),)
    assert got["trio_runner_durable_backlog", engine_label] == 2
    assert got["trio_runner_durable_oldest_due_age_seconds", engine_label] == pytest.approx(25)
    assert got["trio_runner_durable_stats_age_seconds", engine_label] == pytest.approx(5)


@pytest.mark.parametrize(
    ("interval", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (float("inf"), ValueError),
        ("10", TypeError),
        (True, TypeError),
    ],
)
def test_a_bad_interval_names_it(interval: object, error: type[Exception]) -> None:
    engine = durable.engine("durable", store=MemoryStore())
    with pytest.raises(error, match="interval"):
        durable.metrics(engine, interval=interval)  # type: ignore[arg-type]


def test_the_engine_must_be_a_resource() -> None:
    with pytest.raises(TypeError, match="engine must be"):
        durable.metrics("durable")  # type: ignore[arg-type]


def two_engines() -> tuple[kernel.App, dict[str, Any]]:
    """Engines ``a`` and ``b`` (no workers: what starts stays pending), each with its
    metrics resource, and a one-step workflow on each."""
    register: list[Any] = []
    flows: dict[str, Any] = {}
    for name in ("a", "b"):
        engine = durable.engine(name, store=MemoryStore(), worker=False)

        @kernel.task(f"metrics.{name}.flow", deps={"durable": engine}, tags=[durable.workflow()])
        async def flow(n: int, *, durable: Engine) -> int:
            return n

        flows[name] = (engine, flow)
        register += [engine, durable.metrics(engine, interval=10), flow]
    return kernel.App("metrics.two", register=register), flows


async def test_prometheus_text_includes_every_running_engine_once_per_family(
    autojump_clock: trio.abc.Clock,
) -> None:
    app, flows = two_engines()
    async with kernel.run(app) as rt:
        for count, name in enumerate(("a", "b"), start=1):
            engine, flow = flows[name]
            for n in range(count):
                await rt.resource(engine).start(flow, n)
        await trio.sleep(11)  # the sample at t=10
        text = kernel.metrics.prometheus_text()
    after = kernel.metrics.prometheus_text()
    families = list(text_string_to_metric_families(text))
    durable_names = [f.name for f in families if f.name.startswith("trio_runner_durable_")]
    assert sorted(durable_names) == sorted(set(durable_names))  # one family per name
    assert text.count("# TYPE trio_runner_durable_backlog gauge") == 1
    got = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }
    assert got["trio_runner_durable_backlog", (("engine", "a"),)] == 1
    assert got["trio_runner_durable_backlog", (("engine", "b"),)] == 2
    pending = "trio_runner_durable_executions", (("engine", "b"), ("status", "pending"))
    assert got[pending] == 2
    assert "trio_runner_durable_" not in after  # gone when their resources stopped


async def test_an_exposure_serves_the_engine_metrics_at_slash_metrics() -> None:
    from kernel.exposure import http
    from tests.kernel.exposure.servers import AUTH, DEADLINE

    store = MemoryStore()
    first, _, flows = app_of(store, worker=False)
    with trio.fail_after(DEADLINE):
        async with kernel.run(first) as rt:  # one execution waiting in the store
            await rt.resource(flows["engine"]).start(flows["twice"], 1)
        second, _, _ = app_of(store, worker=False)
        exposure = http("exposure", auth=AUTH)
        app = kernel.App("served", register=[second, exposure])
        async with (
            kernel.run(app) as rt,
            httpx.AsyncClient(base_url=rt.resource(exposure).url) as client,
        ):
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert 'trio_runner_durable_executions{engine="durable",status="pending"} 1.0' in response.text
    assert 'trio_runner_durable_backlog{engine="durable"} 1.0' in response.text
