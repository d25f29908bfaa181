"""`redis` and `memory`: a lane as a kernel resource.

The resource starts after its store (a `kernel.redis.resource` it depends on, or an open
`Store` its caller passed) and relays its events at init: from then on emitting one of them
anywhere in the app writes to the stream instead of running hooks here. With ``consume=True``
its consumer runs in the resource's nursery, so it stops before the store closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import timedelta
from typing import Any, Final

from kernel._definitions import Event, Resource, Tag, TagUse
from kernel._definitions import resource as kernel_resource
from kernel._definitions import tag as kernel_tag
from kernel._errors import DefinitionError, KernelError
from kernel._scope import Scope
from kernel.lanes._broker import Broker, MemoryBroker
from kernel.lanes._consumer import READ_BLOCK, consume
from kernel.lanes._lane import Lane
from kernel.lanes._options import FailureMode, LaneOptions
from kernel.lanes._redis import RedisBroker
from kernel.tags import external_io
from resilience.redis import Store

__all__ = ["lane_tag", "memory", "redis"]

#: Carried by every lane resource, with its `LaneOptions` as the tag's config:
#: ``rt.find(kernel.lanes.lane_tag)`` lists the lanes of an app (a console, a doctor).
lane_tag: Final[Tag] = kernel_tag("kernel.lanes.lane")

Events = Event | Sequence[Event]
Seconds = float | timedelta


async def _health(lane: Lane) -> None:
    await lane.check()


async def _serve(scope: Scope, options: LaneOptions, broker: Broker, block: float) -> Lane:
    runtime = scope.runtime
    if runtime is None:
        raise KernelError(f"lane {options.id!r} needs a running kernel.Runtime")
    lane = Lane(options, broker, runtime)
    lane.open()
    for event in options.events:
        runtime.relay(event, lane.publish)
    if options.consume:
        scope.nursery.start_soon(consume, lane, block, name=f"lane {options.id} consumer")
    return lane


def redis(
    id: str,
    *,
    store: Resource | Store,
    events: Events,
    group: str,
    consume: bool = True,
    max_attempts: int = 5,
    retry_delay: Seconds = 1.0,
    retry_backoff: float = 1.0,
    max_retry_delay: Seconds = 60.0,
    claim_idle: Seconds = 30.0,
    secret: bytes | None = None,
    batch: int = 64,
    maxlen: int | None = 100_000,
    emit_wait: Seconds = 0.0,
    failure_mode: FailureMode = "fail_fast",
    max_pending: int | None = None,
    max_pending_age: Seconds | None = None,
    stream: str | None = None,
    source: str | None = None,
    tags: Iterable[Tag | TagUse] = (),
) -> Resource:
    """A lane on a Redis stream: a resource whose value is a `Lane`.

    - ``store``: a ``kernel.redis.resource`` (the lane depends on it) or an open
      ``resilience.redis.Store``. ``events``: the events it carries (registered by the app).
    - ``group``: the consumer group; ``consume``: whether this process consumes (one
      consumer named by host, pid and a random part).
    - ``max_attempts``: runs in total before the entry goes to ``{stream}:dead``;
      ``retry_delay`` before the second run, times ``retry_backoff`` for each further one,
      at most ``max_retry_delay``. ``claim_idle``: seconds an entry may sit on a consumer
      before another takes it (a dead consumer's entries).
    - ``secret`` (bytes, >= 16): every envelope carries an HMAC-SHA256; an entry that fails
      verification (or decoding) is dead-lettered at once and never runs.
    - ``batch``: deliveries run at once (and entries read per round trip).
    - ``maxlen``: the stream is trimmed to about that many entries (``MAXLEN ~``); ``None``
      never trims. ``emit_wait``: seconds an emit keeps trying while Redis is unreachable
      before it raises `LaneUnavailable` (0: at once).
    - ``failure_mode``: how the hooks of one delivery run (as ``rt.emit``'s).
    - ``max_pending`` / ``max_pending_age``: past either, the health check reports degraded.
    - ``stream``: the stream's key (default ``{prefix}:lane:{{id}}:stream``); ``source``: the
      envelope's source when the emitter has no id (default host:pid).
    """
    options = LaneOptions(
        id=id,
        events=events,
        group=group,
        consume=consume,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        retry_backoff=retry_backoff,
        max_retry_delay=max_retry_delay,
        claim_idle=claim_idle,
        secret=secret,
        batch=batch,
        maxlen=maxlen,
        emit_wait=emit_wait,
        failure_mode=failure_mode,
        max_pending=max_pending,
        max_pending_age=max_pending_age,
        stream=stream,
        source=source,
    )

    def broker(store: Store) -> tuple[RedisBroker, float]:
        key = options.stream or store.key("lane", options.id, "stream")
        block = min(READ_BLOCK, store.op_timeout / 2)
        return RedisBroker(store, key, options.group, options.maxlen), block

    uses = (lane_tag.with_config(options), external_io)
    if isinstance(store, Store):
        fixed = store

        async def lane_on_store(scope: Scope) -> AsyncIterator[Lane]:
            lane = await _serve(scope, options, *broker(fixed))
            try:
                yield lane
            finally:
                lane.close()

        return kernel_resource(id, health=_health, tags=(*uses, *tags))(lane_on_store)
    if isinstance(store, Resource):

        async def lane(scope: Scope, store: Any) -> AsyncIterator[Lane]:
            if not isinstance(store, Store):
                raise TypeError(
                    f"lane {id!r}: its store resource's value must be a resilience.redis."
                    f"Store, got {store!r}"
                )
            value = await _serve(scope, options, *broker(store))
            try:
                yield value
            finally:
                value.close()

        return kernel_resource(id, deps={"store": store}, health=_health, tags=(*uses, *tags))(lane)
    raise DefinitionError(
        f"lane {id!r}: store must be a kernel.redis.resource or a resilience.redis.Store, "
        f"got {store!r}"
    )


def memory(
    id: str,
    *,
    events: Events,
    group: str = "default",
    broker: MemoryBroker | None = None,
    consume: bool = True,
    max_attempts: int = 5,
    retry_delay: Seconds = 1.0,
    retry_backoff: float = 1.0,
    max_retry_delay: Seconds = 60.0,
    claim_idle: Seconds = 30.0,
    secret: bytes | None = None,
    batch: int = 64,
    maxlen: int | None = 100_000,
    failure_mode: FailureMode = "fail_fast",
    max_pending: int | None = None,
    max_pending_age: Seconds | None = None,
    source: str | None = None,
    tags: Iterable[Tag | TagUse] = (),
) -> Resource:
    """The contract of `redis` in one process (for tests): the stream is a `MemoryBroker`,
    ``broker`` when given (share one between apps of the process), else a new one each time
    the resource starts. Times come from ``trio.current_time()``, so a MockClock drives the
    retries and reclaims."""
    options = LaneOptions(
        id=id,
        events=events,
        group=group,
        consume=consume,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        retry_backoff=retry_backoff,
        max_retry_delay=max_retry_delay,
        claim_idle=claim_idle,
        secret=secret,
        batch=batch,
        maxlen=maxlen,
        failure_mode=failure_mode,
        max_pending=max_pending,
        max_pending_age=max_pending_age,
        source=source,
    )
    if broker is not None and not isinstance(broker, MemoryBroker):
        raise TypeError(f"kernel.lanes: broker must be a MemoryBroker, got {broker!r}")

    async def memory_lane(scope: Scope) -> AsyncIterator[Lane]:
        value = await _serve(scope, options, broker or MemoryBroker(options.maxlen), READ_BLOCK)
        try:
            yield value
        finally:
            value.close()

    uses = (lane_tag.with_config(options),)
    return kernel_resource(id, health=_health, tags=(*uses, *tags))(memory_lane)
