"""kernel.run(app, sentry=...): the real sentry-sdk sending to a receiver on 127.0.0.1.

Every test runs the runtime with a `kernel.SentryConfig` whose DSN points at the receiver the
test started; leaving ``kernel.run`` flushes the client, so what was sent has arrived when
the block ends. Events are read from the envelopes the receiver parsed.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
import sentry_sdk
import trio
from loguru import logger
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import kernel
import middleware as mw
import resilience as rs
from kernel import durable
from kernel.exposure import BearerAuth
from tests.kernel.observability.sentry_receiver import Receiver, parse_envelope, receiving

# Secrets made at run time: no source line that a stack frame could show holds them.
CARD = " ".join(["4111", "1111", "1111", "1111"])  # Luhn-valid
PASSWORD = "-".join(["hunter2", "pw"])
URL_PASSWORD = "-".join(["url", "s3cret"])
TOKEN = "-".join(["tok", "live", "0123"])
SECRETS = (CARD, CARD.replace(" ", ""), PASSWORD, URL_PASSWORD, TOKEN)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as started:
        yield started


def tracking(receiver: Receiver, **options: Any) -> kernel.SentryConfig:
    return kernel.SentryConfig(dsn=receiver.dsn, environment="test", release="shop@1.0", **options)


def only_event(receiver: Receiver) -> dict[str, Any]:
    events = receiver.events()
    assert len(events) == 1, [event["exception"]["values"][-1]["value"] for event in events]
    return events[0]


def exception_of(event: dict[str, Any]) -> dict[str, Any]:
    """The exception that was raised last (Sentry lists a chain oldest first)."""
    value: dict[str, Any] = event["exception"]["values"][-1]
    return value


def test_the_envelope_parser_follows_the_format() -> None:
    body = (
        b'{"event_id":"e1"}\n'
        b'{"type":"attachment","length":8}\nline\ntwo\n'  # a payload holding a newline
        b'{"type":"event"}\n{"no":"length"}\n'  # no length: up to the next newline
        b'{"type":"client_report"}\n{}'  # the last item may end the body
    )
    envelope = parse_envelope(body)
    assert envelope.headers == {"event_id": "e1"}
    assert [(item.headers["type"], item.payload) for item in envelope.items] == [
        ("attachment", b"line\ntwo"),
        ("event", b'{"no":"length"}'),
        ("client_report", b"{}"),
    ]
    with pytest.raises(ValueError, match="truncated"):
        parse_envelope(b'{}\n{"type":"event","length":10}\nshort')
    with pytest.raises(ValueError, match="not followed by a newline"):
        parse_envelope(b'{}\n{"type":"event","length":2}\n{}x')
    with pytest.raises(ValueError, match="bad item header"):
        parse_envelope(b'{}\n{"length":2}\n{}')


# --- what is sent ------------------------------------------------------------------------


@kernel.task("shop.account")
async def account() -> dict[str, str]:
    return {"card_number": CARD, "api_token": TOKEN}


@kernel.task("shop.charge", deps={"log": kernel.logger, "account": account})
async def charge(payment: dict[str, str], *, log: Any, account: Any) -> str:
    card, password = payment["card"], payment["password"]
    dsn = f"postgresql://shop:{URL_PASSWORD}@db/shop"
    header = f"Authorization: Bearer {TOKEN}"
    holder = await account()  # a result holding secrets
    log.info("charging {}", card, data={"payment": payment, "dsn": dsn})
    logger.info(f"own record: password={password} via {dsn} ({header})")  # not the kernel's
    raise RuntimeError(f"declined card {card} (password={password}) via {dsn}, {header}: {holder}")


async def test_a_task_failure_arrives_once_with_tags_and_no_secret(receiver: Receiver) -> None:
    app = kernel.App("shop", register=[account, charge])
    async with kernel.run(app, sentry=tracking(receiver)) as rt:
        with pytest.raises(RuntimeError, match="declined"):
            await rt.run_task(charge, {"card": CARD, "password": PASSWORD})
    event = only_event(receiver)
    raw = receiver.raw()
    for secret in SECRETS:
        assert secret.encode() not in raw, secret
    assert event["tags"] == {"runner.task.id": "shop.charge", "runner.kind": "task"}
    assert event["contexts"]["trio_runner"] == {"path": ["task shop.charge"]}
    assert (event["environment"], event["release"], event["level"]) == ("test", "shop@1.0", "error")
    error = exception_of(event)
    assert error["type"] == "RuntimeError"
    assert error["value"].startswith("declined card [REDACTED] (password=[REDACTED]) via ")
    assert error["mechanism"] == {"type": "trio_runner", "handled": False}
    frames = error["stacktrace"]["frames"]
    assert frames[-1]["function"] == "charge"
    assert frames[-1]["in_app"] is True
    assert all("vars" not in frame for frame in frames)  # no local variables
    assert any(frame["module"] == "kernel.observability._failures" for frame in frames)
    assert not any(frame["in_app"] for frame in frames if frame["module"].startswith("kernel."))
    crumbs = [crumb["message"] for crumb in event["breadcrumbs"]["values"]]
    assert "charging [REDACTED]" in crumbs
    assert any(crumb.startswith("own record: password=[REDACTED] via ") for crumb in crumbs)
    assert "integrations" in event["sdk"]
    assert event["sdk"]["integrations"] == []


async def test_the_dsn_is_never_in_a_repr_an_error_or_a_log(receiver: Receiver) -> None:
    config = tracking(receiver)
    assert receiver.dsn not in repr(config)
    assert "testpublickey" not in repr(config) + str(
        kernel.Service(app=kernel.App("a", register=[]), sentry=config)
    )
    with pytest.raises(ValueError, match="project id") as bad:
        kernel.SentryConfig(dsn="https://secretkey@o0.ingest.sentry.io/not-a-project")
    assert "secretkey" not in str(bad.value)
    sink = io.StringIO()
    log = kernel.LogConfig(format="json", level="DEBUG", sink=sink)
    async with kernel.run(
        kernel.App("shop", register=[charge, account]), log=log, sentry=config
    ) as rt:
        with pytest.raises(RuntimeError):
            await rt.run_task(charge, {"card": CARD, "password": PASSWORD})
    assert "testpublickey" not in sink.getvalue()
    assert len(receiver.events()) == 1


# --- once each ---------------------------------------------------------------------------


async def test_a_retried_failure_and_a_nested_one_are_one_event_each(receiver: Receiver) -> None:
    attempts = 0

    @kernel.task("inventory.reserve")
    async def reserve(sku: str) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError(f"inventory down (attempt {attempts})")

    @kernel.task(
        "shop.checkout",
        deps={"reserve": reserve},
        middleware=[mw.retry(attempts=3, wait=rs.backoff.constant(0))],
    )
    async def checkout(sku: str, *, reserve: Any) -> None:
        await reserve(sku)

    @kernel.task("shop.quote", middleware=[mw.retry(attempts=3, wait=rs.backoff.constant(0))])
    async def quote() -> None:
        nonlocal attempts
        attempts += 1
        raise ArithmeticError(f"no price (attempt {attempts})")

    app = kernel.App("shop", register=[reserve, checkout, quote])
    async with kernel.run(app, sentry=tracking(receiver)) as rt:
        with pytest.raises(ArithmeticError):
            await rt.run_task(quote)
        assert attempts == 3
        attempts = 0
        with pytest.raises(ConnectionError):
            await rt.run_task(checkout, "tea")
    assert attempts == 3
    quoted, event = receiver.events()  # sent in order, by sentry-sdk's one thread
    assert exception_of(quoted)["value"] == "no price (attempt 3)"
    assert quoted["tags"] == {"runner.task.id": "shop.quote", "runner.kind": "task"}
    # The last attempt's failure, reported by the caller's boundary, named by the task it
    # was raised in.
    assert exception_of(event)["value"] == "inventory down (attempt 3)"
    assert event["tags"] == {"runner.task.id": "inventory.reserve", "runner.kind": "task"}
    assert event["contexts"]["trio_runner"]["path"] == [
        "task inventory.reserve",
        "task shop.checkout",
    ]


class OutOfStock(kernel.PublicError):
    http_status = 409
    code = "out_of_stock"


async def test_expected_failures_send_nothing(receiver: Receiver) -> None:
    @kernel.task("shop.public")
    async def public() -> None:
        raise OutOfStock("no more tea")

    @kernel.task("shop.slow")
    async def slow() -> None:
        await trio.sleep_forever()

    breaker = rs.CircuitBreaker(failure_threshold=1)
    breaker.isolate()

    @kernel.task("shop.guarded", middleware=[mw.circuit_breaker(breaker)])
    async def guarded() -> None:
        raise AssertionError("never runs: the circuit is open")

    @attrs.frozen
    class Quantity:
        value: int

    @kernel.task("shop.typed", input=Quantity)
    async def typed(quantity: Quantity) -> int:
        return quantity.value

    @kernel.task("shop.refused")
    async def refused() -> None:  # as a call made inside, refused by a shutdown, would
        raise kernel.ShuttingDown("the runtime is shutting down")

    @kernel.task("shop.broken")
    async def broken() -> None:
        raise KeyError("the one unexpected failure")

    app = kernel.App("shop", register=[public, slow, guarded, typed, refused, broken])
    async with kernel.run(app, sentry=tracking(receiver)) as rt:
        with pytest.raises(OutOfStock):
            await rt.run_task(public)
        with trio.move_on_after(0.01):
            await rt.run_task(slow)
        with pytest.raises(rs.CircuitOpen):
            await rt.run_task(guarded)
        with pytest.raises(kernel.ConfigError):
            await rt.run_task(typed, {"value": "ten"})
        with pytest.raises(kernel.ShuttingDown):
            await rt.run_task(refused)
        with pytest.raises(KeyError):
            await rt.run_task(broken)
    # One event: the KeyError. (Sent last: the receiver works, the others were not sent.)
    event = only_event(receiver)
    assert exception_of(event)["type"] == "KeyError"


async def test_a_handled_nested_failure_sends_nothing_and_ignore_extends_the_list(
    receiver: Receiver,
) -> None:
    class Declined(Exception):
        pass

    @kernel.task("pay.card")
    async def card() -> None:
        raise ConnectionError("card provider down")

    @kernel.task("pay.any", deps={"card": card})
    async def pay(*, card: Any) -> str:
        try:
            await card()
        except ConnectionError:
            return "paid by invoice"
        return "paid by card"

    @kernel.task("pay.declined")
    async def declined() -> None:
        raise Declined("declined")

    app = kernel.App("pay", register=[card, pay, declined])
    async with kernel.run(app, sentry=tracking(receiver, ignore=Declined)) as rt:
        assert await rt.run_task(pay) == "paid by invoice"
        with pytest.raises(Declined):
            await rt.run_task(declined)
    assert receiver.events() == []


async def test_the_same_exception_raised_again_is_sent_once(receiver: Receiver) -> None:
    stored = LookupError("cached failure")

    @kernel.task("cache.get")
    async def get() -> None:
        raise stored

    app = kernel.App("cache", register=[get])
    async with kernel.run(app, sentry=tracking(receiver)) as rt:
        for _ in range(3):
            with pytest.raises(LookupError):
                await rt.run_task(get)
    assert exception_of(only_event(receiver))["value"] == "cached failure"


async def test_failures_of_children_in_a_task_nursery_are_one_event(receiver: Receiver) -> None:
    @kernel.task("part")
    async def part(n: int) -> None:
        raise ValueError(f"part {n} failed")

    @kernel.task("whole", deps={"part": part})
    async def whole(*, part: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(part, 1)
            nursery.start_soon(part, 2)

    app = kernel.App("app", register=[part, whole])
    async with kernel.run(app, sentry=tracking(receiver)) as rt:
        with pytest.RaisesGroup(ValueError, ValueError):
            await rt.run_task(whole)
    event = only_event(receiver)
    assert event["tags"]["runner.task.id"] == "part"  # where the first one was raised
    assert event["contexts"]["trio_runner"]["path"] == ["task part", "task whole"]
    values = [value["value"] for value in event["exception"]["values"]]
    assert "part 1 failed" in values
    assert "part 2 failed" in values


async def test_work_started_in_a_resource_nursery_reports_its_own_failure(
    receiver: Receiver,
) -> None:
    """A job a task starts in a resource's nursery is not inside the task: its failure is
    reported by its own boundary, even while the task that started it still runs."""

    @kernel.task("jobs.fail")
    async def fail() -> None:
        raise OSError("the job failed")

    @kernel.resource("jobs", deps={"fail": fail})
    async def jobs(*, fail: Any, scope: kernel.Scope) -> Any:
        class Jobs:
            done = trio.Event()

            def spawn(self) -> None:
                scope.nursery.start_soon(self.run)

            async def run(self) -> None:
                with contextlib.suppress(OSError):  # the job handles it: not the caller's
                    await fail()
                self.done.set()

        yield Jobs()

    @kernel.task("jobs.start", deps={"jobs": jobs})
    async def start(*, jobs: Any) -> str:
        jobs.spawn()
        await jobs.done.wait()  # still running while the job fails
        return "started"

    app = kernel.App("app", register=[fail, jobs, start])
    async with kernel.run(app, sentry=tracking(receiver)) as rt:
        assert await rt.run_task(start) == "started"
    event = only_event(receiver)
    assert event["contexts"]["trio_runner"]["path"] == ["task jobs.fail"]


# --- hooks and resources -----------------------------------------------------------------


async def test_hook_and_resource_failures_carry_their_ids(receiver: Receiver) -> None:
    placed = kernel.event("orders.placed")

    @kernel.hook("orders.notify", on=placed)
    async def notify(emission: kernel.Emission) -> None:
        raise TimeoutError("mail server timeout")

    @kernel.resource("mailer")
    async def mailer() -> Any:
        yield "mailer"
        raise OSError("mailer did not close")

    @kernel.resource("broken")
    async def broken() -> str:
        raise PermissionError("no access to the queue")

    app = kernel.App("orders", register=[placed, notify, mailer])
    with pytest.RaisesGroup(OSError):
        async with kernel.run(app, sentry=tracking(receiver)) as rt:
            with pytest.raises(TimeoutError):
                await rt.emit(placed)
    with pytest.raises(kernel.ResourceInitError):
        async with kernel.run(kernel.App("q", register=[broken]), sentry=tracking(receiver)):
            pass  # pragma: no cover
    hook, dispose, init = receiver.events()
    assert hook["tags"] == {
        "runner.hook.id": "orders.notify",
        "runner.event.id": "orders.placed",
        "runner.kind": "hook",
    }
    assert exception_of(hook)["type"] == "TimeoutError"
    assert dispose["tags"] == {"runner.resource.id": "mailer", "runner.kind": "resource.dispose"}
    assert exception_of(dispose)["value"] == "mailer did not close"
    assert init["tags"] == {"runner.resource.id": "broken", "runner.kind": "resource.init"}
    assert exception_of(init)["type"] == "PermissionError"


async def test_a_crash_of_background_work_is_reported_for_its_resource(
    receiver: Receiver,
) -> None:
    @kernel.resource("poller")
    async def poller(*, scope: kernel.Scope) -> Any:
        async def poll() -> None:
            raise BrokenPipeError("poller lost its connection")

        scope.nursery.start_soon(poll)
        yield "poller"

    app = kernel.App("app", register=[poller])
    with pytest.RaisesGroup(BrokenPipeError, flatten_subgroups=True):
        async with kernel.run(app, sentry=tracking(receiver)):
            await trio.sleep_forever()
    event = only_event(receiver)
    assert event["tags"] == {"runner.resource.id": "poller", "runner.kind": "resource.background"}


# --- durable executions ------------------------------------------------------------------


async def test_a_durable_execution_is_reported_once_when_it_fails_for_good(
    receiver: Receiver, autojump_clock: trio.testing.MockClock
) -> None:
    engine = durable.engine("durable", store=durable.MemoryStore(), max_attempts=3)
    runs = {"flaky": 0, "doomed": 0}

    @kernel.task("billing.invoice")
    async def invoice(order: str) -> None:
        raise ConnectionError(f"ledger down for {order}")

    @kernel.task(
        "billing.doomed", deps={"durable": engine, "invoice": invoice}, tags=[durable.workflow()]
    )
    async def doomed(order: str, *, durable: Any, invoice: Any) -> None:
        runs["doomed"] += 1
        await invoice(order)

    @kernel.task("billing.flaky", deps={"durable": engine}, tags=[durable.workflow()])
    async def flaky(order: str, *, durable: Any) -> str:
        runs["flaky"] += 1
        if runs["flaky"] == 1:
            raise ConnectionError("one blip")
        return "billed"

    app = kernel.App("billing", register=[engine, invoice, doomed, flaky])
    async with kernel.run(app, sentry=tracking(receiver)) as rt:
        value = rt.resource(engine)
        failed = await value.start(doomed, "o-1")
        recovered = await value.start(flaky, "o-2")
        with pytest.raises(durable.WorkflowFailedError):
            await value.wait(failed)
        assert await value.wait(recovered) == "billed"
    assert runs == {"flaky": 2, "doomed": 3}
    event = only_event(receiver)
    assert event["tags"] == {
        "runner.task.id": "billing.invoice",
        "runner.execution.id": failed,
        "runner.workflow.id": "billing.doomed",
        "runner.kind": "execution",
    }
    assert event["contexts"]["trio_runner"]["path"] == [
        "task billing.invoice",
        "task billing.doomed",
        f"execution {failed} of billing.doomed",
    ]
    crumbs = [crumb["message"] for crumb in event["breadcrumbs"]["values"]]
    assert any(f"execution {failed}: attempt 2 failed" in crumb for crumb in crumbs)


# --- HTTP requests -----------------------------------------------------------------------


async def test_a_task_failing_under_an_http_request_carries_the_request_id(
    receiver: Receiver,
) -> None:
    @kernel.task("api.fail")
    async def fail() -> None:
        raise ZeroDivisionError("bad maths")

    @kernel.task("api.refuse")
    async def refuse() -> None:
        raise OutOfStock("sold out")

    exposure = kernel.exposure.http(
        "http", auth=BearerAuth(tokens={"t0ken-for-tests": "tester"}), allow_tasks=["api.*"]
    )
    app = kernel.App("api", register=[fail, refuse, exposure])
    headers = {"authorization": "Bearer t0ken-for-tests", "x-request-id": "req-17"}
    with trio.fail_after(10):
        async with kernel.run(app, sentry=tracking(receiver)) as rt:
            base = rt.resource(exposure).base_url
            async with httpx.AsyncClient(base_url=base, headers=headers) as client:
                assert (await client.post("/task/api.refuse", json={})).status_code == 409
                assert (await client.post("/task/api.fail", json={})).status_code == 500
    event = only_event(receiver)
    assert event["tags"] == {
        "runner.task.id": "api.fail",
        "runner.kind": "task",
        "runner.request.id": "req-17",
    }
    assert b"t0ken-for-tests" not in receiver.raw()


async def test_with_tracing_on_an_event_names_its_trace(receiver: Receiver) -> None:
    spans = InMemorySpanExporter()

    @kernel.task("traced.fail")
    async def fail() -> None:
        raise ValueError("traced")

    tracing = kernel.TracingConfig(service_name="traced", exporter=spans)
    app = kernel.App("traced", register=[fail])
    async with kernel.run(app, tracing=tracing, sentry=tracking(receiver)) as rt:
        with pytest.raises(ValueError, match="traced"):
            await rt.run_task(fail)
    (span,) = spans.get_finished_spans()
    assert only_event(receiver)["tags"]["runner.trace.id"] == format(span.context.trace_id, "032x")


# --- the client and its lifetime ---------------------------------------------------------


async def test_two_runtimes_report_to_their_own_dsn_and_leave_the_global_client_alone(
    receiver: Receiver,
) -> None:
    @kernel.task("a.fail")
    async def fail_a() -> None:
        raise ValueError("a")

    @kernel.task("b.fail")
    async def fail_b() -> None:
        raise ValueError("b")

    with receiving() as other:
        async with (
            kernel.run(kernel.App("a", register=[fail_a]), sentry=tracking(receiver)) as a,
            kernel.run(kernel.App("b", register=[fail_b]), sentry=tracking(other)) as b,
        ):
            assert not sentry_sdk.get_client().is_active()
            with pytest.raises(ValueError, match="b"):
                await b.run_task(fail_b)
            with pytest.raises(ValueError, match="a"):
                await a.run_task(fail_a)
        assert only_event(other)["tags"]["runner.task.id"] == "b.fail"
    assert only_event(receiver)["tags"]["runner.task.id"] == "a.fail"
    assert not sentry_sdk.get_client().is_active()


async def test_an_unreachable_sentry_loses_events_not_the_app() -> None:
    with receiving() as gone:
        dsn = gone.dsn

    # Nothing listens there any more: the event is dropped by sentry-sdk's thread.
    @kernel.task("app.fail")
    async def fail() -> None:
        raise ValueError("nobody hears this")

    config = kernel.SentryConfig(dsn=dsn, release="1", flush_timeout=1.0)
    async with kernel.run(kernel.App("app", register=[fail]), sentry=config) as rt:
        with pytest.raises(ValueError, match="nobody"):
            await rt.run_task(fail)


@pytest.mark.slow
async def test_the_flush_at_exit_is_bounded_by_flush_timeout() -> None:
    """A Sentry that accepts the request and never answers holds the exit for at most
    ``flush_timeout`` (plus sentry-sdk's first 0.1 s look), never forever."""

    @kernel.task("app.fail")
    async def fail() -> None:
        raise ValueError("stalled")

    with receiving(stall=True) as stalled:
        config = kernel.SentryConfig(dsn=stalled.dsn, release="1", flush_timeout=0.5)
        async with kernel.run(kernel.App("app", register=[fail]), sentry=config) as rt:
            with pytest.raises(ValueError, match="stalled"):
                await rt.run_task(fail)
            started = trio.current_time()
        assert trio.current_time() - started < 5.0
        assert len(stalled.requests) == 1


async def test_without_sentry_sdk_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "sentry_sdk", None)
    with pytest.raises(ImportError, match=r"pip install 'trio-runner\[sentry\]'"):
        async with kernel.run(kernel.App("app", register=[]), sentry=tracking(receiver)):
            pass  # pragma: no cover
