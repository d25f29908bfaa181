from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

import kernel
import middleware as mw
import resilience as rs
from kernel import Emission
from kernel._bus import EventBus, HookBinding
from kernel.observability import TracingConfig
from kernel.observability._tracing import Tracing, start_tracing
from middleware.observability import current_ids


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[Tracing]:
    tracing = start_tracing(TracingConfig(service_name="shop", exporter=exporter))
    yield tracing
    tracing.shutdown()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    finished = exporter.get_finished_spans()
    found = {span.name: span for span in finished}
    assert len(found) == len(finished), [span.name for span in finished]
    return found


def parent_of(span: ReadableSpan, spans: dict[str, ReadableSpan]) -> str | None:
    """The name of the span's parent among ``spans``; None for a root span."""
    if span.parent is None:
        return None
    assert span.context is not None
    (name,) = [
        name
        for name, candidate in spans.items()
        if candidate.context is not None
        and candidate.context.span_id == span.parent.span_id
        and candidate.context.trace_id == span.context.trace_id
    ]
    return name


# ---------------------------------------------------------------- the wiring, by hand


def shop_app(log: list[str]) -> tuple[kernel.App, kernel.Task, kernel.Task]:
    """An order task calling a price task, and spawning an audit task into a resource's
    scope.nursery; price retries once."""
    audited = trio.Event()

    @kernel.resource("background")
    async def background(scope: kernel.Scope) -> Any:
        yield scope.nursery

    failures = [ConnectionError("flaky")]

    @kernel.task(
        "price", middleware=[mw.retry(attempts=2, wait=rs.backoff.constant(1), name="price")]
    )
    async def price(item: str) -> int:
        if failures:
            raise failures.pop()
        log.append(f"priced {item} with {current_ids()[0]}")
        return 7

    @kernel.task("audit")
    async def audit(item: str) -> None:
        await trio.sleep(5)
        log.append(f"audited {item}")
        audited.set()

    @kernel.task("order", deps={"price": price, "audit": audit, "nursery": background})
    async def order(item: str, *, price: Any, audit: Any, nursery: trio.Nursery) -> int:
        log.append(f"order {item} with {current_ids()[0]}")
        nursery.start_soon(audit, item)
        return int(await price(item))

    @kernel.task("wait_for_audit")
    async def wait_for_audit() -> None:
        await audited.wait()

    app = kernel.App("shop", register=[background, price, audit, order, wait_for_audit])
    return app, order, wait_for_audit


async def test_a_kernel_app_traced_by_hand_gives_the_span_tree(
    tracing: Tracing, exporter: InMemorySpanExporter, autojump_clock: trio.abc.Clock
) -> None:
    # What kernel.run(app, tracing=...) wires: the task middleware in front of every
    # task's pipeline, and the resilience events on the current span.
    log: list[str] = []
    app, order, wait_for_audit = shop_app(log)
    with rs.observe(tracing.events_listener()):
        async with kernel.run(app, middleware=[tracing.middleware()]) as rt:
            assert await rt.run_task(order, "tea") == 7
            await rt.run_task(wait_for_audit)
    assert trio.current_time() == 5.0
    spans = by_name(exporter)
    assert sorted(spans) == ["task audit", "task order", "task price", "task wait_for_audit"]
    assert parent_of(spans["task order"], spans) is None
    assert parent_of(spans["task price"], spans) == "task order"
    # Spawned into the resource's nursery from inside the order span: trio copied the context.
    assert parent_of(spans["task audit"], spans) == "task order"
    assert parent_of(spans["task wait_for_audit"], spans) is None

    order_span, price_span = spans["task order"], spans["task price"]
    assert order_span.context is not None
    assert price_span.context is not None
    trace_id = f"{order_span.context.trace_id:032x}"
    assert log == [f"order tea with {trace_id}", f"priced tea with {trace_id}", "audited tea"]
    assert price_span.attributes == {
        "runner.task.id": "price",
        "runner.outcome": "success",
        "runner.retry.attempts": 2,
    }
    assert [event.name for event in price_span.events] == ["retry.attempt"]
    assert order_span.resource.attributes["service.name"] == "shop"
    assert order_span.instrumentation_scope is not None
    assert order_span.instrumentation_scope.name == "trio-runner"


async def test_hooks_traced_by_hand_are_children_of_the_emitting_span(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    # What Runtime does with a TracingConfig: every HookBinding.call wrapped by
    # tracing.hook(call, hook_id), both the lazy calls and those given to EventBus.rebind.
    placed = kernel.event("order.placed")
    ran: list[str] = []

    async def lazy(emission: Emission) -> None:
        ran.append(f"lazy {emission.event.id}")

    async def notify(emission: Emission) -> None:
        ran.append(f"notify {emission.payload}")

    async def refuse(emission: Emission) -> None:
        raise PermissionError("no stock")

    bindings = [
        HookBinding("notify", 0, 0, frozenset({"order.placed"}), tracing.hook(lazy, "notify")),
        HookBinding("refuse", 1, 1, None, tracing.hook(refuse, "refuse")),
    ]
    bus = EventBus([placed], bindings)
    bus.rebind({"notify": tracing.hook(notify, "notify")})

    with tracing.tracer.start_as_current_span("task order"):
        report = await bus.emit(placed, "tea", failure_mode="aggregate", report=True)
    assert report is not None
    assert [(hook_id, type(exc)) for hook_id, exc in report.failed] == [("refuse", PermissionError)]
    assert ran == ["notify tea"]
    spans = by_name(exporter)
    assert parent_of(spans["hook notify"], spans) == "task order"
    assert parent_of(spans["hook refuse"], spans) == "task order"
    assert spans["hook notify"].attributes == {
        "runner.hook.id": "notify",
        "runner.event.id": "order.placed",
        "runner.outcome": "success",
    }
    refused = spans["hook refuse"]
    assert refused.attributes is not None
    assert refused.attributes["runner.outcome"] == "error"
    assert refused.status.status_code is StatusCode.ERROR
    assert [event.name for event in refused.events] == ["exception"]
    # The aggregated failure was reported, not raised: the emitting span did not fail.
    assert spans["task order"].status.status_code is StatusCode.UNSET


async def test_a_cancelled_hook_span_ends_as_cancelled(
    tracing: Tracing, exporter: InMemorySpanExporter, autojump_clock: trio.abc.Clock
) -> None:
    tick = kernel.event("tick")

    async def wait(emission: Emission) -> None:
        await trio.sleep(10)

    bus = EventBus([tick], [HookBinding("wait", 0, 0, None, tracing.hook(wait, "wait"))])
    with trio.move_on_after(1):
        await bus.emit(tick)
    (span,) = exporter.get_finished_spans()
    assert span.name == "hook wait"
    assert span.attributes is not None
    assert span.attributes["runner.outcome"] == "cancelled"
    assert otel_trace.get_current_span() is otel_trace.INVALID_SPAN


# ---------------------------------------------------------------- start_tracing


def test_spans_are_exported_as_they_end_to_an_exporter_instance(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    assert tracing.exporter is exporter
    with tracing.tracer.start_as_current_span("work"):
        pass
    (span,) = exporter.get_finished_spans()  # no flush needed: a SimpleSpanProcessor
    assert span.resource.attributes["service.name"] == "shop"
    assert tracing.config.service_name == "shop"


def test_the_console_exporter_prints_json_spans(capsys: pytest.CaptureFixture[str]) -> None:
    tracing = start_tracing(TracingConfig(service_name="dev"))
    assert isinstance(tracing.exporter, ConsoleSpanExporter)
    with tracing.tracer.start_as_current_span("hello"):
        pass
    tracing.shutdown()
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "hello"
    assert printed["resource"]["attributes"]["service.name"] == "dev"


def test_a_batch_processor_exports_on_shutdown_and_shutdown_is_idempotent(
    exporter: InMemorySpanExporter,
) -> None:
    tracing = start_tracing(TracingConfig(service_name="s", exporter=exporter, processor="batch"))
    with tracing.tracer.start_as_current_span("queued"):
        pass
    tracing.shutdown()
    assert [span.name for span in exporter.get_finished_spans()] == ["queued"]
    tracing.shutdown()
    assert len(exporter.get_finished_spans()) == 1


def test_without_an_exporter_spans_carry_ids_and_go_nowhere() -> None:
    tracing = start_tracing(TracingConfig(service_name="s", exporter=None))
    assert tracing.exporter is None
    with tracing.tracer.start_as_current_span("local") as span:
        assert span.is_recording()
        assert current_ids()[1] == f"{span.get_span_context().span_id:016x}"
    tracing.shutdown()


def test_a_sampler_is_used(exporter: InMemorySpanExporter) -> None:
    tracing = start_tracing(TracingConfig(service_name="s", exporter=exporter, sampler=ALWAYS_OFF))
    with tracing.tracer.start_as_current_span("dropped") as span:
        assert not span.is_recording()
    tracing.shutdown()
    assert exporter.get_finished_spans() == ()


async def test_aclose_shuts_down_in_a_thread_even_when_cancelled(
    exporter: InMemorySpanExporter,
) -> None:
    tracing = start_tracing(TracingConfig(service_name="s", exporter=exporter, processor="batch"))
    with tracing.tracer.start_as_current_span("last"):
        pass
    with trio.CancelScope() as scope:
        scope.cancel()
        await tracing.aclose()
    assert [span.name for span in exporter.get_finished_spans()] == ["last"]
    await tracing.aclose()  # again: nothing to do


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_the_otlp_exporter_is_built_with_the_endpoint_without_connecting() -> None:
    endpoint = f"http://127.0.0.1:{unused_port()}/v1/traces"
    tracing = start_tracing(TracingConfig(service_name="s", exporter="otlp", endpoint=endpoint))
    assert isinstance(tracing.exporter, OTLPSpanExporter)
    tracing.shutdown()  # no span was made: nothing to send, returns at once


class Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.slow
async def test_otlp_spans_reach_a_collector_on_aclose() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        tracing = start_tracing(TracingConfig(service_name="s", exporter="otlp", endpoint=endpoint))

        @mw.apply(tracing.middleware())
        async def ship() -> None:
            await trio.lowlevel.checkpoint()

        await ship()
        with trio.fail_after(30):
            await tracing.aclose()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    ((path, body),) = Collector.received
    assert path == "/v1/traces"
    assert b"task " in body
    assert b"ship" in body


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"service_name": 1}, TypeError, "TracingConfig: service_name must be a str, got 1"),
        ({"service_name": ""}, ValueError, "TracingConfig: service_name must not be blank"),
        ({"exporter": "zipkin"}, ValueError, "TracingConfig: exporter must be 'console', 'otlp'"),
        ({"exporter": object()}, TypeError, "TracingConfig: exporter must be .*SpanExporter"),
        ({"exporter": "otlp", "endpoint": 4318}, TypeError, "TracingConfig: endpoint must be a"),
        (
            {"exporter": "otlp", "endpoint": "collector:4318"},
            ValueError,
            "TracingConfig: endpoint must be an http:// or https:// URL",
        ),
        (
            {"endpoint": "http://collector:4318/v1/traces"},
            ValueError,
            "TracingConfig: endpoint applies only to exporter='otlp', got exporter='console'",
        ),
        ({"processor": "async"}, ValueError, "TracingConfig: processor must be 'simple'"),
        ({"sampler": 0.5}, TypeError, "TracingConfig: sampler must be an opentelemetry"),
    ],
)
def test_bad_configuration_is_refused_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        TracingConfig(**{"service_name": "s", **kwargs})


def test_the_configuration_is_keyword_only_and_frozen() -> None:
    config = TracingConfig(
        service_name="s", exporter="otlp", endpoint="https://collector/v1/traces"
    )
    with pytest.raises(TypeError):
        TracingConfig("s")  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        config.service_name = "t"  # type: ignore[misc]
    assert (config.processor, config.sampler) == (None, None)


def test_start_tracing_wants_a_config() -> None:
    with pytest.raises(TypeError, match="start_tracing: config must be a TracingConfig"):
        start_tracing({"service_name": "s"})  # type: ignore[arg-type]


# ---------------------------------------------------------------- OpenTelemetry is optional


def test_without_the_sdk_start_tracing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    config = TracingConfig(service_name="s")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ImportError, match=r"OpenTelemetry SDK: install the `otel` extra"):
        start_tracing(config)


def test_without_the_otlp_exporter_start_tracing_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = TracingConfig(service_name="s", exporter="otlp")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ImportError, match=r"exporter-otlp-proto-http: .*trio-runner\[otel\]"):
        start_tracing(config)


def test_without_the_sdk_an_exporter_object_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace.export", None)
    with pytest.raises(TypeError, match="TracingConfig: exporter must be"):
        TracingConfig(service_name="s", exporter=object())  # type: ignore[arg-type]


@pytest.mark.slow
def test_importing_the_packages_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, kernel, middleware, kernel.observability._tracing, "
        "middleware.observability._trace\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "[]\n")
