"""`EngineOptions`: the engine resource's settings, checked when it is declared."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["EngineOptions"]


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"kernel.durable.engine: {attribute.name} must be > 0, got {value!r}")


def _count(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"kernel.durable.engine: {attribute.name} must be an int >= 1, got {value!r}"
        )


def _flag(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"kernel.durable.engine: {attribute.name} must be a bool, got {value!r}")


@attrs.frozen
class EngineOptions:
    """How an engine works (see `kernel.durable.engine` for each option)."""

    worker: bool = attrs.field(default=True, validator=_flag)
    polling_interval: float = attrs.field(default=1.0, validator=_positive)
    recover_on_startup: bool = attrs.field(default=True, validator=_flag)
    max_attempts: int = attrs.field(default=3, validator=_count)
    claim_ttl: float = attrs.field(default=30.0, validator=_positive)
    audit: bool = attrs.field(default=True, validator=_flag)
    concurrency: int = attrs.field(default=16, validator=_count)
