"""The consumer side of a lane: one consumer per process in the lane's group.

`consume` waits until the app is ready (hooks need their deps), then loops: take up to the
free slots (``batch`` deliveries run at once) from entries idle ``claim_idle`` on a consumer
that died (``XAUTOCLAIM``, every ``claim_idle / 2`` at most) or, when there are none, new
entries (``XREADGROUP``, blocking briefly), and run each in a task of its own:

- the envelope is checked and decoded (`kernel.lanes._envelope`) and the payload structured
  into the event's type; any failure buries the entry at once (``attempts == 0``), no hook runs;
- an entry delivered more than ``max_attempts`` times already (its consumers kept dying) is
  buried without running;
- the hooks run through ``Runtime.deliver`` (a tracked call: the drain waits for it), while
  a heartbeat keeps the entry from going idle (``XCLAIM ... JUSTID`` every ``claim_idle /
  3``: a long run is not taken for a dead consumer's); success
  acknowledges the entry; a failure waits the retry delay, takes the entry again (``XCLAIM``,
  which counts the delivery) and runs again, until ``max_attempts`` runs have failed: then it
  is buried with the error and the attempt count.

Shutdown: once intake stops the loop reads nothing more and no new run starts (`ShuttingDown`
from ``deliver``); what was read and not run stays pending, for another consumer to reclaim.
Redis unreachable (or refusing a command): the loop waits and tries again (logged once per
outage); a delivery whose acknowledgement could not be sent stays pending and is delivered
again (at least once). Neither crashes the app.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import trio
from loguru import logger

from kernel._bus import Delivery
from kernel._errors import ConfigError
from kernel._shutdown import ShuttingDown
from kernel._structure import structure
from kernel.exposure import request_id
from kernel.lanes._broker import Entry, envelope_of
from kernel.lanes._envelope import BadEnvelope, Envelope, text_fields, unseal
from kernel.lanes._lane import Lane
from resilience import StoreUnavailable

__all__ = ["consume"]

#: Seconds a read blocks waiting for new entries (at most: a Redis lane also stays under
#: half its store's op_timeout). Intake stopping is noticed within this.
READ_BLOCK = 0.5
#: The longest pause between two tries while the stream cannot be reached.
MAX_PAUSE = 1.0


class _Slots:
    """How many more deliveries may start (``batch`` at most run at once)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._freed = trio.Event()

    def take(self) -> None:
        self.free -= 1

    def give(self) -> None:
        self.free += 1
        self._freed.set()

    async def wait(self) -> None:
        while not self.free:
            self._freed = trio.Event()
            await self._freed.wait()


async def consume(lane: Lane, block: float = READ_BLOCK) -> None:
    """Run the lane's consumer until intake stops (or the lane's nursery is cancelled)."""
    await lane.runtime.wait_ready()
    async with trio.open_nursery() as beating:
        beating.start_soon(_heartbeat, lane)
        async with trio.open_nursery() as nursery:
            await _loop(lane, nursery, block)
        beating.cancel_scope.cancel()


async def _heartbeat(lane: Lane) -> None:
    """Every ``claim_idle / 3``: keep the entries whose hooks run here from going idle, so
    that a long run of a live consumer is not reclaimed (only a dead consumer's are)."""
    interval = max(0.02, lane.options.claim_idle / 3)
    while True:
        await trio.sleep(interval)
        if lane.running:
            with contextlib.suppress(StoreUnavailable):  # the loop reports outages
                await lane.broker.touch(lane.consumer, sorted(lane.running))


async def _loop(lane: Lane, nursery: trio.Nursery, block: float) -> None:
    runtime, broker, options = lane.runtime, lane.broker, lane.options
    log = logger.bind(source=lane.id)
    slots = _Slots(options.batch)
    reclaim_every = max(0.05, min(options.claim_idle / 2, 5.0))
    next_reclaim = trio.current_time()
    prepared, pause, down = False, 0.05, False
    while not runtime.shutting_down and not lane.closed:
        await slots.wait()
        try:
            if not prepared:
                await broker.prepare()
                prepared = True
            entries: list[Entry] = []
            if trio.current_time() >= next_reclaim:
                entries = await broker.reclaim(lane.consumer, options.claim_idle, slots.free)
                # (one of ours whose heartbeat was late: it runs here already)
                entries = [entry for entry in entries if entry.id not in lane.running]
                next_reclaim = trio.current_time() + reclaim_every
            if not entries:
                entries = await broker.read(lane.consumer, slots.free, block)
        except Exception as exc:  # unreachable, or Redis refused (a key of another type)
            if not down:
                log.opt(exception=not isinstance(exc, StoreUnavailable)).warning(
                    "lane {!r}: cannot read the stream, retrying: {}", lane.id, exc
                )
                down = True
            await trio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
            continue
        if down:
            log.info("lane {!r}: reading the stream again", lane.id)
            down, pause = False, 0.05
        for entry in entries:
            slots.take()
            nursery.start_soon(_handle, lane, entry, slots)


async def _handle(lane: Lane, entry: Entry, slots: _Slots) -> None:
    try:
        await _deliver(lane, entry)
    except Exception as exc:  # unreachable, or Redis refused a command
        # Left pending: another consumer (or this one) reclaims it after claim_idle.
        logger.bind(source=lane.id).opt(exception=not isinstance(exc, StoreUnavailable)).warning(
            "lane {!r}: entry {} left pending: {}: {}",
            lane.id,
            entry.id,
            type(exc).__name__,
            exc,
        )
    finally:
        slots.give()


def _decode(lane: Lane, fields: Mapping[str, str]) -> tuple[Envelope, Any]:
    envelope = unseal(fields, lane.options.secret)
    event = lane.options.event(envelope.event)
    if event is None:
        raise BadEnvelope(f"event {envelope.event!r} is not carried by lane {lane.id!r}")
    payload = envelope.payload
    if event.payload is not None:
        try:
            payload = structure(payload, event.payload, owner=f"event {event.id!r}", path="payload")
        except ConfigError as exc:
            raise BadEnvelope(str(exc)) from None
    return envelope, payload


async def _deliver(lane: Lane, entry: Entry) -> None:
    options, counters = lane.options, lane.counters
    try:
        fields = text_fields(entry.fields)
        envelope, payload = _decode(lane, fields)
    except BadEnvelope as exc:
        await _bury(lane, entry, None, f"rejected: {exc}", 0, rejected=True)
        return
    event = options.event(envelope.event)
    assert event is not None
    attempt = entry.attempt
    if attempt > options.max_attempts:
        error = f"delivered {attempt - 1} times without an outcome (its consumers stopped)"
        await _bury(lane, entry, envelope, error, attempt - 1)
        return
    while True:
        started = time.time()
        counters.in_flight += 1
        lane.running.add(entry.id)
        try:
            with _context(envelope):
                await lane.runtime.deliver(
                    event,
                    payload,
                    delivery=Delivery(entry.id, attempt),
                    source=envelope.source,
                    failure_mode=options.failure_mode,
                )
        except ShuttingDown:
            return  # not run, or cancelled at the drain deadline: left pending
        except Exception as exc:
            if attempt >= options.max_attempts:
                await _bury(lane, entry, envelope, _describe(exc), attempt)
                return
            counters.retried += 1
            wait = options.retry_wait(attempt)
            await trio.sleep(wait)
            if lane.runtime.shutting_down or lane.closed:
                return
            # Taken again only if nobody reclaimed it meanwhile (idle since our run).
            if not await lane.broker.claim(lane.consumer, entry.id, wait * 0.9):
                return
            attempt += 1
            continue
        finally:
            counters.in_flight -= 1
            lane.running.discard(entry.id)
        await lane.broker.ack(entry.id)
        counters.delivered += 1
        latency = started - envelope.at
        if math.isfinite(latency):
            counters.latency.add(max(latency, 1e-9))
        return


def _describe(exc: Exception) -> str:
    if isinstance(exc, BaseExceptionGroup):
        inner = "; ".join(_describe(e) for e in exc.exceptions if isinstance(e, Exception))
        return f"{exc.message}: {inner}"
    return f"{type(exc).__name__}: {exc}"


def _lossy(raw: Mapping[Any, Any]) -> dict[str, str]:
    def text(value: Any) -> str:
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

    return {text(key): text(value) for key, value in raw.items()}


async def _bury(
    lane: Lane,
    entry: Entry,
    envelope: Envelope | None,
    error: str,
    attempts: int,
    *,
    rejected: bool = False,
) -> None:
    fields = _lossy(entry.fields)
    record = {
        "message_id": entry.id,
        "event": fields.get("event", ""),
        "payload": fields.get("payload", ""),
        "error": error[:4000],
        "attempts": str(attempts),
        "dead_at": repr(time.time()),
        "emission_id": "" if envelope is None else envelope.id,
        "envelope": envelope_of(fields),
    }
    if await lane.broker.bury(entry.id, record):
        lane.counters.dead_lettered += 1
        lane.counters.rejected += rejected
        logger.bind(source=lane.id).warning(
            "lane {!r}: entry {} dead-lettered after {} run(s): {}",
            lane.id,
            entry.id,
            attempts,
            error,
        )


@contextmanager
def _context(envelope: Envelope) -> Iterator[None]:
    """The emitter's request id and trace context around the hooks."""
    token = request_id.set(envelope.request_id)
    otel_token = None
    if envelope.traceparent and "opentelemetry.trace" in sys.modules:
        from opentelemetry import context, propagate

        otel_token = context.attach(propagate.extract({"traceparent": envelope.traceparent}))
    try:
        yield
    finally:
        if otel_token is not None:
            from opentelemetry import context

            context.detach(otel_token)
        request_id.reset(token)
