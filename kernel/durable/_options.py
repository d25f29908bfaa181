"""`EngineOptions`: the engine resource's settings, checked when it is declared."""

from __future__ import annotations

from typing import Any

import attrs

from resilience import validate

__all__ = ["EngineOptions"]


_OWNER = "kernel.durable.engine"


def _duration(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    validate.seconds(value, owner=_OWNER, name=attribute.alias or attribute.name)


def _count(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    validate.count(value, owner=_OWNER, name=attribute.alias or attribute.name)


def _flag(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(
            f"{_OWNER}: {attribute.alias or attribute.name} must be a bool, got {value!r}"
        )


@attrs.frozen
class EngineOptions:
    """How an engine works (see `kernel.durable.engine` for each option)."""

    worker: bool = attrs.field(default=True, validator=_flag)
    polling_interval: float = attrs.field(
        default=1.0, converter=validate.to_seconds, validator=_duration
    )
    recover_on_startup: bool = attrs.field(default=True, validator=_flag)
    max_attempts: int = attrs.field(default=3, validator=_count)
    claim_ttl: float = attrs.field(default=30.0, converter=validate.to_seconds, validator=_duration)
    audit: bool = attrs.field(default=True, validator=_flag)
    #: ``engine(max_concurrent=...)``: executions this worker runs at once.
    concurrency: int = attrs.field(default=16, validator=_count, alias="max_concurrent")
