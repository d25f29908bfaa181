"""``kernel.redis.resource(id, store)``: a `resilience.redis.Store` as a kernel resource.

    store = shared.Store.from_url("redis://localhost:6379/0", on_unavailable="local")
    redis = kernel.redis.resource("redis", store)
    limiter = kernel.resource("payments.limit", deps={"store": redis})(...)

The resource opens the store when it starts (before its dependents) and closes it when it
is disposed (after them). The store lives in a task of the resource's own nursery, so it is
entered and left in one task, as its nursery and coredis's own require. Its health check is
a ``PING``: while Redis cannot be reached the check fails, and the app's health report is
``degraded`` (``unhealthy`` when the resource is tagged `kernel.tags.critical`).
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

from kernel._definitions import Resource, Tag, TagUse
from kernel._definitions import resource as kernel_resource
from kernel._errors import DefinitionError
from kernel._scope import Scope
from resilience.redis import Store

__all__ = ["resource"]


async def _answers(store: Store) -> None:
    """The health check: one ``PING`` (raises `rs.StoreUnavailable` when unreachable)."""
    await store.ping()


async def _hold(
    store: Store, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async with store:
        task_status.started()
        await trio.sleep_forever()


def resource(id: str, store: Store, *, tags: Iterable[Tag | TagUse] = ()) -> Resource[Store]:
    """A resource whose value is ``store``, open while the resource is up.

    Raises `kernel.DefinitionError` when ``store`` is not a ``resilience.redis.Store``.
    """
    if not isinstance(store, Store):
        raise DefinitionError(
            f"kernel.redis.resource {id!r}: store must be a resilience.redis.Store, got {store!r}"
        )

    async def redis_store(scope: Scope) -> Store:
        await scope.nursery.start(_hold, store)
        return store

    return kernel_resource(id, health=_answers, tags=tuple(tags))(redis_store)
