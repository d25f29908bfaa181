"""`Timeout`: bound how long one call may take, with a trio cancel scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import attrs
import trio

from resilience import _observe
from resilience._errors import TimeoutExceeded
from resilience.validate import non_negative_duration, optional_name, to_seconds

__all__ = ["Timeout"]

P = ParamSpec("P")
T = TypeVar("T")


@attrs.define(eq=False)
class Timeout:
    """Cancel a call that runs longer than ``seconds`` and raise `TimeoutExceeded`.

    ``Timeout(2.5)`` or ``Timeout(timedelta(seconds=2.5))``; ``name=`` labels its events.
    """

    seconds: float = attrs.field(converter=to_seconds, validator=non_negative_duration)
    name: str | None = attrs.field(default=None, kw_only=True, validator=optional_name)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` inside a cancel scope with this deadline.

        A checkpoint whenever ``fn`` is one. At the deadline ``fn`` is cancelled (it sees
        ``trio.Cancelled`` at its next checkpoint) and `TimeoutExceeded` is raised here; a
        cancellation from an enclosing scope propagates unchanged.
        """
        with trio.CancelScope(deadline=trio.current_time() + self.seconds):
            return await fn(*args, **kwargs)
        # Only reached when this scope's deadline cancelled fn.
        if _observe.active:
            _observe.emit("timeout.exceeded", self.name, seconds=self.seconds)
        raise TimeoutExceeded(f"call did not finish within {self.seconds:g} s")
