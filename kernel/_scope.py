"""`Scope`: what a resource gets to own background work for exactly its own lifetime."""

from __future__ import annotations

import attrs
import trio

__all__ = ["Scope"]


@attrs.frozen
class Scope:
    """Handed to a resource that asks for ``scope``.

    ``nursery`` is a trio nursery opened just before the resource's init and cancelled when
    the resource is disposed, before its dispose code runs: start pollers, consumers and
    servers there (``scope.nursery.start_soon(...)`` or ``await scope.nursery.start(...)``).
    A task in it that crashes brings the runtime down with its error, as any trio child does.
    """

    id: str
    nursery: trio.Nursery
