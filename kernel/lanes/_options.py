"""`LaneOptions`: what a lane is told, validated once, each bad value named.

Durations are seconds as ``float`` (a ``datetime.timedelta`` is accepted too). A wrong type
raises `TypeError`, a value out of range `ValueError`, each naming the option (the checks
of `resilience.validate`, as everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs

from kernel._definitions import Event
from resilience import validate

__all__ = ["FailureMode", "LaneOptions"]

FailureMode = Literal["fail_fast", "aggregate"]


def _fail(name: str, message: str, exc: type[Exception] = ValueError) -> None:
    raise exc(f"LaneOptions: {name} {message}")


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    validate.positive_duration(instance, attribute, value)
    validate.finite(instance, attribute, value)


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    validate.non_negative_duration(instance, attribute, value)
    validate.finite(instance, attribute, value)


def _optional_positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _positive(instance, attribute, value)


def _count(minimum: int, *, optional: bool = False) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        validate.count(value, owner="LaneOptions", name=attribute.name, minimum=minimum)

    return check


def _events(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value:
        _fail("events", "must name at least one event")
    for event in value:
        if not isinstance(event, Event):
            _fail("events", f"must be kernel.event definitions, got {event!r}", TypeError)
    ids = [event.id for event in value]
    if len(set(ids)) != len(ids):
        _fail("events", f"names an event twice: {ids!r}")


def _to_events(value: Any) -> Any:
    if isinstance(value, Event):
        return (value,)
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, str):
        return tuple(value)
    return value


def _secret(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, bytes):
        _fail("secret", f"must be bytes (or None), got {type(value).__name__}", TypeError)
    if len(value) < 16:
        _fail("secret", f"must be at least 16 bytes long, got {len(value)}")


def _text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        _fail(attribute.name, f"must be a str, got {value!r}", TypeError)
    if not value or any(c.isspace() for c in value):
        _fail(attribute.name, f"must be non-empty, without spaces, got {value!r}")


def _optional_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _text(instance, attribute, value)


def _mode(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("fail_fast", "aggregate"):
        _fail("failure_mode", f"must be 'fail_fast' or 'aggregate', got {value!r}")


@attrs.frozen(kw_only=True)
class LaneOptions:
    """Everything a lane is told (see `kernel.lanes.redis` for each option)."""

    id: str = attrs.field(validator=_text)
    events: tuple[Event, ...] = attrs.field(converter=_to_events, validator=_events)
    group: str = attrs.field(validator=_text)
    consume: bool = attrs.field(default=True, validator=validate.is_bool)
    max_attempts: int = attrs.field(default=5, validator=_count(1))
    retry_delay: float = attrs.field(
        default=1.0, converter=validate.to_seconds, validator=_non_negative
    )
    retry_backoff: float = attrs.field(default=1.0, validator=_positive)
    max_retry_delay: float = attrs.field(
        default=60.0, converter=validate.to_seconds, validator=_non_negative
    )
    claim_idle: float = attrs.field(
        default=30.0, converter=validate.to_seconds, validator=_positive
    )
    secret: bytes | None = attrs.field(default=None, validator=_secret, repr=False)
    batch: int = attrs.field(default=64, validator=_count(1))
    maxlen: int | None = attrs.field(default=100_000, validator=_count(1, optional=True))
    emit_wait: float = attrs.field(
        default=0.0, converter=validate.to_seconds, validator=_non_negative
    )
    failure_mode: FailureMode = attrs.field(default="fail_fast", validator=_mode)
    max_pending: int | None = attrs.field(default=None, validator=_count(0, optional=True))
    max_pending_age: float | None = attrs.field(
        default=None, converter=validate.to_seconds, validator=_optional_positive
    )
    stream: str | None = attrs.field(default=None, validator=_optional_text)
    source: str | None = attrs.field(default=None, validator=_optional_text)

    def retry_wait(self, attempt: int) -> float:
        """Seconds to wait before the run after ``attempt`` (1 for the first run)."""
        delay = self.retry_delay * self.retry_backoff ** (attempt - 1)
        return min(delay, max(self.max_retry_delay, self.retry_delay))

    def event(self, event_id: str) -> Event | None:
        """The lane's event of that id, if it carries one."""
        for event in self.events:
            if event.id == event_id:
                return event
        return None
