"""Backoff strategies for `resilience.Retry`.

Each strategy is a tenacity ``wait_base``: it computes the delay before the next attempt from
tenacity's ``RetryCallState`` (``attempt_number`` is the number of the attempt that just
failed, starting at 1), so it works with tenacity itself and composes with tenacity's own
waits (``rs.backoff.constant(1) + tenacity.wait_random(0, 1)``).

Bounds, for attempt ``n`` (1-based):

- ``constant(s)``: exactly ``s``.
- ``linear(initial, step, maximum)``: ``min(maximum, initial + step * (n - 1))``.
- ``exponential(initial, maximum, multiplier, jitter)``, with
  ``base = min(maximum, initial * multiplier ** (n - 1))``:

  - ``jitter=None``: ``base``;
  - ``"full"``: uniform in ``[0, base]``;
  - ``"equal"``: uniform in ``[base / 2, base]``;
  - ``"decorrelated"``: uniform in ``[initial, min(maximum, 3 * previous)]`` where ``previous`` is
    the previous delay (``initial`` before the first), so it always lies in ``[initial, maximum]``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
from tenacity.wait import wait_base

from resilience.validate import fail, non_negative_duration, to_seconds

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["Constant", "Exponential", "Jitter", "Linear", "constant", "exponential", "linear"]

Jitter = Literal["full", "equal", "decorrelated"] | None
JITTERS: Final = ("full", "equal", "decorrelated", None)

_random = random.Random()


@attrs.define(eq=False)
class Constant(wait_base):
    """Wait the same number of seconds before every retry."""

    seconds: float = attrs.field(converter=to_seconds, validator=non_negative_duration)

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.seconds


@attrs.define(eq=False, kw_only=True)
class Linear(wait_base):
    """Wait ``initial``, then ``step`` seconds more after every failure, up to ``maximum``."""

    initial: float = attrs.field(converter=to_seconds, validator=non_negative_duration)
    step: float = attrs.field(converter=to_seconds, validator=non_negative_duration)
    maximum: float = attrs.field(converter=to_seconds, validator=non_negative_duration)

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            fail(self, "maximum", f"must be >= initial ({self.initial}), got {self.maximum}")

    def __call__(self, retry_state: RetryCallState) -> float:
        return min(self.maximum, self.initial + self.step * (retry_state.attempt_number - 1))


def _check_multiplier(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(instance, attribute.name, f"must be a number, got {value!r}", TypeError)
    if not value >= 1:
        fail(instance, attribute.name, f"must be >= 1, got {value!r}")


def _check_jitter(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in JITTERS:
        fail(instance, attribute.name, f"must be one of {JITTERS}, got {value!r}")


@attrs.define(eq=False, kw_only=True)
class Exponential(wait_base):
    """Exponential backoff capped at ``maximum``, with optional jitter (see the module doc)."""

    initial: float = attrs.field(default=0.1, converter=to_seconds, validator=non_negative_duration)
    maximum: float = attrs.field(
        default=10.0, converter=to_seconds, validator=non_negative_duration
    )
    multiplier: float = attrs.field(default=2.0, validator=_check_multiplier)
    jitter: Jitter = attrs.field(default="full", validator=_check_jitter)

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            fail(self, "maximum", f"must be >= initial ({self.initial}), got {self.maximum}")

    def base(self, attempt_number: int) -> float:
        """The delay without jitter after failed attempt ``attempt_number`` (1-based)."""
        try:
            return min(self.maximum, self.initial * self.multiplier ** (attempt_number - 1))
        except OverflowError:
            return self.maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        jitter = self.jitter
        if jitter == "decorrelated":
            previous = retry_state.upcoming_sleep or self.initial
            high = min(self.maximum, 3.0 * previous)
            return _random.uniform(self.initial, max(self.initial, high))
        base = self.base(retry_state.attempt_number)
        if jitter is None:
            return base
        if jitter == "full":
            return _random.uniform(0.0, base)
        return base / 2.0 + _random.uniform(0.0, base / 2.0)


def constant(seconds: float) -> Constant:
    """Wait ``seconds`` (float or timedelta) before every retry."""
    return Constant(seconds)


def linear(initial: float, step: float, maximum: float) -> Linear:
    """Wait ``initial``, growing by ``step`` per failure, capped at ``maximum``."""
    return Linear(initial=initial, step=step, maximum=maximum)


def exponential(
    initial: float = 0.1,
    maximum: float = 10.0,
    multiplier: float = 2.0,
    jitter: Jitter = "full",
) -> Exponential:
    """Exponential backoff: ``initial * multiplier ** (n - 1)`` capped at ``maximum``, jittered.

    ``jitter`` is ``"full"`` (default), ``"equal"``, ``"decorrelated"`` or ``None``.
    """
    return Exponential(initial=initial, maximum=maximum, multiplier=multiplier, jitter=jitter)
