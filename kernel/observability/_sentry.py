"""Error tracking with Sentry: `SentryConfig`, and `track_errors`, the runtime's SDK client.

``kernel.run(app, sentry=kernel.SentryConfig(dsn=..., environment=..., release=...))``
reports each unexpected failure of a task, hook, resource or durable execution once
(`kernel.observability._failures` decides which, and with what tags) to Sentry, through the
``sentry`` extra (``sentry-sdk``). The SDK is imported when a runtime starts with a config,
never by importing ``kernel``.

The runtime never calls ``sentry_sdk.init``: sentry-sdk's scopes and its client are
process-wide, and integrations patch the process once for all. Each runtime builds a
``sentry_sdk.Client`` of its own and hands it finished events (``client.capture_event``
with no scope), so two runtimes in one process report to their own DSNs with their own
tags, and an application's own ``sentry_sdk.init`` is left alone (its scopes, tags and
breadcrumbs do not reach the runtime's events, and it does not see them). The client has no
integrations at all (``default_integrations=False``, ``auto_enabling_integrations=False``):
the logging, threading, excepthook and stdlib ones would report what the runtime reports
again, or patch the process; the atexit one is replaced by the flush when the runtime stops;
argv and modules would send what nobody asked for. Local variables are never sent
(``include_local_variables=False``), nor personal data (sentry-sdk sends none by default,
and the runtime adds no user, request body or header).

Everything sent goes through ``before_send``: the event, after sentry-sdk serialised it, is
redacted with the logs' policy (`kernel.Redaction`: the config's ``redact``, else the one
the logs use, `active_redaction`) — messages, exception values, source lines, breadcrumbs,
tags and contexts — except the fields that identify the event to Sentry (``event_id``,
``timestamp``, ``sdk``, ``level``, ``platform``, ``release``, ``environment``, the trace
context). If redacting fails the event is dropped, never sent as it was.

Breadcrumbs are the process's loguru records at ``breadcrumbs`` level and up (the kernel's
are redacted already; the others are redacted by ``before_breadcrumb``), the last
``max_breadcrumbs`` of them: loguru is process-wide, so a runtime's breadcrumbs are every
record of the process, as with sentry-sdk's own logging integration.

When the runtime stops (after the ``disposed`` hooks), the client is closed in a worker
thread: what is queued is sent, waiting at most ``flush_timeout``; then it is dropped. The
runtime's exit waits for that, shielded from cancellation. sentry-sdk sends from a thread
of its own; capturing an event only queues it.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import attrs
import trio
from loguru import logger as _loguru

from kernel._redaction import Redaction
from kernel.config import Duration, Secret
from kernel.observability._failures import Failures
from kernel.observability._logging import (
    _level_name,
    _to_redaction,
    active_redaction,
    kernel_logger,
    optional_level,
)
from resilience.validate import non_negative_duration, positive_int, to_seconds

if TYPE_CHECKING:
    import sentry_sdk
    from loguru import Message

__all__ = ["SENTRY_EXTRA", "ErrorTracking", "SentryConfig", "redact_event", "track_errors"]

SENTRY_EXTRA: Final = "pip install 'trio-runner[sentry]'"
#: Fields that identify an event to Sentry: sent as they are.
_KEPT: Final = frozenset(
    {"event_id", "timestamp", "sdk", "level", "platform", "release", "environment", "dist"}
)
#: loguru levels as Sentry names them (others: by severity, see `_crumb_level`).
_LEVELS: Final = {
    "TRACE": "debug",
    "DEBUG": "debug",
    "INFO": "info",
    "SUCCESS": "info",
    "WARNING": "warning",
    "ERROR": "error",
    "CRITICAL": "fatal",
}
_MAX_BREADCRUMBS: Final = 1000
_RUNTIME_PACKAGES: Final = ("kernel", "middleware", "resilience", "trio")
_SOURCE: Final = "kernel.errors"


# ---------------------------------------------------------------------- configuration


def _to_secret(value: Any) -> Any:
    """attrs converter: a ``str`` DSN becomes a `Secret`; anything else is checked as is."""
    return Secret(value) if isinstance(value, str) else value


def _dsn_problem(text: str) -> str | None:
    """What is wrong with the DSN ``text`` (``None``: nothing), without quoting it."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.username:
        return "has no public key (before the @)"
    if not parts.hostname:
        return "has no host"
    if not parts.path.rstrip("/").rpartition("/")[2].isdigit():
        return "must end with the numeric project id"
    return None


def _check_dsn(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Secret):
        raise TypeError(
            f"SentryConfig: dsn must be a str or a kernel.config.Secret, got {type(value).__name__}"
        )
    problem = _dsn_problem(value.reveal())
    if problem is not None:
        raise ValueError(
            f"SentryConfig: dsn {problem}, like https://<public key>@<host>/<project id> "
            "(the value is not shown: a DSN holds a key)"
        )


def _check_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"SentryConfig: {attribute.name} must be a str or None, got {value!r}")
    if not value.strip():
        raise ValueError(f"SentryConfig: {attribute.name} must not be blank, got {value!r}")


def _check_rate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"SentryConfig: sample_rate must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"SentryConfig: sample_rate must be between 0 and 1, got {value!r}")


def _check_redact(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, Redaction):
        raise TypeError(f"SentryConfig: redact must be a Redaction, a bool or None, got {value!r}")


def _check_max_breadcrumbs(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    positive_int(instance, attribute, value)
    if value > _MAX_BREADCRUMBS:
        raise ValueError(
            f"SentryConfig: max_breadcrumbs must be <= {_MAX_BREADCRUMBS}, got {value!r}"
        )


def _to_types(value: Any) -> Any:
    """attrs converter: one exception class, or several, as a tuple."""
    if isinstance(value, type):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return tuple(value)
    return value


def _check_ignore(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or not all(
        isinstance(cls, type) and issubclass(cls, BaseException) for cls in value
    ):
        raise TypeError(
            f"SentryConfig: ignore must be exception classes (a class or a tuple), got {value!r}"
        )


@attrs.frozen(kw_only=True)
class SentryConfig:
    """Where and how the app's unexpected failures are reported: ``kernel.run(app,
    sentry=kernel.SentryConfig(dsn=..., environment="production", release="shop@1.4.2"))``.

    - ``dsn``: the project's DSN (a ``str`` or a `kernel.config.Secret`; kept as a Secret,
      never shown in a repr, a log or an error).
    - ``environment``, ``release``: as Sentry shows them; ``None`` leaves sentry-sdk's
      defaults (``SENTRY_ENVIRONMENT`` or ``production``; ``SENTRY_RELEASE`` or the git
      commit of the working directory).
    - ``sample_rate``: the share of failures sent (0 to 1).
    - ``redact``: the `kernel.Redaction` applied to everything sent; ``None`` (the default)
      follows the logs' policy (the latest `kernel.LogConfig`'s ``redact``, else
      ``Redaction()``); ``True``/``False`` as for `kernel.LogConfig`.
    - ``breadcrumbs``: the loguru level from which log records become breadcrumbs (``None``:
      no breadcrumbs); ``max_breadcrumbs`` how many are kept (the latest).
    - ``flush_timeout``: seconds (or a timedelta) the runtime's exit waits for queued events
      (a `kernel.config.Duration`: ``500ms``, ``2s`` from the environment).
    - ``ignore``: exception classes never reported, beyond the expected ones (see
      `kernel.observability._failures.EXPECTED`).
    """

    dsn: Secret = attrs.field(converter=_to_secret, validator=_check_dsn)
    environment: str | None = attrs.field(default=None, validator=_check_text)
    release: str | None = attrs.field(default=None, validator=_check_text)
    sample_rate: float = attrs.field(default=1.0, validator=_check_rate)
    redact: Redaction | None = attrs.field(
        default=None, converter=_to_redaction, validator=_check_redact
    )
    breadcrumbs: str | None = attrs.field(
        default="INFO", converter=_level_name, validator=optional_level("SentryConfig")
    )
    max_breadcrumbs: int = attrs.field(default=100, validator=_check_max_breadcrumbs)
    flush_timeout: Duration = attrs.field(
        default=2.0, converter=to_seconds, validator=non_negative_duration
    )
    ignore: tuple[type[BaseException], ...] = attrs.field(
        default=(), converter=_to_types, validator=_check_ignore
    )

    def policy(self) -> Redaction:
        """The redaction applied to what is sent, now."""
        return self.redact if self.redact is not None else active_redaction()


# ---------------------------------------------------------------------- redaction


def redact_event(event: Mapping[str, Any], policy: Redaction) -> dict[str, Any]:
    """A redacted copy of a (serialised) Sentry event: every field but those in `_KEPT`,
    and every context but ``trace`` (ids Sentry links events by)."""
    redacted: dict[str, Any] = {}
    for key, value in event.items():
        if key in _KEPT:
            redacted[key] = value
        elif key == "contexts" and isinstance(value, Mapping):
            redacted[key] = {
                name: context if name == "trace" else policy.redact(context)
                for name, context in value.items()
            }
        else:
            redacted[key] = policy.redact(value)
    return redacted


def _crumb_level(level: Any) -> str:
    name = getattr(level, "name", "INFO")
    if name in _LEVELS:
        return _LEVELS[name]
    no = getattr(level, "no", 20)
    return "fatal" if no >= 50 else "error" if no >= 40 else "warning" if no >= 30 else "info"


# ---------------------------------------------------------------------- the client


def _import_sdk() -> Any:
    try:
        import sentry_sdk
        import sentry_sdk.utils
    except ImportError as exc:
        raise ImportError(f"kernel.run(sentry=...) needs sentry-sdk: {SENTRY_EXTRA}") from exc
    return sentry_sdk


class ErrorTracking:
    """A runtime's Sentry client (a `kernel.observability._failures.Reporter`): builds each
    event from the exception, adds the tags, path and breadcrumbs, and queues it; redacts
    what the SDK is about to send (`before_send`, `before_breadcrumb`)."""

    def __init__(self, config: SentryConfig) -> None:
        self.config = config
        self.client: sentry_sdk.Client | None = None
        self._sdk: Any = None
        self._crumbs: deque[dict[str, Any]] = deque(maxlen=config.max_breadcrumbs)
        self._sink: int | None = None

    async def start(self) -> None:
        """Build the client (in a worker thread: sentry-sdk may run ``git`` for the
        release) and start recording breadcrumbs. No network I/O: events go out later,
        from sentry-sdk's own thread. Raises ImportError naming the extra without it."""
        sdk = _import_sdk()
        config = self.config
        options: dict[str, Any] = {
            "dsn": config.dsn.reveal(),
            "environment": config.environment,
            "release": config.release,
            "sample_rate": config.sample_rate,
            "max_breadcrumbs": config.max_breadcrumbs,
            "shutdown_timeout": config.flush_timeout,
            "default_integrations": False,
            "auto_enabling_integrations": False,
            "integrations": [],
            "include_local_variables": False,
            # The runtime's frames are not the app's: Sentry highlights the caller's code.
            "in_app_exclude": list(_RUNTIME_PACKAGES),
            "attach_stacktrace": False,
            "debug": False,
            "spotlight": False,
            "before_send": self.before_send,
            "before_breadcrumb": self.before_breadcrumb,
        }
        self.client = await trio.to_thread.run_sync(functools.partial(sdk.Client, **options))
        self._sdk = sdk
        if config.breadcrumbs is not None:
            self._sink = _loguru.add(
                self._record,
                level=config.breadcrumbs,
                format="{message}",
                backtrace=False,
                diagnose=False,
                colorize=False,
            )

    def report(self, error: BaseException, tags: Mapping[str, str], path: Sequence[str]) -> None:
        """Queue one event for ``error``, tagged with ``tags`` (each value at most 200
        characters, as Sentry takes them), with ``path`` and the breadcrumbs so far."""
        client = self.client
        if client is None:
            return
        event, hint = self._sdk.utils.event_from_exception(
            error,
            client_options=client.options,
            mechanism={"type": "trio_runner", "handled": False},
        )
        event["tags"] = {key: value[:200] for key, value in tags.items()}
        event["contexts"] = {"trio_runner": {"path": list(path)}}
        if self._crumbs:
            event["breadcrumbs"] = {"values": list(self._crumbs)}
        client.capture_event(event, hint=hint)

    def before_send(self, event: Any, hint: Any) -> Any:
        """sentry-sdk's ``before_send``: `redact_event` with the config's policy; the event
        is dropped (``None``) when that fails."""
        try:
            return redact_event(event, self.config.policy())
        except Exception as exc:
            kernel_logger(_SOURCE).warning(
                "error tracking: an event was dropped, it could not be redacted ({})",
                type(exc).__name__,
            )
            return None

    def before_breadcrumb(self, crumb: Any, hint: Any) -> Any:
        """sentry-sdk's ``before_breadcrumb``: the breadcrumb redacted (``None`` — not
        kept — when that fails)."""
        try:
            return self.config.policy().redact(crumb)
        except Exception:
            return None

    def _record(self, message: Message) -> None:
        """loguru sink: a record as a redacted breadcrumb. Never raises (loguru would print
        the record, unredacted, with the sink's error)."""
        try:
            record = message.record
            source = record["extra"].get("source") or record["name"] or "log"
            crumb: dict[str, Any] = {
                "type": "log",
                "category": str(source),
                "level": _crumb_level(record["level"]),
                "message": record["message"],
                "timestamp": record["time"],
            }
            data = record["extra"].get("data")
            if data is not None:
                crumb["data"] = data if isinstance(data, Mapping) else {"value": data}
            kept = self.before_breadcrumb(crumb, {"record": None})
            if kept is not None:
                self._crumbs.append(kept)
        except Exception:  # see the docstring
            pass

    async def aclose(self) -> None:
        """Stop recording breadcrumbs; send what is queued, waiting at most
        ``flush_timeout`` (in a worker thread, shielded from cancellation), then close."""
        if self._sink is not None:
            _loguru.remove(self._sink)
            self._sink = None
        client, self.client = self.client, None
        if client is None:
            return
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(client.close, self.config.flush_timeout)


@asynccontextmanager
async def track_errors(config: SentryConfig) -> AsyncIterator[Failures]:
    """The `Failures` of a runtime reporting to Sentry as ``config`` says, for as long as
    the block runs; the client is flushed and closed on the way out (see `ErrorTracking`)."""
    tracking = ErrorTracking(config)
    await tracking.start()
    try:
        yield Failures(tracking, ignore=config.ignore)
    finally:
        await tracking.aclose()
