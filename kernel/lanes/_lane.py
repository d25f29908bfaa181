"""`Lane`: a lane's value, what the app sees (``rt.resource(lane)``).

The producer side is `Lane.publish`, which the runtime awaits in place of the hooks of every
event the lane carries (``Runtime.relay``); operations and snapshots are here too. The
consumer side is `kernel.lanes._consumer`.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
import uuid
from typing import Any

import attrs
import trio
from loguru import logger

from kernel._definitions import Event
from kernel._host import Host
from kernel._structure import converter
from kernel.exposure import request_id
from kernel.lanes._broker import Broker
from kernel.lanes._envelope import seal
from kernel.lanes._errors import LaneUnavailable
from kernel.lanes._metrics import LIVE
from kernel.lanes._options import LaneOptions
from kernel.lanes._stats import Counters, DeadLetter, LaneStats, LaneStatus
from resilience import StoreUnavailable

__all__ = ["Lane", "consumer_name", "dead_letter_of"]

#: The longest pause between two tries of an emit waiting for the stream (``emit_wait``).
_MAX_PAUSE = 1.0


def consumer_name() -> str:
    """This process's consumer name: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _traceparent() -> str | None:
    if "opentelemetry.trace" not in sys.modules:  # no span can be current without it
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


@attrs.define(eq=False)
class Lane:
    """A running lane (see `kernel.lanes.redis`).

    Public reads for operators and consoles: `stats` (no I/O), `status`, `pending`,
    `dead_letters`; the one write: `replay`.
    """

    options: LaneOptions
    broker: Broker = attrs.field(repr=False)
    runtime: Host = attrs.field(repr=False)
    #: The name of this process's consumer in the group.
    consumer: str = attrs.field(factory=consumer_name)
    counters: Counters = attrs.field(init=False)
    closed: bool = attrs.field(init=False, default=False)
    #: The envelope's ``source`` when the emitter has no id: the lane's ``source`` option,
    #: else this process's host and pid.
    source: str = attrs.field(init=False)
    #: Ids of the entries whose hooks run in this process now.
    running: set[str] = attrs.field(init=False, factory=set, repr=False)
    #: The latest `status` (``None`` before the first).
    last_status: LaneStatus | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self.counters = Counters(self.options.id)
        self.source = self.options.source or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def id(self) -> str:
        """The lane's resource id."""
        return self.options.id

    def open(self) -> None:
        """The lane runs: it shows in the process's metrics."""
        LIVE.add(self)

    def close(self) -> None:
        """The lane stopped: emits raise `LaneUnavailable`, the consumer stops, the metrics
        forget it."""
        self.closed = True
        LIVE.discard(self)

    # ------------------------------------------------------------------ producer

    def envelope(self, event: Event, payload: Any, source: str | None) -> dict[str, str]:
        """The stream entry of one emission (raises `TypeError` when the payload is not
        JSON data)."""
        try:
            payload_json = json.dumps(
                converter.unstructure(payload), separators=(",", ":"), allow_nan=False
            )
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"lane {self.id!r}: the payload of event {event.id!r} is not JSON data: {exc}"
            ) from exc
        return seal(
            id=uuid.uuid4().hex,
            event=event.id,
            payload_json=payload_json,
            at=time.time(),
            source=source or self.source,
            traceparent=_traceparent(),
            request_id=request_id.get(),
            secret=self.options.secret,
        )

    async def publish(self, event: Event, payload: Any, source: str | None) -> None:
        """Append one emission to the stream; return once the stream has it.

        ``payload`` was validated already (the bus did). Raises `TypeError` when it is not
        JSON data, `LaneUnavailable` when it was not written (the stream unreachable for
        longer than ``emit_wait``, or the lane stopped): never returns for an entry that
        was not written. A checkpoint; cancellation abandons the write (it may or may not
        have happened).
        """
        fields = self.envelope(event, payload, source)
        deadline = trio.current_time() + self.options.emit_wait
        pause = 0.05
        while True:
            if self.closed:
                raise LaneUnavailable(f"lane {self.id!r} is stopped: event {event.id!r} not sent")
            try:
                await self.broker.add(fields)
            except StoreUnavailable as exc:
                if trio.current_time() + pause > deadline:
                    raise LaneUnavailable(
                        f"lane {self.id!r}: event {event.id!r} was not written: {exc}"
                    ) from exc
                await trio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)
                continue
            self.counters.published += 1
            return

    # ------------------------------------------------------------------ operations

    def stats(self) -> LaneStats:
        """This process's counts and delivery latency (no I/O)."""
        return self.counters.snapshot()

    async def pending(self) -> int:
        """Entries the group has not acknowledged, delivered or not. A round trip; raises
        `rs.StoreUnavailable` when Redis cannot be reached."""
        return await self.broker.pending()

    async def status(self) -> LaneStatus:
        """`stats` with the pending count and the oldest pending age, and whether they pass
        ``max_pending`` / ``max_pending_age``. Never raises for an unreachable stream: the
        status says ``"unavailable"``. Two or three round trips."""
        self.last_status = status = await self._status()
        return status

    async def _status(self) -> LaneStatus:
        stats = self.stats()
        try:
            pending = await self.broker.pending()
            oldest = await self.broker.oldest_pending_age()
        except StoreUnavailable as exc:
            return LaneStatus(stats, None, None, "unavailable", str(exc))
        problems = []
        limit, age_limit = self.options.max_pending, self.options.max_pending_age
        if limit is not None and pending > limit:
            problems.append(f"{pending} entries pending (max_pending={limit})")
        if age_limit is not None and oldest is not None and oldest > age_limit:
            problems.append(
                f"the oldest pending entry is {oldest:.1f} s old (max_pending_age={age_limit:g})"
            )
        if problems:
            return LaneStatus(stats, pending, oldest, "degraded", "; ".join(problems))
        return LaneStatus(stats, pending, oldest, "ok")

    async def check(self) -> None:
        """The resource's health check: raises `RuntimeError` when `status` is not ok."""
        status = await self.status()
        if status.status != "ok":
            raise RuntimeError(f"lane {self.id!r} {status.status}: {status.problem}")

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` records of the dead-letter stream. A record that cannot be
        read is skipped (and logged); the others are returned. A round trip."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"Lane.dead_letters: limit must be an int, got {limit!r}")
        if limit < 1:
            raise ValueError(f"Lane.dead_letters: limit must be >= 1, got {limit!r}")
        letters = []
        for raw in await self.broker.dead_letters(limit):
            try:
                letters.append(dead_letter_of(raw))
            except (KeyError, ValueError) as exc:
                logger.bind(source=self.id).warning(
                    "lane {!r}: skipping an unreadable dead-letter record ({}: {})",
                    self.id,
                    type(exc).__name__,
                    exc,
                )
        return letters

    async def replay(self, message_id: str) -> str:
        """Move the dead letter of ``message_id`` back onto the stream, once (atomically:
        two replays of one id re-queue it once); the new entry's id. The envelope is the
        original one (same emission id and signature). Raises `LookupError` when there is
        no dead letter of that id."""
        if not isinstance(message_id, str):
            raise TypeError(f"Lane.replay: message_id must be a str, got {message_id!r}")
        new_id = await self.broker.replay(message_id)
        if new_id is None:
            raise LookupError(f"lane {self.id!r}: no dead letter with message id {message_id!r}")
        logger.bind(source=self.id).info(
            "lane {!r}: replayed dead letter {} as {}", self.id, message_id, new_id
        )
        return new_id


def dead_letter_of(raw: dict[str, str]) -> DeadLetter:
    """A dead-letter record read back from the stream (untrusted): `KeyError` or
    `ValueError` when it cannot be read."""
    text = raw.get("payload", "")
    try:
        payload: Any = json.loads(text)
    except ValueError:
        payload = text
    return DeadLetter(
        message_id=raw["message_id"],
        event_id=raw.get("event") or None,
        payload=payload,
        error=raw.get("error", ""),
        attempts=int(raw.get("attempts", "0")),
        dead_at=float(raw.get("dead_at", "0")),
        emission_id=raw.get("emission_id") or None,
    )
