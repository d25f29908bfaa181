"""`Broker`: the stream operations a lane needs, and `MemoryBroker`, their in-process twin.

The operations are those of one Redis stream with one consumer group (`kernel.lanes._redis`
maps each onto Redis commands); `MemoryBroker` keeps the same state in a process, with the
same rules, so that one conformance suite holds for both:

- an entry, once added, is delivered to one consumer of the group (`read`), then stays
  *pending* on it until acknowledged (`ack`) or buried in the dead-letter stream (`bury`);
- a pending entry can be taken again: by its consumer, for a retry (`claim`), or by any
  consumer once it has been idle ``min_idle`` seconds (`reclaim`: its consumer died; each
  call scans on from where the consumer's last one stopped, ``count * 10`` pending entries
  at most, as ``XAUTOCLAIM`` with a cursor does, and starts over at the end). Every
  delivery counts in the entry's delivery counter, which is the hooks' ``attempt``; a
  consumer keeps the entries it runs from going idle (`touch`, which is no delivery);
- `bury` is atomic: the dead-letter record is written and the entry acknowledged together,
  and only if the entry is still pending (an entry acknowledged meanwhile is not buried);
- `replay` moves one dead letter back onto the stream (a new entry), atomically.

Idle times of the memory broker come from ``trio.current_time()`` (testable with a
MockClock); entry ids are ``<n>-0``, increasing, as Redis's are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import trio

__all__ = ["Broker", "Entry", "MemoryBroker", "envelope_of", "id_key"]


@attrs.frozen
class Entry:
    """One delivery of a stream entry: its id, its raw fields, its delivery counter."""

    id: str
    fields: Mapping[Any, Any]
    attempt: int


def envelope_of(fields: Mapping[str, str]) -> str:
    """The entry's fields as a JSON array ``[name, value, ...]`` (kept by a dead letter, for
    `Broker.replay`)."""
    return json.dumps([part for pair in fields.items() for part in pair], ensure_ascii=False)


class Broker(Protocol):
    """See the module docstring. Every method is a checkpoint (a round trip in Redis)."""

    async def prepare(self) -> None:
        """Create the stream and the group when they do not exist (reading from the start
        of the stream)."""

    async def add(self, fields: Mapping[str, str]) -> str:
        """Append an entry; its id."""

    async def read(self, consumer: str, count: int, block: float) -> list[Entry]:
        """Up to ``count`` entries never delivered to the group, waiting up to ``block``
        seconds for one."""

    async def claim(self, consumer: str, message_id: str, min_idle: float) -> bool:
        """Take a pending entry again for a retry, if it has been idle ``min_idle`` seconds
        (no other consumer took it meanwhile); whether it was taken."""

    async def reclaim(self, consumer: str, min_idle: float, count: int) -> list[Entry]:
        """Take up to ``count`` entries idle at least ``min_idle`` seconds on any consumer,
        looking at ``count * 10`` pending entries at most, from where the last call of
        ``consumer`` stopped (over again from the oldest once the end was reached)."""

    async def touch(self, consumer: str, message_ids: list[str]) -> None:
        """Reset the idle time of entries ``consumer`` is running (a heartbeat: a live
        consumer's long run is not reclaimed); not a delivery, the counters stay."""

    async def ack(self, message_id: str) -> None:
        """Acknowledge an entry (it leaves the pending list)."""

    async def bury(self, message_id: str, record: Mapping[str, str]) -> bool:
        """Write ``record`` to the dead-letter stream and acknowledge the entry, atomically,
        if it is still pending; whether it was."""

    async def dead_letters(self, limit: int) -> list[dict[str, str]]:
        """The oldest ``limit`` dead-letter records (raw fields)."""

    async def replay(self, message_id: str) -> str | None:
        """Move the dead letter of ``message_id`` back onto the stream; the new entry's id,
        ``None`` when there is no such dead letter."""

    async def pending(self) -> int:
        """Entries the group has not acknowledged, delivered or not."""

    async def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest of those was added; ``None`` when there is none."""


@attrs.define(eq=False)
class _Pending:
    consumer: str
    since: float
    delivered: int


@attrs.define(eq=False)
class MemoryBroker:
    """A stream and its group in this process (see the module docstring). Share one between
    lanes (``kernel.lanes.memory(..., broker=...)``) to connect apps of one process.
    ``maxlen`` caps the stream (exactly, where Redis trims approximately)."""

    maxlen: int | None = None
    _entries: dict[str, tuple[dict[str, str], float]] = attrs.field(init=False, factory=dict)
    _order: list[str] = attrs.field(init=False, factory=list)
    _next: int = attrs.field(init=False, default=0)  # index in _order of the next undelivered
    _pel: dict[str, _Pending] = attrs.field(init=False, factory=dict)
    _dead: dict[str, dict[str, str]] = attrs.field(init=False, factory=dict)
    _index: dict[str, str] = attrs.field(init=False, factory=dict)
    _counter: int = attrs.field(init=False, default=0)
    _cursors: dict[str, str] = attrs.field(init=False, factory=dict)  # reclaim, by consumer
    _added: trio.Event = attrs.field(init=False, factory=trio.Event)

    def _new_id(self) -> str:
        self._counter += 1
        return f"{self._counter}-0"

    async def prepare(self) -> None:
        await trio.lowlevel.checkpoint()

    async def add(self, fields: Mapping[str, str]) -> str:
        await trio.lowlevel.checkpoint()
        message_id = self._new_id()
        self._entries[message_id] = (dict(fields), trio.current_time())
        self._order.append(message_id)
        if self.maxlen is not None:
            while len(self._order) > self.maxlen:
                oldest = self._order.pop(0)
                self._next = max(0, self._next - 1)
                del self._entries[oldest]
        self._added.set()
        self._added = trio.Event()
        return message_id

    async def read(self, consumer: str, count: int, block: float) -> list[Entry]:
        if self._next >= len(self._order):
            with trio.move_on_after(block):
                await self._added.wait()
        else:
            await trio.lowlevel.checkpoint()
        taken = self._order[self._next : self._next + count]
        self._next += len(taken)
        now = trio.current_time()
        for message_id in taken:
            self._pel[message_id] = _Pending(consumer, now, 1)
        return [Entry(mid, self._entries[mid][0], 1) for mid in taken]

    def _take(self, consumer: str, message_id: str) -> Entry | None:
        pending = self._pel.get(message_id)
        if pending is None:
            return None
        entry = self._entries.get(message_id)
        if entry is None:  # trimmed away while pending
            del self._pel[message_id]
            return None
        pending.consumer, pending.since = consumer, trio.current_time()
        pending.delivered += 1
        return Entry(message_id, entry[0], pending.delivered)

    async def claim(self, consumer: str, message_id: str, min_idle: float) -> bool:
        await trio.lowlevel.checkpoint()
        pending = self._pel.get(message_id)
        if pending is None or trio.current_time() - pending.since < min_idle:
            return False
        return self._take(consumer, message_id) is not None

    async def reclaim(self, consumer: str, min_idle: float, count: int) -> list[Entry]:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        start = id_key(self._cursors.pop(consumer, "0-0"))
        ahead = sorted((mid for mid in self._pel if id_key(mid) >= start), key=id_key)
        taken: list[Entry] = []
        scanned = 0
        for message_id in ahead[: count * 10]:  # XAUTOCLAIM's limit of attempts
            if len(taken) == count:
                break
            scanned += 1
            if now - self._pel[message_id].since >= min_idle:
                entry = self._take(consumer, message_id)  # None: trimmed, dropped from the PEL
                if entry is not None:
                    taken.append(entry)
        if scanned < len(ahead):
            self._cursors[consumer] = ahead[scanned]
        return taken

    async def touch(self, consumer: str, message_ids: list[str]) -> None:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        for message_id in message_ids:
            pending = self._pel.get(message_id)
            if pending is not None and pending.consumer == consumer:
                pending.since = now

    async def ack(self, message_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._pel.pop(message_id, None)

    async def bury(self, message_id: str, record: Mapping[str, str]) -> bool:
        await trio.lowlevel.checkpoint()
        if self._pel.pop(message_id, None) is None:
            return False
        dead_id = self._new_id()
        self._dead[dead_id] = dict(record)
        self._index[message_id] = dead_id
        return True

    async def dead_letters(self, limit: int) -> list[dict[str, str]]:
        await trio.lowlevel.checkpoint()
        return [dict(record) for record in list(self._dead.values())[:limit]]

    async def replay(self, message_id: str) -> str | None:
        dead_id = self._index.pop(message_id, None)
        record = None if dead_id is None else self._dead.pop(dead_id, None)
        if record is None:
            await trio.lowlevel.checkpoint()
            return None
        flat = json.loads(record["envelope"])
        return await self.add(dict(zip(flat[::2], flat[1::2], strict=True)))

    async def pending(self) -> int:
        await trio.lowlevel.checkpoint()
        return len(self._pel) + len(self._order) - self._next

    async def oldest_pending_age(self) -> float | None:
        await trio.lowlevel.checkpoint()
        candidates = [mid for mid in self._pel if mid in self._entries]
        if self._next < len(self._order):
            candidates.append(self._order[self._next])
        if not candidates:
            return None
        oldest = min(candidates, key=id_key)
        return trio.current_time() - self._entries[oldest][1]


def id_key(message_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair (``"1700000000000-3"`` → ``(1700000000000, 3)``)."""
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)
