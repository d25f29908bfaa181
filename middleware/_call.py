"""The call a middleware sees, and the protocol a middleware follows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs

__all__ = ["Call", "Middleware", "Next"]


@attrs.define(eq=False, init=False)
class Call:
    """One call travelling through a pipeline.

    ``target_id`` names the wrapped function (``module.qualname`` unless the wrapper was
    given another id); ``args`` and ``kwargs`` are what it will be called with; ``state``
    is a dict private to this call where middlewares share what they learn (``attempt``,
    ``cache_hit``, …). Use `replace` to change the arguments for the middlewares inside.
    """

    target_id: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: dict[str, Any]

    # Written by hand: one Call is built per call, and a literal {} beats attrs' factory call.
    def __init__(
        self,
        target_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        state: dict[str, Any] | None = None,
    ) -> None:
        self.target_id = target_id
        self.args = args
        self.kwargs = kwargs
        self.state = {} if state is None else state

    def replace(
        self, *, args: tuple[Any, ...] | None = None, kwargs: dict[str, Any] | None = None
    ) -> Call:
        """A copy with new ``args`` and/or ``kwargs``, sharing this call's ``state``."""
        return Call(
            self.target_id,
            self.args if args is None else tuple(args),
            self.kwargs if kwargs is None else dict(kwargs),
            self.state,
        )


#: What a middleware calls to continue: ``await next(call)`` runs the rest of the pipeline.
Next = Callable[[Call], Awaitable[Any]]


class Middleware(Protocol):
    """``async def __call__(self, call: Call, next: Next) -> Any``.

    A plain ``async def f(call, next)`` qualifies. It may act before and after
    ``await next(call)``, call ``next`` several times (a retry), not at all (a cache hit),
    or with ``call.replace(...)``.
    """

    def __call__(self, call: Call, next: Next, /) -> Awaitable[Any]: ...
