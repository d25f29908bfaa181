"""kernel.run(app, log=..., tracing=...): logs and spans of a real app, end to end."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from loguru import logger
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import kernel
import middleware as mw
import resilience as rs


def build() -> tuple[kernel.App, kernel.Task, kernel.Task]:
    placed = kernel.event("orders.placed")

    @kernel.task(
        "orders.charge",
        deps={"log": kernel.logger},
        middleware=[mw.retry(attempts=2, wait=rs.backoff.constant(0))],
    )
    async def charge(amount: int, *, log: Any) -> str:
        log.bind(data={"amount": amount, "card_number": "4111 1111 1111 1111"}).info("charging")
        if amount < 0:
            raise ValueError("negative amount")
        return "charged"

    @kernel.task("orders.place", deps={"charge": charge, "placed": placed})
    async def place(amount: int, *, charge: Any, placed: Any) -> str:
        receipt = await charge(amount)
        await placed()
        return str(receipt)

    @kernel.hook("orders.notify", on=placed)
    async def notify(emission: kernel.Emission) -> None:
        return None

    return kernel.App("shop", register=[placed, charge, place, notify]), charge, place


async def test_json_logs_carry_source_data_error_and_redact() -> None:
    app, charge, _ = build()
    sink = io.StringIO()
    config = kernel.LogConfig(format="json", level="INFO", sink=sink, task_failures="ERROR")
    async with kernel.run(app, log=config) as rt:
        assert await rt.run_task(charge, 5) == "charged"
        with pytest.raises(ValueError, match="negative amount"):
            await rt.run_task(charge, -1)
    records = [json.loads(line) for line in sink.getvalue().splitlines()]
    charging = [r for r in records if r["message"] == "charging"]
    assert charging[0]["source"] == "orders.charge"
    assert charging[0]["data"] == {"amount": 5, "card_number": "[REDACTED]"}
    failed = [r for r in records if r["message"].startswith("task failed")]
    assert failed[0]["source"] == "orders.charge"
    assert failed[0]["level"] == "error"
    assert failed[0]["error"]["type"] == "ValueError"
    assert "4111" not in sink.getvalue()
    # The handler lives exactly as long as the runtime.
    logger.info("after the run")
    assert "after the run" not in sink.getvalue()


async def test_spans_nest_tasks_and_hooks_with_retry_events() -> None:
    app, _, place = build()
    exporter = InMemorySpanExporter()
    tracing = kernel.TracingConfig(service_name="shop", exporter=exporter)
    async with kernel.run(app, tracing=tracing) as rt:
        assert await rt.run_task(place, 3) == "charged"
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"task orders.place", "task orders.charge", "hook orders.notify"}
    root = spans["task orders.place"]
    assert root.parent is None
    assert spans["task orders.charge"].parent.span_id == root.context.span_id
    assert spans["hook orders.notify"].parent.span_id == root.context.span_id
    assert spans["task orders.charge"].attributes["runner.retry.attempts"] == 1
    assert root.attributes["runner.outcome"] == "success"
    assert root.resource.attributes["service.name"] == "shop"


async def test_metrics_count_task_calls_and_primitives_and_export_prometheus(
    autojump_clock,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    app, charge, place = build()
    registry = mw.MetricsRegistry()
    async with kernel.run(app, metrics=registry) as rt:
        assert rt.metrics is registry
        for amount in (1, 2, 3):
            await rt.run_task(place, amount)
        with pytest.raises(ValueError, match="negative"):
            await rt.run_task(charge, -1)
    snapshot = registry.snapshot()
    assert snapshot.tasks["orders.place"].calls == 3
    assert snapshot.tasks["orders.charge"].calls == 4  # three injected calls, one direct
    assert snapshot.tasks["orders.charge"].errors == 1
    assert snapshot.tasks["orders.charge"].in_flight == 0
    assert snapshot.tasks["orders.charge"].p50 == 0.0
    # The retry inside orders.charge retried the failing call once.
    assert snapshot.primitives["orders.charge"].retries == 1
    text = kernel.metrics.prometheus_text(registry)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    calls = {
        (s.labels["task"], s.labels["outcome"]): s.value
        for s in families["trio_runner_task_calls"].samples
        if s.name == "trio_runner_task_calls_total"
    }
    assert calls[("orders.place", "success")] == 3
    assert calls[("orders.charge", "error")] == 1


async def test_metrics_option_is_checked() -> None:
    app, _, _ = build()
    with pytest.raises(TypeError, match="metrics must be a bool or a MetricsRegistry"):
        async with kernel.run(app, metrics="yes"):  # type: ignore[arg-type]
            pass  # pragma: no cover


async def test_metrics_true_uses_the_process_wide_registry(clean_default) -> None:
    app, charge, _ = build()
    async with kernel.run(app, metrics=True) as rt:
        await rt.run_task(charge, 1)
    assert kernel.metrics.default_registry.snapshot().tasks["orders.charge"].calls == 1
    assert 'trio_runner_task_calls_total{outcome="success",task="orders.charge"} 1.0' in (
        kernel.metrics.prometheus_text()
    )
