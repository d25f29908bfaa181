"""`kernel.SentryConfig`'s checks, and the redaction applied to every event and breadcrumb."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from loguru import logger

import kernel
from kernel.observability._sentry import ErrorTracking, redact_event

DSN = "https://publickey@o0.ingest.sentry.io/7"


def test_defaults_and_conversions() -> None:
    config = kernel.SentryConfig(
        dsn=kernel.config.Secret(DSN),
        redact=True,
        breadcrumbs="warning",
        flush_timeout=timedelta(milliseconds=250),
        ignore=KeyError,
    )
    assert config.dsn.reveal() == DSN
    assert config.redact == kernel.Redaction()
    assert config.breadcrumbs == "WARNING"
    assert config.flush_timeout == 0.25
    assert config.ignore == (KeyError,)
    assert kernel.SentryConfig(dsn=DSN, redact=False).policy() == kernel.Redaction.off()
    assert kernel.SentryConfig(dsn=DSN).policy() == kernel.Redaction()  # the logs' default


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"dsn": 17}, TypeError, "dsn must be a str or a kernel.config.Secret, got int"),
        ({"dsn": "publickey@o0.ingest.sentry.io/7"}, ValueError, "dsn must be an http"),
        ({"dsn": "ftp://publickey@host/7"}, ValueError, "dsn must be an http"),
        ({"dsn": "https://o0.ingest.sentry.io/7"}, ValueError, "dsn has no public key"),
        ({"dsn": "https://publickey@/7"}, ValueError, "dsn has no host"),
        ({"dsn": "https://publickey@host:port/7"}, ValueError, "dsn is not a URL"),
        ({"dsn": "https://publickey@host/"}, ValueError, "dsn must end with the numeric"),
        ({"environment": ""}, ValueError, "environment must not be blank"),
        ({"release": 1.0}, TypeError, "release must be a str or None, got 1.0"),
        ({"sample_rate": 1.5}, ValueError, "sample_rate must be between 0 and 1, got 1.5"),
        ({"sample_rate": True}, TypeError, "sample_rate must be a number, got True"),
        ({"redact": "yes"}, TypeError, "redact must be a Redaction, a bool or None"),
        ({"breadcrumbs": "loud"}, ValueError, "breadcrumbs must be a loguru level name"),
        ({"breadcrumbs": 20}, TypeError, "breadcrumbs must be a level name or None"),
        ({"max_breadcrumbs": 0}, ValueError, "max_breadcrumbs must be >= 1, got 0"),
        ({"max_breadcrumbs": 1001}, ValueError, "max_breadcrumbs must be <= 1000"),
        ({"flush_timeout": -1}, ValueError, "flush_timeout must be >= 0, got -1"),
        ({"ignore": ["KeyError"]}, TypeError, "ignore must be exception classes"),
        ({"ignore": 3}, TypeError, "ignore must be exception classes"),
    ],
)
def test_a_bad_option_is_named_and_the_dsn_never_shown(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=r"^SentryConfig: ") as raised:
        kernel.SentryConfig(**{"dsn": DSN, **options})
    assert message in str(raised.value)
    assert "publickey" not in str(raised.value)


async def test_kernel_run_refuses_what_is_not_a_config() -> None:
    with pytest.raises(TypeError, match=r"sentry must be a kernel\.SentryConfig or None"):
        async with kernel.run(kernel.App("a", register=[]), sentry=DSN):  # type: ignore[arg-type]
            pass  # pragma: no cover


def test_events_are_redacted_but_what_identifies_them() -> None:
    digits = "4111111111111111"  # a Luhn-valid run, as a hex id may hold one
    event = {
        "event_id": f"ab{digits}cd",
        "timestamp": "2026-01-01T00:00:00Z",
        "release": f"r{digits}",
        "contexts": {"trace": {"trace_id": digits}, "runtime": {"note": f"card {digits}"}},
        "tags": {"runner.request.id": digits},
        "exception": {"values": [{"value": "password=hunter2"}]},
        "extra": {"api_key": "k-1"},
    }
    redacted = redact_event(event, kernel.Redaction())
    assert redacted["event_id"] == event["event_id"]
    assert redacted["release"] == event["release"]
    assert redacted["contexts"]["trace"] == {"trace_id": digits}
    assert redacted["contexts"]["runtime"] == {"note": "card [REDACTED]"}
    assert redacted["tags"] == {"runner.request.id": "[REDACTED]"}
    assert redacted["exception"]["values"][0]["value"] == "password=[REDACTED]"
    assert redacted["extra"] == {"api_key": "[REDACTED]"}
    assert redact_event(event, kernel.Redaction.off()) == event


class Unredactable(kernel.Redaction):
    def redact(self, value: Any) -> Any:
        raise RuntimeError("cannot")


def test_what_cannot_be_redacted_is_dropped_not_sent() -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    tracking = ErrorTracking(kernel.SentryConfig(dsn=DSN, redact=Unredactable()))
    try:
        assert tracking.before_send({"message": "password=hunter2"}, {}) is None
        assert tracking.before_breadcrumb({"message": "password=hunter2"}, {}) is None
    finally:
        logger.remove(sink)
    assert lines == [
        "error tracking: an event was dropped, it could not be redacted (RuntimeError)\n"
    ]


async def test_breadcrumbs_name_levels_as_sentry_does(tmp_path: Any) -> None:
    try:
        logger.level("NOTICE")
    except ValueError:
        logger.level("NOTICE", no=25)
    tracking = ErrorTracking(kernel.SentryConfig(dsn=DSN, breadcrumbs="TRACE"))
    await tracking.start()
    try:
        log = logger.bind(source="shop", data=[1, 2])
        for level in ("TRACE", "SUCCESS", "NOTICE", "WARNING", "CRITICAL"):
            log.log(level, "a {} record with password=hunter2", level)
        logger.log(45, "a numbered record")
    finally:
        await tracking.aclose()
    crumbs = list(tracking._crumbs)
    assert [crumb["level"] for crumb in crumbs] == [
        "debug",
        "info",
        "info",
        "warning",
        "fatal",
        "error",
    ]
    assert crumbs[0]["category"] == "shop"
    assert crumbs[0]["message"] == "a TRACE record with password=[REDACTED]"
    assert crumbs[0]["data"] == {"value": [1, 2]}
    assert crumbs[-1]["category"] == __name__
    logger.info("after the runtime stopped")  # the sink is gone
    assert len(tracking._crumbs) == 6
    await tracking.aclose()  # twice: nothing more to close


async def test_without_breadcrumbs_nothing_listens_and_a_closed_client_sends_nothing() -> None:
    tracking = ErrorTracking(kernel.SentryConfig(dsn=DSN, breadcrumbs=None, release="1"))
    await tracking.start()
    logger.info("not a breadcrumb")
    await tracking.aclose()
    assert list(tracking._crumbs) == []
    tracking.report(ValueError("too late"), {}, [])  # after the runtime stopped: dropped
    assert tracking.client is None


def test_the_breadcrumb_sink_never_raises() -> None:
    tracking = ErrorTracking(kernel.SentryConfig(dsn=DSN, redact=Unredactable()))
    tracking._record(object())  # type: ignore[arg-type]  # not a loguru message at all
    sink = logger.add(tracking._record, level="INFO", format="{message}", catch=False)
    try:
        logger.info("password=hunter2")  # cannot be redacted: not kept
    finally:
        logger.remove(sink)
    assert list(tracking._crumbs) == []
