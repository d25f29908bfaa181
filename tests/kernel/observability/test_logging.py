from __future__ import annotations

import io
import json
import logging
import re
import string
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger
from opentelemetry.sdk.trace import TracerProvider

from kernel import Redaction
from kernel._redaction import DEFAULT_KEYS
from kernel.observability import REDACTED, LogConfig, execution_id, kernel_logger
from kernel.observability._logging import Installed, active_redaction, install

CARD = "4111 1111 1111 1111"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
KEYS = ["timestamp", "level", "source", "message", "data", "error", "context"]


class JsonLog:
    """A JSON handler writing to a buffer, read back as parsed records."""

    def __init__(self, **options: Any) -> None:
        self.buffer = io.StringIO()
        self.installed = install(LogConfig(format="json", sink=self.buffer, **options))

    @property
    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def json_log() -> Iterator[JsonLog]:
    log = JsonLog(level="DEBUG")
    yield log
    log.installed.remove()


@pytest.fixture
def user_sink() -> Iterator[list[Any]]:
    """Messages received by a handler the user added with loguru directly."""
    messages: list[Any] = []
    handler_id = logger.add(messages.append, level="DEBUG", format="{message} | {extra}")
    yield messages
    logger.remove(handler_id)


# ---------------------------------------------------------------------- JSON records


def test_a_json_record_has_exactly_the_documented_keys(
    json_log: JsonLog, user_sink: list[Any]
) -> None:
    kernel_logger("orders.process").info("order placed", data={"order_id": 7})
    (record,) = json_log.records
    assert list(record) == KEYS
    assert record["level"] == "info"
    assert record["source"] == "orders.process"
    assert record["message"] == "order placed"
    assert record["data"] == {"order_id": 7}
    assert record["error"] is None
    assert record["context"] == {"execution_id": None, "trace_id": None, "span_id": None}
    assert TIMESTAMP.match(record["timestamp"])
    time = user_sink[0].record["time"].astimezone(UTC)
    assert record["timestamp"] == time.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time:%f}"[:3] + "Z"
    parsed = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert abs((parsed - time).total_seconds()) < 0.001


def test_one_line_per_record(json_log: JsonLog) -> None:
    log = kernel_logger("a")
    log.debug("first\nline")
    log.warning("second", data={"text": "x\ny"})
    logger.critical("third")
    assert len(json_log.lines) == 3
    assert [r["level"] for r in json_log.records] == ["debug", "warning", "critical"]
    assert json_log.records[0]["message"] == "first\nline"


def test_records_below_the_level_are_not_written() -> None:
    log = JsonLog(level="warning")
    try:
        assert log.installed.config.level == "WARNING"
        kernel_logger("a").info("hidden")
        kernel_logger("a").warning("shown")
        assert [r["message"] for r in log.records] == ["shown"]
    finally:
        log.installed.remove()


class PaymentDeclined(Exception):
    pass


def test_an_exception_fills_error(json_log: JsonLog) -> None:
    try:
        raise PaymentDeclined(f"card {CARD} declined")
    except PaymentDeclined as exc:
        kernel_logger("pay").opt(exception=exc).error("payment failed")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("plain")
    declined, plain = json_log.records
    assert declined["error"]["type"] == f"{__name__}.PaymentDeclined"
    assert declined["error"]["message"] == f"card {REDACTED} declined"
    stack = declined["error"]["stack"]
    assert stack.startswith("Traceback (most recent call last):\n")
    assert 'raise PaymentDeclined(f"card {CARD} declined")' in stack
    assert stack.endswith(f"PaymentDeclined: card {REDACTED} declined\n")
    assert "4111" not in json_log.buffer.getvalue()
    assert plain["error"]["type"] == "ValueError"
    assert plain["error"]["message"] == "boom"
    assert list(plain["error"]) == ["type", "message", "stack"]


def test_no_exception_in_flight_means_no_error(json_log: JsonLog) -> None:
    logger.opt(exception=True).error("nothing is being handled")
    assert json_log.records[0]["error"] is None


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_an_exception_that_cannot_be_printed_still_gives_a_record(json_log: JsonLog) -> None:
    kernel_logger("a").opt(exception=BadStr()).error("odd")
    error = json_log.records[0]["error"]
    assert error["type"] == f"{__name__}.BadStr"
    assert error["message"] == "<BadStr (str() failed)>"


def test_the_source_of_a_plain_loguru_record_is_its_module(json_log: JsonLog) -> None:
    logger.info("from the user")
    exec("logger.info('from nowhere')", {"logger": logger})
    logger.bind(source=42).info("odd source")
    assert [r["source"] for r in json_log.records] == [__name__, "unknown", "42"]


# ---------------------------------------------------------------------- structured data


def test_data_by_keyword_and_by_bind(json_log: JsonLog, user_sink: list[Any]) -> None:
    log = kernel_logger("a")
    log.info("by keyword", data={"n": 1})
    log.bind(data={"n": 2}).info("by bind")
    log.bind(data={"n": 3}).info("literal {braces} stay")
    log.info("order {order_id} placed {{here}}", order_id=7, data={"n": 4})
    log.info("no data")
    records = json_log.records
    assert [r["data"] for r in records] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}, {}]
    assert [r["message"] for r in records] == [
        "by keyword",
        "by bind",
        "literal {braces} stay",
        "order 7 placed {here}",
        "no data",
    ]
    assert "order_id" not in json_log.lines[3]  # other keywords stay out of the line
    assert user_sink[0].record["extra"]["data"] == {"n": 1}


def test_data_that_is_not_a_mapping_goes_under_value(json_log: JsonLog) -> None:
    logger.info("list", data=[1, 2])
    logger.info("str", data="text")
    assert [r["data"] for r in json_log.records] == [{"value": [1, 2]}, {"value": "text"}]


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Exploding(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot iterate")

    def __len__(self) -> int:
        return 1


def test_values_json_cannot_hold_are_rendered_never_crash(json_log: JsonLog) -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    data = {
        "object": Path("/tmp/x"),
        "bad": BadRepr(),
        "nan": float("nan"),
        "inf": float("-inf"),
        "tuple_key": {(1, 2): "a", 3: "b", None: "c"},
        "set": {5},
        "tuple": (1, "a"),
        "bytes": b"card 4111111111111111",
        "cycle": cyclic,
    }
    logger.info("odd data", data=data)
    assert json_log.records[0]["data"] == {
        "object": repr(Path("/tmp/x")),
        "bad": "<BadRepr (repr() failed)>",
        "nan": "nan",
        "inf": "-inf",
        "tuple_key": {"(1, 2)": "a", "3": "b", "None": "c"},
        "set": [5],
        "tuple": [1, "a"],
        "bytes": f"b'card {REDACTED}'",
        "cycle": [1, "[Circular]"],
    }


def test_data_that_cannot_be_redacted_is_hidden_whole(
    json_log: JsonLog, user_sink: list[Any]
) -> None:
    kernel_logger("a").info("kernel", data=Exploding())
    logger.info("user", data=Exploding())
    assert [r["data"] for r in json_log.records] == [{"value": REDACTED}, {"value": REDACTED}]
    assert user_sink[0].record["extra"] == {"source": "a", "data": REDACTED}


def test_data_that_cannot_be_rendered_is_named() -> None:
    log = JsonLog(redact=False)
    try:
        logger.info("user", data=Exploding())
        assert log.records[0]["data"] == {"value": "<unrenderable Exploding>"}
    finally:
        log.installed.remove()


# ---------------------------------------------------------------------- context


def test_the_execution_id_comes_from_its_context_var(json_log: JsonLog) -> None:
    token = execution_id.set("exec-42")
    try:
        kernel_logger("a").info("inside")
    finally:
        execution_id.reset(token)
    kernel_logger("a").info("outside")
    inside, outside = json_log.records
    assert inside["context"]["execution_id"] == "exec-42"
    assert outside["context"]["execution_id"] is None


def test_trace_and_span_ids_come_from_the_current_span(json_log: JsonLog) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner") as span:
        kernel_logger("a").info("in a span")
    kernel_logger("a").info("no span")
    in_span, no_span = json_log.records
    span_context = span.get_span_context()
    assert in_span["context"]["trace_id"] == f"{span_context.trace_id:032x}"
    assert in_span["context"]["span_id"] == f"{span_context.span_id:016x}"
    assert re.fullmatch(r"[0-9a-f]{32}", in_span["context"]["trace_id"])
    assert no_span["context"] == {"execution_id": None, "trace_id": None, "span_id": None}


def test_without_opentelemetry_imported_the_ids_are_null(
    json_log: JsonLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("tests")
    with tracer.start_as_current_span("span"):
        monkeypatch.delitem(sys.modules, "opentelemetry.trace")
        kernel_logger("a").info("unknown")
    assert json_log.records[0]["context"]["trace_id"] is None


# ---------------------------------------------------------------------- pretty


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_pretty_format_for_humans() -> None:
    buffer = io.StringIO()
    token = execution_id.set("exec-1")
    try:
        with install(LogConfig(sink=buffer, level="DEBUG")):
            log = kernel_logger("orders.process")
            log.info("order placed <b>", data={"order_id": 7, "password": "hunter2"})
            log.debug("quiet")
            try:
                raise ValueError("boom")
            except ValueError as exc:
                log.opt(exception=exc).error("failed")
    finally:
        execution_id.reset(token)
    text = buffer.getvalue()
    assert "\x1b[" not in text  # not a terminal: no colour
    assert "hunter2" not in text
    lines = text.splitlines()
    head = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| "
    assert re.fullmatch(head + r"INFO     \| orders\.process       \| order placed <b>", lines[0])
    assert lines[1] == '    data: {"order_id": 7, "password": "[REDACTED]"}'
    assert lines[2] == "    context: execution_id=exec-1"
    assert re.fullmatch(head + r"DEBUG    \| orders\.process       \| quiet", lines[3])
    assert lines[4] == "    context: execution_id=exec-1"
    assert re.fullmatch(head + r"ERROR    \| orders\.process       \| failed", lines[5])
    assert lines[7] == "    error: ValueError: boom"
    assert lines[8] == "      Traceback (most recent call last):"
    assert lines[-1] == "      ValueError: boom"
    assert len(lines) > 10


def test_the_pretty_format_has_no_details_when_there_are_none() -> None:
    buffer = io.StringIO()
    with install(LogConfig(sink=buffer)):
        kernel_logger("a").info("just this")
    assert buffer.getvalue().endswith("| a                    | just this\n")
    assert buffer.getvalue().count("\n") == 1


def test_the_pretty_format_is_coloured_on_a_terminal() -> None:
    terminal = Terminal()
    with install(LogConfig(sink=terminal)):
        kernel_logger("a").info("hello <red>")
    assert "\x1b[" in terminal.getvalue()
    assert "hello <red>" in terminal.getvalue()  # the message is not read as markup


# ---------------------------------------------------------------------- configuration


def test_log_config_defaults() -> None:
    config = LogConfig()
    assert config.format == "pretty"
    assert config.level == "INFO"
    assert config.sink is sys.stderr
    assert config.redact == Redaction()


def test_log_config_levels_are_case_insensitive() -> None:
    assert LogConfig(level="debug").level == "DEBUG"
    assert LogConfig(level="Success").level == "SUCCESS"
    assert LogConfig(level="ERROR").level == "ERROR"


def test_log_config_redact_takes_a_policy_or_a_bool() -> None:
    policy = Redaction(emails=True)
    assert LogConfig(redact=policy).redact is policy
    assert LogConfig(redact=True).redact == Redaction()
    assert LogConfig(redact=False).redact == Redaction.off()


def test_log_config_takes_every_kind_of_sink(tmp_path: Path) -> None:
    handler = logging.NullHandler()
    for sink in [tmp_path / "a.log", str(tmp_path / "b.log"), print, io.StringIO(), handler]:
        assert LogConfig(sink=sink).sink is sink


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"format": "xml"}, ValueError, "LogConfig: format must be 'json' or 'pretty', got 'xml'"),
        ({"format": "JSON"}, ValueError, "LogConfig: format must be 'json' or 'pretty'"),
        ({"level": "loud"}, ValueError, "LogConfig: level must be a loguru level name"),
        ({"level": 20}, TypeError, "LogConfig: level must be a level name \\(a str\\), got 20"),
        ({"sink": 42}, TypeError, "LogConfig: sink must be a file-like object, a path, a"),
        ({"redact": "yes"}, TypeError, "LogConfig: redact must be a Redaction or a bool"),
        ({"redact": 1}, TypeError, "LogConfig: redact must be a Redaction or a bool, got 1"),
    ],
)
def test_bad_log_config_names_the_field(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        LogConfig(**kwargs)


def test_log_config_is_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        LogConfig("json")  # type: ignore[call-arg]
    config = LogConfig()
    with pytest.raises(AttributeError):
        config.level = "DEBUG"  # type: ignore[misc]


# ---------------------------------------------------------------------- install


def test_install_and_remove_leave_the_users_handlers_alone(user_sink: list[Any]) -> None:
    log = JsonLog()
    kernel_logger("a").info("one")
    log.installed.remove()
    log.installed.remove()  # idempotent
    kernel_logger("a").info("two")
    assert [m.record["message"] for m in user_sink] == ["one", "two"]
    assert [r["message"] for r in log.records] == ["one"]


def test_remove_after_the_handler_was_removed_elsewhere() -> None:
    log = JsonLog(redact=False)
    logger.remove(log.installed.handler_id)
    log.installed.remove()
    assert active_redaction() == Redaction()


def test_installed_is_a_context_manager() -> None:
    with install(LogConfig(sink=io.StringIO())) as installed:
        assert isinstance(installed, Installed)
    with pytest.raises(ValueError, match="no existing handler"):
        logger.remove(installed.handler_id)


def test_install_writes_to_a_path(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    with install(LogConfig(format="json", sink=path)):
        kernel_logger("a").info("to a file", data={"token": "t"})
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["data"] == {"token": REDACTED}


def test_install_writes_to_a_logging_handler_without_a_blank_line() -> None:
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    with install(LogConfig(format="json", sink=Collect())):
        kernel_logger("a").info("to logging")
    (message,) = messages
    assert json.loads(message)["message"] == "to logging"
    assert not message.endswith("\n")


def test_the_active_policy_is_the_latest_installs_still_in_place() -> None:
    emails = Redaction(emails=True)
    assert active_redaction() == Redaction()
    first = install(LogConfig(sink=io.StringIO(), redact=emails))
    second = install(LogConfig(sink=io.StringIO(), redact=False))
    assert active_redaction() == Redaction.off()
    first.remove()
    assert active_redaction() == Redaction.off()
    second.remove()
    assert active_redaction() == Redaction()


# ---------------------------------------------------------------------- redaction


def test_kernel_records_are_redacted_before_a_user_sink_sees_them(
    json_log: JsonLog, user_sink: list[Any]
) -> None:
    kernel_logger("auth").info(
        f"login with card {CARD}",
        data={"user": "bob", "password": "hunter2", "nested": [{"api_key": "k"}]},
        session="s-1",
    )
    (message,) = user_sink
    assert message.record["message"] == f"login with card {REDACTED}"
    assert message.record["extra"] == {
        "source": "auth",
        "data": {"user": "bob", "password": REDACTED, "nested": [{"api_key": REDACTED}]},
        "session": REDACTED,
    }
    for secret in ("hunter2", "4111", "s-1", "'k'"):
        assert secret not in message
        assert secret not in json_log.buffer.getvalue()


def test_a_plain_loguru_record_is_redacted_by_the_installed_handler(
    json_log: JsonLog, user_sink: list[Any]
) -> None:
    logger.info(f"card {CARD}", data={"token": "t"})
    assert json_log.records[0]["message"] == f"card {REDACTED}"
    assert json_log.records[0]["data"] == {"token": REDACTED}
    assert user_sink[0].record["extra"]["data"] == {"token": "t"}  # not a kernel logger


def test_nothing_is_redacted_with_redact_false(user_sink: list[Any]) -> None:
    log = JsonLog(redact=False)
    try:
        kernel_logger("a").info(f"card {CARD}", data={"password": "p"})
    finally:
        log.installed.remove()
    assert log.records[0]["data"] == {"password": "p"}
    assert log.records[0]["message"] == f"card {CARD}"
    assert user_sink[0].record["extra"]["data"] == {"password": "p"}


def test_the_handler_uses_its_own_policy() -> None:
    log = JsonLog(redact=Redaction(emails=True, extra_keys=("pin",)))
    try:
        logger.info("mail bob@example.com", data={"pin": 1234})
    finally:
        log.installed.remove()
    assert log.records[0]["message"] == f"mail {REDACTED}"
    assert log.records[0]["data"] == {"pin": REDACTED}


# ---------------------------------------------------------------------- property

PLAIN = st.text(st.characters(exclude_characters="#"), max_size=8)
SECRETS = st.text(string.ascii_letters + string.digits, min_size=1, max_size=12).map(
    lambda text: "SECRET#" + text
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), PLAIN),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(PLAIN, children, max_size=3),
    ),
    max_leaves=8,
)


def spell(term: str, prefix: str, suffix: str, case: Callable[[str], str]) -> str:
    return case(prefix + term + suffix)


sensitive_keys = st.builds(
    spell,
    st.sampled_from(DEFAULT_KEYS),
    st.sampled_from(["", "db_", "x-", "user.", "my "]),
    st.sampled_from(["", "_2", "-value", "s", ".hash"]),
    st.sampled_from([str.lower, str.upper, str.title]),
)


@st.composite
def secret_holders(draw: st.DrawFn, secret: str) -> Any:
    """A dict (or a ``(key, value)`` pair) holding the secret under a sensitive key."""
    key = draw(sensitive_keys)
    value = draw(st.sampled_from([secret, [secret], {"inner": secret}, (1, secret)]))
    if draw(st.booleans()):
        return (key, value)
    return {**draw(st.dictionaries(PLAIN, values, max_size=3)), key: value}


@st.composite
def structures_with_a_secret(draw: st.DrawFn, secret: str) -> Any:
    """Random nesting (dicts, lists, tuples) around a holder of the secret, at any depth."""
    node = draw(secret_holders(secret))
    for kind in draw(st.lists(st.sampled_from(["dict", "list", "tuple"]), max_size=6)):
        if kind == "dict":
            node = {**draw(st.dictionaries(PLAIN, values, max_size=3)), draw(PLAIN): node}
        else:
            siblings = draw(st.lists(values, max_size=3))
            siblings.insert(draw(st.integers(0, len(siblings))), node)
            node = siblings if kind == "list" else tuple(siblings)
    return node


def test_no_secret_under_a_sensitive_key_ever_reaches_a_sink() -> None:
    # The handlers are added once (loguru's ``add`` costs milliseconds), then reused.
    received: list[Any] = []
    user_id = logger.add(received.append, level="DEBUG", format="{message} | {extra}")
    log = JsonLog(level="DEBUG")

    @settings(max_examples=200, deadline=None)
    @given(st.data(), SECRETS, st.booleans())
    def check(data: st.DataObject, secret: str, by_bind: bool) -> None:
        payload = data.draw(structures_with_a_secret(secret))
        assert secret in repr(payload)
        log.buffer.seek(0)
        log.buffer.truncate()
        received.clear()
        if by_bind:
            kernel_logger("prop").bind(data=payload).info("payload")
        else:
            kernel_logger("prop").info("payload", data=payload)
        (line,) = log.lines
        assert secret not in line
        assert json.loads(line)["message"] == "payload"
        (message,) = received
        assert secret not in message
        assert secret not in repr(message.record)

    try:
        check()
    finally:
        log.installed.remove()
        logger.remove(user_id)
