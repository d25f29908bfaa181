"""`Fallback`: answer with a value, or a handler's result, when a call fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, Final, Generic, Literal, ParamSpec, TypeVar

import attrs

from resilience import _observe
from resilience._failures import ExceptionTypes, check_on, matcher
from resilience.validate import fail, optional_callable, optional_name

__all__ = ["Fallback"]

P = ParamSpec("P")
T = TypeVar("T")


class _Unset(Enum):
    UNSET = "unset"


_UNSET: Final = _Unset.UNSET


@attrs.define(eq=False, kw_only=True)
class Fallback(Generic[T]):
    """On a failure selected by ``on``, return ``value`` or ``await handler(exc, *args, **kwargs)``.

    Give exactly one of ``value`` and ``handler``. ``on`` is exception types or a predicate
    ``(exc) -> bool`` (default: every `Exception`). Other failures, and ``trio.Cancelled``,
    propagate.
    """

    value: T | Literal[_Unset.UNSET] = _UNSET
    handler: Callable[..., Awaitable[T]] | None = attrs.field(
        default=None, validator=optional_callable("an async callable (exc, *args, **kwargs)")
    )
    on: ExceptionTypes | Callable[[Exception], bool] = attrs.field(
        default=Exception, validator=check_on
    )
    name: str | None = attrs.field(default=None, validator=optional_name)

    _matches: Callable[[Exception], bool] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        has_value = self.value is not _UNSET
        if has_value == (self.handler is not None):
            fail(self, "value", "or handler must be given, and not both")
        self._matches = matcher(self.on)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)``; on a selected failure, return the fallback instead.

        A checkpoint whenever ``fn`` (or the handler) is one. Cancellation propagates.
        """
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            return await self.recover(exc, *args, **kwargs)

    async def recover(self, exc: Exception, /, *args: Any, **kwargs: Any) -> T:
        """The fallback for ``exc`` raised by a call with ``args``/``kwargs``.

        Re-raises ``exc`` when ``on`` does not select it. A checkpoint only if the handler is.
        """
        if not self._matches(exc):
            raise exc
        if _observe.active:
            _observe.emit("fallback.used", self.name, error=exc)
        if self.handler is not None:
            return await self.handler(exc, *args, **kwargs)
        return self.value  # type: ignore[return-value]
