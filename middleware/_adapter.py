"""`Adapter`: a middleware factory that builds a resilience primitive per wrapped function.

``mw.circuit_breaker(failure_threshold=3)`` validates its options at once (the error names
the argument) and builds a new breaker, named after the function, each time a pipeline
wraps a function; ``mw.circuit_breaker(shared_breaker)`` hands the same one to every
function it wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs

from middleware._call import Middleware
from middleware._pipeline import Bound

__all__ = ["Adapter", "adapter"]

S = TypeVar("S")


@attrs.frozen
class Adapter(Generic[S]):
    """Builds, per wrapped function, a primitive (``build(target_id)``) and the middleware
    around it (``middleware(primitive)``); exposes the primitive as ``expose_as``."""

    kind: str
    build: Callable[[str], S]
    middleware: Callable[[S], Middleware]
    expose_as: str | None = None

    def bind(self, target_id: str) -> Bound:
        """The middleware, and its exposed primitive, for the function ``target_id``."""
        primitive = self.build(target_id)
        exposes: dict[str, object] = {}
        if self.expose_as is not None:
            exposes[self.expose_as] = primitive
        return Bound(self.middleware(primitive), exposes)


def adapter(
    kind: str,
    cls: type[S],
    shared: S | None,
    options: dict[str, Any],
    middleware: Callable[[S], Middleware],
    expose_as: str | None = None,
    *,
    fleet: type[Any] | None = None,
) -> Adapter[S]:
    """An `Adapter` for ``mw.<kind>``: share ``shared`` if given, else build ``cls(**options)``
    per function, with ``name`` defaulting to the function's id. ``fleet`` is the
    ``resilience.redis`` twin of ``cls``, which may be shared too (never built here: it
    needs a store)."""
    if shared is not None:
        if not isinstance(shared, cls) and not (fleet is not None and isinstance(shared, fleet)):
            twin = "" if fleet is None else f" or a resilience.redis.{fleet.__name__}"
            raise TypeError(
                f"mw.{kind}: expected an rs.{cls.__name__}{twin} to share or keyword options, "
                f"got {shared!r}"
            )
        if options:
            raise TypeError(
                f"mw.{kind}: pass an rs.{cls.__name__} to share, or options "
                f"({', '.join(sorted(options))}), not both"
            )
        instance = shared
        return Adapter(kind, lambda target_id: instance, middleware, expose_as)
    cls(**options)  # validate now, where the pipeline is written

    def build(target_id: str) -> S:
        named = options if options.get("name") is not None else {**options, "name": target_id}
        return cls(**named)

    return Adapter(kind, build, middleware, expose_as)
