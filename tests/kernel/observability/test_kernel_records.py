"""What the kernel's log records carry: a redacted traceback instead of the live exception;
loguru's default handler set aside while a LogConfig is installed; the task failure level."""

from __future__ import annotations

import io
import json
import pickle
import traceback
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
from loguru import logger

import kernel
from kernel import Redaction
from kernel.observability import (
    REDACTED,
    LogConfig,
    RedactedTraceback,
    _handlers,
    _tracebacks,
    kernel_logger,
)
from kernel.observability._logging import install, log_task_failure
from kernel.observability._tracebacks import redact_exception

CARD = "4111111111111111"
PASSWORD = "pw-in-a-local"


class Declined(Exception):
    pass


def fail(card_number: str, password: str) -> None:
    """Raise with the secrets in this frame's locals and in the message."""
    payment = {"card_number": card_number, "password": password}
    try:
        raise KeyError(card_number)
    except KeyError:
        raise Declined(f"declined {payment!r}") from None


def failure() -> Declined:
    try:
        fail(CARD, PASSWORD)
    except Declined as exc:
        exc.add_note(f"while charging card {CARD}")
        return exc
    raise AssertionError("unreachable")


@pytest.fixture
def rendered() -> Iterator[io.StringIO]:
    """A handler with every option that shows more of an exception than the text."""
    stream = io.StringIO()
    handler_id = logger.add(
        stream, level="DEBUG", diagnose=True, backtrace=True, colorize=False, format="{message}"
    )
    yield stream
    logger.remove(handler_id)


@pytest.fixture
def records() -> Iterator[list[Any]]:
    seen: list[Any] = []
    handler_id = logger.add(lambda message: seen.append(message.record), level="DEBUG")
    yield seen
    logger.remove(handler_id)


# ---------------------------------------------------------------------- RedactedTraceback


def test_a_redacted_traceback_is_the_standard_one_as_redacted_text() -> None:
    exc = failure()
    redacted = redact_exception(exc, Redaction())
    standard = "".join(traceback.format_exception(exc))
    assert redacted.stack == Redaction().redact_text(standard)
    assert str(redacted) == redacted.stack.rstrip("\n")
    assert redacted.stack.startswith("Traceback (most recent call last):")
    assert "in fail" in redacted.stack  # the frames are named, their locals are not there
    assert "During handling of the above exception" not in redacted.stack  # from None
    assert f"while charging card {REDACTED}" in redacted.stack  # notes
    assert redacted.type_name == f"{__name__}.Declined"
    assert redacted.message == f"declined {{'card_number': '{REDACTED}', 'password': '{REDACTED}'}}"
    for secret in (CARD, PASSWORD):
        assert secret not in repr(redacted)
        assert secret not in "".join(traceback.format_exception(redacted))
    assert redacted.__traceback__ is redacted.__cause__ is redacted.__context__ is None


def test_a_redacted_traceback_pickles_as_its_text() -> None:
    redacted = redact_exception(failure(), Redaction())
    copy = pickle.loads(pickle.dumps(redacted))
    assert (copy.type_name, copy.message, copy.stack) == (
        redacted.type_name,
        redacted.message,
        redacted.stack,
    )
    assert type(copy).__module__ == "kernel.observability"


def test_chains_and_groups_are_kept_as_text() -> None:
    try:
        try:
            raise ValueError(f"card {CARD}")
        except ValueError as cause:
            raise ExceptionGroup("two", [TypeError("a"), Declined("b")]) from cause
    except ExceptionGroup as exc:
        stack = redact_exception(exc, Redaction()).stack
    assert "The above exception was the direct cause" in stack
    assert f"ValueError: card {REDACTED}" in stack
    assert "TypeError: a" in stack
    assert "Declined: b" in stack


def test_a_traceback_that_cannot_be_formatted_still_gives_a_stand_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(exc: BaseException) -> list[str]:
        raise RuntimeError("formatting failed")

    monkeypatch.setattr(_tracebacks.traceback, "format_exception", broken)
    redacted = redact_exception(Declined(f"card {CARD}"), Redaction())
    assert redacted.stack == f"{__name__}.Declined: <the traceback could not be formatted>\n"
    assert redacted.message == f"card {REDACTED}"


# ---------------------------------------------------------------------- kernel records


def test_a_kernel_record_carries_no_frames_for_any_handler(
    rendered: io.StringIO, records: list[Any]
) -> None:
    kernel_logger("pay").opt(exception=failure()).error("charge failed")
    (record,) = records
    exception = record["exception"]
    assert exception.type is Declined
    assert isinstance(exception.value, RedactedTraceback)
    assert exception.traceback is None
    text = rendered.getvalue()
    assert "Declined: declined" in text
    assert "in fail" in text
    for secret in (CARD, PASSWORD):
        assert secret not in text


def test_a_users_own_record_keeps_its_live_exception(records: list[Any]) -> None:
    exc = failure()
    logger.opt(exception=exc).error("not the kernel's")
    assert records[0]["exception"].value is exc


def test_logger_exception_and_a_bound_exception_are_redacted_too(
    rendered: io.StringIO, records: list[Any]
) -> None:
    log = kernel_logger("pay")
    try:
        fail(CARD, PASSWORD)
    except Declined as exc:
        log.exception("caught")
        log.warning("attempt failed: {error!r}", error=exc)
    assert isinstance(records[0]["exception"].value, RedactedTraceback)
    assert records[1]["exception"] is None
    assert records[1]["extra"]["error"] == (
        f"Declined(\"declined {{'card_number': '{REDACTED}', 'password': '{REDACTED}'}}\")"
    )
    for secret in (CARD, PASSWORD):
        assert secret not in rendered.getvalue()


def test_a_record_relogged_is_not_wrapped_twice(records: list[Any]) -> None:
    redacted = redact_exception(failure(), Redaction())
    kernel_logger("pay").opt(exception=redacted).error("again")
    assert records[0]["exception"].value is redacted


def test_no_exception_in_flight_is_left_alone(records: list[Any]) -> None:
    kernel_logger("pay").opt(exception=True).error("nothing raised")
    assert records[0]["exception"].value is None


def test_with_redaction_off_kernel_records_keep_the_live_exception(records: list[Any]) -> None:
    exc = failure()
    with install(LogConfig(sink=io.StringIO(), redact=False)):
        kernel_logger("pay").opt(exception=exc).error("raw")
    assert records[0]["exception"].value is exc


def test_the_json_error_of_a_kernel_record() -> None:
    sink = io.StringIO()
    with install(LogConfig(format="json", sink=sink)):
        kernel_logger("pay").opt(exception=failure()).error("charge failed")
    error = json.loads(sink.getvalue())["error"]
    assert error["type"] == f"{__name__}.Declined"
    assert error["message"] == f"declined {{'card_number': '{REDACTED}', 'password': '{REDACTED}'}}"
    assert error["stack"].startswith("Traceback (most recent call last):")
    assert CARD not in sink.getvalue()


# ---------------------------------------------------------------------- loguru's default handler


@pytest.fixture
def loguru_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A handler standing for loguru's own default one, on a stream of the test's."""
    stream = io.StringIO()
    monkeypatch.setattr(_handlers, "_default_id", logger.add(stream, format="{message}"))
    yield stream
    with suppress(ValueError):
        logger.remove(_handlers._default_id)


def handler_ids() -> set[int]:
    found = _handlers.handlers()
    assert found is not None
    return {handler.id for handler in found}


def test_installing_sets_loguru_default_handler_aside_until_the_last_is_removed(
    loguru_default: io.StringIO, records: list[Any]
) -> None:
    default_id = _handlers.default_handler_id()
    assert default_id is not None
    assert default_id in handler_ids()
    first = install(LogConfig(sink=io.StringIO()))
    second = install(LogConfig(sink=io.StringIO()))
    assert default_id not in handler_ids()
    assert _handlers.default_handler_id() is None
    logger.info("while installed")
    first.remove()
    logger.info("one left")
    second.remove()
    logger.info("after")
    assert [r["message"] for r in records] == ["while installed", "one left", "after"]
    # Put back on the same stream, with loguru's defaults (its own format, not the test's).
    printed = loguru_default.getvalue().splitlines()
    assert len(printed) == 1
    assert printed[0].endswith(" - after")
    assert _handlers.default_handler_id() in handler_ids()


def test_a_default_handler_removed_by_the_user_is_not_put_back(
    loguru_default: io.StringIO,
) -> None:
    logger.remove(_handlers._default_id)
    assert _handlers.default_handler_id() is None
    with install(LogConfig(sink=io.StringIO())):
        pass
    assert _handlers.default_handler_id() is None


def test_after_logger_remove_nothing_is_put_back(
    loguru_default: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = install(LogConfig(sink=io.StringIO()))
    # What ``logger.remove()`` does to the installed handler (without removing the suite's).
    logger.remove(installed.handler_id)
    installed.remove()
    assert _handlers.default_handler_id() is None
    assert loguru_default.getvalue() == ""


def test_the_default_handler_comes_back_on_stderr_when_its_stream_is_unknown(
    loguru_default: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_handlers, "handlers", lambda: None)
    assert _handlers.take_default() is _handlers.sys.stderr
    assert _handlers.take_default() is None  # once taken, there is none to take


def test_handlers_are_unknown_when_loguru_internals_differ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_handlers._loguru, "_core", object())
    assert _handlers.handlers() is None


# ---------------------------------------------------------------------- task failures


@kernel.task("pay.decline")
async def decline() -> None:
    raise Declined("no")


async def run_failing(log: LogConfig | None) -> None:
    async with kernel.run(kernel.App("shop", register=[decline]), log=log) as rt:
        with pytest.raises(Declined):
            await rt.run_task(decline)


def failures(records: list[Any]) -> list[tuple[str, str]]:
    return [(r["level"].name, r["message"]) for r in records if r["message"].startswith("task")]


async def test_a_task_failure_is_logged_at_debug_by_default(records: list[Any]) -> None:
    await run_failing(None)
    await run_failing(LogConfig(sink=io.StringIO()))
    assert failures(records) == [("DEBUG", "task failed: no")] * 2
    assert records[0]["function"] == "run_task"  # the kernel's line, not the helper's


async def test_task_failures_at_the_level_chosen_or_not_at_all(records: list[Any]) -> None:
    await run_failing(LogConfig(sink=io.StringIO(), task_failures="error"))
    await run_failing(LogConfig(sink=io.StringIO(), task_failures=None))
    assert failures(records) == [("ERROR", "task failed: no")]


def test_log_task_failure_follows_the_latest_installed_config(records: list[Any]) -> None:
    with install(LogConfig(sink=io.StringIO(), task_failures="WARNING")):
        log_task_failure("pay.decline", Declined("no"))
    assert failures(records) == [("WARNING", "task failed: no")]


def test_task_failures_must_be_a_level_or_none() -> None:
    assert LogConfig().task_failures == "DEBUG"
    assert LogConfig(task_failures="warning").task_failures == "WARNING"
    with pytest.raises(TypeError, match="task_failures must be a level name or None"):
        LogConfig(task_failures=40)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task_failures must be a loguru level name"):
        LogConfig(task_failures="LOUD")
