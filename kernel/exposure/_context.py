"""What a call made through the HTTP exposure carries into the tasks and hooks it runs.

Both are context variables: the exposure sets them around the task or the emission, and
every call that work makes in the same context sees them (a remote call it makes sends
`request_id` on). Neither this module nor its users import hypercorn, Starlette or httpx.
"""

from __future__ import annotations

import itertools
import os
from contextvars import ContextVar
from typing import Any

__all__ = ["new_request_id", "principal", "request_id"]

#: The request id sent with remote calls made in this context (``None``: a new one per call).
#: An HTTP exposure handling a request sets it, so that the calls it makes carry the id.
request_id: ContextVar[str | None] = ContextVar("trio_runner_request_id", default=None)

#: Who made the current call: what the exposure's ``auth`` returned for its token (``None``
#: for an anonymous exposure, or outside an HTTP call). Tasks and hooks run by the call read
#: it with ``kernel.exposure.principal.get()``.
principal: ContextVar[Any] = ContextVar("kernel.exposure.principal", default=None)


class _Ids:
    """Request ids: 32 hex digits (a uuid4 hex's shape), a random 64-bit prefix per process
    then a counter: unique without a system call per request (``uuid4`` reads
    ``os.urandom``). Ids are not secrets."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


#: A new request id: ``new_request_id()``.
new_request_id = _Ids()
