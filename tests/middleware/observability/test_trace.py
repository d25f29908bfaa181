from __future__ import annotations

import sys
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once

import middleware as mw
import resilience as rs
from middleware.observability import current_ids, run_in_span, trace, trace_events
from middleware.observability._trace import _span_attributes


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def tracer(provider: TracerProvider) -> otel_trace.Tracer:
    return provider.get_tracer("tests")


@pytest.fixture
def span_events() -> Iterator[None]:
    with rs.observe(trace_events()):
        yield


@pytest.fixture
def unset_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenTelemetry's global provider as in a fresh process (restored after the test)."""
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)


def spans(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    """The finished spans by name (each name once)."""
    finished = exporter.get_finished_spans()
    by_name = {span.name: span for span in finished}
    assert len(by_name) == len(finished), [span.name for span in finished]
    return by_name


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None, child.name
    assert parent.context is not None
    return bool(
        child.parent.span_id == parent.context.span_id
        and child.parent.trace_id == parent.context.trace_id
    )


async def test_a_call_runs_in_a_span_named_after_the_function(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    seen: list[otel_trace.Span] = []

    @mw.apply(trace(tracer))
    async def fetch(x: int, *, y: int) -> int:
        seen.append(otel_trace.get_current_span())
        return x + y

    assert await fetch(1, y=2) == 3
    (span,) = exporter.get_finished_spans()
    assert span.name == f"call {fetch.target_id}"  # type: ignore[attr-defined]
    assert fetch.target_id.endswith(".fetch")  # type: ignore[attr-defined]
    assert span.attributes == {
        "runner.task.id": fetch.target_id,  # type: ignore[attr-defined]
        "runner.outcome": "success",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is None
    assert span.end_time is not None
    assert seen[0].get_span_context() == span.context
    assert otel_trace.get_current_span() is otel_trace.INVALID_SPAN


async def test_prefix_and_target_id_name_the_span(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    async def body() -> str:
        return "ok"

    wrapped = mw.Pipeline([trace(tracer, prefix="task")]).wrap(body, target_id="orders.place")
    assert await wrapped() == "ok"
    (span,) = exporter.get_finished_spans()
    assert span.name == "task orders.place"
    assert span.attributes is not None
    assert span.attributes["runner.task.id"] == "orders.place"


async def test_an_error_sets_status_error_records_it_and_propagates_unchanged(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    error = ConnectionError("upstream down")

    @mw.apply(trace(tracer))
    async def fetch() -> None:
        raise error

    with pytest.raises(ConnectionError) as info:
        await fetch()
    assert info.value is error
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["runner.outcome"] == "error"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ConnectionError: upstream down"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ConnectionError"
    assert event.attributes["exception.message"] == "upstream down"


async def test_cancellation_ends_the_span_as_cancelled_and_restores_the_context(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter, autojump_clock: trio.abc.Clock
) -> None:
    @mw.apply(trace(tracer))
    async def slow() -> None:
        await trio.sleep(10)

    with tracer.start_as_current_span("outer") as outer:
        with trio.move_on_after(3) as scope:
            await slow()
        assert scope.cancelled_caught
        assert otel_trace.get_current_span() is outer
    assert trio.current_time() == 3.0
    found = spans(exporter)
    span = found[f"call {slow.target_id}"]  # type: ignore[attr-defined]
    assert span.end_time is not None
    assert span.attributes is not None
    assert span.attributes["runner.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
    assert is_child(span, found["outer"])
    assert otel_trace.get_current_span() is otel_trace.INVALID_SPAN


class Halt(BaseException):
    """A BaseException that is not an Exception (like KeyboardInterrupt)."""


async def test_any_base_exception_counts_as_cancelled_not_as_an_error(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    @mw.apply(trace(tracer))
    async def stop() -> None:
        raise Halt

    with pytest.raises(Halt):
        await stop()
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["runner.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()


async def test_a_traced_function_calling_another_makes_a_child_span(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    @mw.apply(trace(tracer))
    async def price(item: str) -> int:
        return len(item)

    @mw.apply(trace(tracer))
    async def order(items: list[str]) -> int:
        return sum([await price(item) for item in items])

    assert await order(["ab", "cde"]) == 5
    finished = exporter.get_finished_spans()
    assert [span.name.rsplit(".", 1)[-1] for span in finished] == ["price", "price", "order"]
    outer = finished[-1]
    assert outer.parent is None
    assert all(is_child(span, outer) for span in finished[:2])
    assert finished[0].context is not None
    assert finished[1].context is not None
    assert finished[0].context.span_id != finished[1].context.span_id


async def test_a_task_spawned_inside_a_span_gets_a_child_span(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    @mw.apply(trace(tracer, prefix="job"))
    async def child(n: int) -> None:
        await trio.lowlevel.checkpoint()

    @mw.apply(trace(tracer, prefix="job"))
    async def parent() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child, 1)

    await parent()
    found = {span.name.split(".")[-1]: span for span in exporter.get_finished_spans()}
    assert is_child(found["child"], found["parent"])


async def test_work_spawned_into_an_outside_nursery_inherits_the_span(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    # Like a resource's scope.nursery: opened before the span, the work outlives the span.
    done = trio.Event()

    @mw.apply(trace(tracer, prefix="job"))
    async def poll() -> None:
        await trio.lowlevel.checkpoint()
        done.set()

    async with trio.open_nursery() as nursery:

        @mw.apply(trace(tracer, prefix="job"))
        async def handle() -> None:
            nursery.start_soon(poll)

        await handle()
        await done.wait()
    found = {span.name.split(".")[-1]: span for span in exporter.get_finished_spans()}
    assert is_child(found["poll"], found["handle"])
    assert found["handle"].end_time is not None
    assert found["poll"].start_time is not None
    assert found["handle"].end_time <= found["poll"].start_time


async def test_retry_inside_trace_adds_attempt_events_and_the_attempt_count(
    tracer: otel_trace.Tracer,
    exporter: InMemorySpanExporter,
    span_events: None,
    autojump_clock: trio.abc.Clock,
) -> None:
    failures = [ConnectionError("first"), ConnectionError("second")]

    @mw.apply(trace(tracer), mw.retry(attempts=3, wait=rs.backoff.constant(1.5), name="up"))
    async def fetch() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert await fetch() == "ok"
    assert trio.current_time() == 3.0
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["runner.retry.attempts"] == 3
    assert span.attributes["runner.outcome"] == "success"
    assert [event.name for event in span.events] == ["retry.attempt", "retry.attempt"]
    assert [dict(event.attributes or {}) for event in span.events] == [
        {
            "source": "up",
            "attempt": number,
            "delay": 1.5,
            "error.type": "ConnectionError",
            "error.message": message,
        }
        for number, message in [(1, "first"), (2, "second")]
    ]


async def test_a_retry_that_gives_up_is_an_error_with_the_attempts(
    tracer: otel_trace.Tracer,
    exporter: InMemorySpanExporter,
    span_events: None,
    autojump_clock: trio.abc.Clock,
) -> None:
    @mw.apply(trace(tracer), mw.retry(attempts=2, wait=rs.backoff.constant(1)))
    async def fetch() -> None:
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        await fetch()
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["runner.retry.attempts"] == 2
    assert span.attributes["runner.outcome"] == "error"
    assert [event.name for event in span.events] == ["retry.attempt", "retry.gave_up", "exception"]


async def test_a_cache_hit_is_an_attribute_and_an_event(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter, span_events: None
) -> None:
    computed: list[int] = []

    @mw.apply(trace(tracer), mw.cache(ttl=60))
    async def square(n: int) -> int:
        computed.append(n)
        return n * n

    assert await square(3) == 9
    assert await square(3) == 9
    assert computed == [3]
    miss, hit = exporter.get_finished_spans()
    assert miss.attributes is not None
    assert hit.attributes is not None
    assert miss.attributes["runner.cache.hit"] is False
    assert hit.attributes["runner.cache.hit"] is True
    assert [event.name for event in miss.events] == ["cache.miss"]
    assert [event.name for event in hit.events] == ["cache.hit"]
    assert hit.events[0].attributes is not None
    assert isinstance(hit.events[0].attributes["key"], str)  # a tuple key, as its repr
    assert "runner.retry.attempts" not in hit.attributes


async def test_a_circuit_state_change_is_an_event_of_the_span_that_caused_it(
    tracer: otel_trace.Tracer, exporter: InMemorySpanExporter, span_events: None
) -> None:
    @mw.apply(trace(tracer), mw.circuit_breaker(failure_threshold=1, reset_timeout=60))
    async def fetch() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await fetch()
    with pytest.raises(rs.CircuitOpen):
        await fetch()
    opened, rejected = exporter.get_finished_spans()
    assert next((e.name, dict(e.attributes or {})) for e in opened.events) == (
        "circuit.state_changed",
        {"source": fetch.breaker.name, "old": "closed", "new": "open"},  # type: ignore[attr-defined]
    )
    assert [e.name for e in rejected.events] == ["circuit.rejected", "exception"]


def test_event_data_is_made_safe_for_opentelemetry() -> None:
    event = rs.Event(
        "cache.refresh_failed",
        None,
        MappingProxyType(
            {
                "key": ("fetch", (1, 2)),
                "error": ValueError("bad"),
                "retry_after": None,
                "flag": True,
                "count": 3,
                "ratio": 0.5,
                "state": "open",
            }
        ),
    )
    assert _span_attributes(event) == {
        "key": "('fetch', (1, 2))",
        "error.type": "ValueError",
        "error.message": "bad",
        "flag": True,
        "count": 3,
        "ratio": 0.5,
        "state": "open",
    }


def test_events_outside_a_recording_span_are_ignored(span_events: None) -> None:
    listener = trace_events()
    listener(rs.Event("retry.attempt", "x", MappingProxyType({"attempt": 1})))
    assert otel_trace.get_current_span() is otel_trace.INVALID_SPAN


async def test_a_sampled_out_call_runs_without_recording(exporter: InMemorySpanExporter) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @mw.apply(
        trace(provider.get_tracer("tests")), mw.retry(attempts=2, wait=rs.backoff.constant(0))
    )
    async def flaky(fail: bool) -> str:
        assert not otel_trace.get_current_span().is_recording()
        if fail:
            raise ValueError("no")
        return "ok"

    with rs.observe(trace_events()):
        assert await flaky(False) == "ok"
        with pytest.raises(ValueError, match="no"):
            await flaky(True)
    with pytest.raises(Halt):
        await run_in_span(provider.get_tracer("tests"), "halt", {}, _halt, None)
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


async def _halt(_: None) -> None:
    raise Halt


async def test_without_a_tracer_it_is_a_no_op_until_a_global_provider_is_set(
    unset_global_provider: None, exporter: InMemorySpanExporter
) -> None:
    @mw.apply(trace())
    async def fetch(fail: bool = False) -> tuple[str | None, str | None]:
        if fail:
            raise KeyError("k")
        return current_ids()

    assert await fetch() == (None, None)
    with pytest.raises(KeyError):
        await fetch(fail=True)

    # The application configures OpenTelemetry later: the same wrapped function records.
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_trace.set_tracer_provider(provider)
    trace_id, span_id = await fetch()
    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert (trace_id, span_id) == (
        f"{span.context.trace_id:032x}",
        f"{span.context.span_id:016x}",
    )
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "trio-runner"
    provider.shutdown()


def test_current_ids_are_none_outside_a_span_or_without_opentelemetry(
    monkeypatch: pytest.MonkeyPatch, tracer: otel_trace.Tracer
) -> None:
    assert current_ids() == (None, None)
    with tracer.start_as_current_span("s") as span:
        trace_id, span_id = current_ids()
        assert trace_id is not None
        assert len(trace_id) == 32
        assert span_id is not None
        assert len(span_id) == 16
        assert int(span_id, 16) == span.get_span_context().span_id
        monkeypatch.delitem(sys.modules, "opentelemetry.trace")
        assert current_ids() == (None, None)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"tracer": "tracer"}, TypeError, "mw.trace: tracer must be an opentelemetry"),
        ({"prefix": 3}, TypeError, "mw.trace: prefix must be a str, got 3"),
        ({"prefix": " "}, ValueError, "mw.trace: prefix must not be blank"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        trace(**kwargs)


def test_a_trace_is_a_middleware_factory_without_exposed_state(tracer: otel_trace.Tracer) -> None:
    factory = trace(tracer)
    assert isinstance(factory, mw.Factory)
    assert factory.bind("x").exposes == {}


def test_without_opentelemetry_an_import_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    with pytest.raises(
        ImportError, match=r"mw.trace needs OpenTelemetry: install the `otel` extra"
    ):
        trace()
    with pytest.raises(
        ImportError, match=r"trace_events needs OpenTelemetry: .*trio-runner\[otel\]"
    ):
        trace_events()
