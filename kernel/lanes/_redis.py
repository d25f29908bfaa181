"""`RedisBroker`: the `Broker` operations on one Redis stream with one consumer group.

Each operation is one round trip through the lane's `resilience.redis.Store` (bounded by its
``op_timeout``; `rs.StoreUnavailable` when Redis cannot be reached), except `reclaim`, which
also reads the delivery counters of what it took (``XPENDING``), and `oldest_pending_age`.
`reclaim` keeps ``XAUTOCLAIM``'s cursor between calls: each call scans on from where the
last one stopped (Redis looks at ``count * 10`` pending entries at most per call), so idle
entries behind a long run of live ones are reached too, and the scan starts over at the end.

Keys: the stream (``{prefix}:lane:{{id}}:stream`` by default), its dead letters in
``{stream}:dead`` and, to find a dead letter by its message id, ``{stream}:dead:index`` (a
hash). The three share a hash tag, so a cluster keeps them on one node, as the scripts of
`bury` and `replay` need. A stream whose group is gone (a Redis restarted without
persistence) gets its group again on the next read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from kernel.lanes._broker import Entry, id_key
from resilience.redis import Store

__all__ = ["RedisBroker"]

#: KEYS: stream, dead, index. ARGV: group, message id, then the record's fields.
_BURY: Final = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
local dead_id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('HSET', KEYS[3], ARGV[2], dead_id)
return dead_id
"""

#: KEYS: stream, dead, index. ARGV: message id, maxlen ("" for none).
_REPLAY: Final = """
local dead_id = redis.call('HGET', KEYS[3], ARGV[1])
if not dead_id then return false end
redis.call('HDEL', KEYS[3], ARGV[1])
local rows = redis.call('XRANGE', KEYS[2], dead_id, dead_id)
if #rows == 0 then return false end
local fields, envelope = rows[1][2], nil
for i = 1, #fields, 2 do
  if fields[i] == 'envelope' then envelope = fields[i + 1] end
end
if not envelope then return false end
local args = cjson.decode(envelope)
local new_id
if ARGV[2] == '' then
  new_id = redis.call('XADD', KEYS[1], '*', unpack(args))
else
  new_id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(args))
end
redis.call('XDEL', KEYS[2], dead_id)
return new_id
"""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _busy_group(error: Exception) -> bool:
    """``BUSYGROUP``: the group exists already (coredis raises its own class for it)."""
    import coredis.exceptions

    return isinstance(error, coredis.exceptions.StreamDuplicateConsumerGroupError) or str(
        error
    ).startswith("BUSYGROUP")


def _no_group(error: Exception) -> bool:
    """``NOGROUP``: the stream or its group is gone."""
    import coredis.exceptions

    return isinstance(error, coredis.exceptions.StreamConsumerGroupError) or "NOGROUP" in str(error)


@attrs.define(eq=False)
class RedisBroker:
    """See the module docstring. ``stream`` is the stream's key."""

    store: Store
    stream: str
    group: str
    maxlen: int | None = None
    #: Where the next `reclaim` goes on scanning the pending list (``XAUTOCLAIM``'s cursor).
    _cursor: str = attrs.field(init=False, default="0-0")

    @property
    def dead(self) -> str:
        return f"{self.stream}:dead"

    @property
    def index(self) -> str:
        return f"{self.stream}:dead:index"

    def _response_error(self) -> type[Exception]:
        import coredis.exceptions

        error: type[Exception] = coredis.exceptions.ResponseError
        return error

    async def prepare(self) -> None:
        client = self.store.client
        try:
            await self.store.command(
                "XGROUP CREATE",
                lambda: client.xgroup_create(self.stream, self.group, "0", mkstream=True),
            )
        except Exception as exc:
            if not _busy_group(exc):
                raise

    async def _regroup(self, error: Exception) -> None:
        """Re-raise ``error`` unless it says the group is gone (a Redis restarted without its
        data): then create the group again. Entries it held are gone with it."""
        if not _no_group(error):
            raise error
        await self.prepare()

    async def add(self, fields: Mapping[str, str]) -> str:
        client = self.store.client
        if self.maxlen is None:
            reply = await self.store.command("XADD", lambda: client.xadd(self.stream, fields))
        else:
            from coredis.tokens import PureToken

            reply = await self.store.command(
                "XADD",
                lambda: client.xadd(
                    self.stream,
                    fields,
                    trim_strategy=PureToken.MAXLEN,
                    trim_operator=PureToken.APPROXIMATELY,
                    threshold=self.maxlen,
                ),
            )
        return _text(reply)

    async def read(self, consumer: str, count: int, block: float) -> list[Entry]:
        client = self.store.client
        block_ms = max(1, int(block * 1000))
        try:
            reply = await self.store.command(
                "XREADGROUP",
                lambda: client.xreadgroup(
                    self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
                ),
            )
        except Exception as exc:
            await self._regroup(exc)
            return []
        if not reply:
            return []
        return [
            Entry(_text(entry.identifier), entry.field_values, 1)
            for entries in reply.values()
            for entry in entries
        ]

    async def claim(self, consumer: str, message_id: str, min_idle: float) -> bool:
        client = self.store.client
        idle_ms = int(min_idle * 1000)
        try:
            reply = await self.store.command(
                "XCLAIM",
                lambda: client.xclaim(self.stream, self.group, consumer, idle_ms, [message_id]),
            )
        except Exception as exc:
            await self._regroup(exc)
            return False
        return any(getattr(entry, "field_values", None) is not None for entry in reply)

    async def reclaim(self, consumer: str, min_idle: float, count: int) -> list[Entry]:
        client = self.store.client
        start = self._cursor
        try:
            reply = await self.store.command(
                "XAUTOCLAIM",
                lambda: client.xautoclaim(
                    self.stream, self.group, consumer, int(min_idle * 1000), start, count=count
                ),
            )
        except Exception as exc:
            self._cursor = "0-0"
            await self._regroup(exc)
            return []
        self._cursor = _text(reply[0])  # "0-0" once the scan reached the end
        entries = [e for e in reply[1] if getattr(e, "field_values", None) is not None]
        if not entries:
            return []
        ids = [_text(e.identifier) for e in entries]
        first, last = min(ids, key=id_key), max(ids, key=id_key)
        pending = await self.store.command(
            "XPENDING",
            lambda: client.xpending(
                self.stream, self.group, first, last, count=len(ids) + 64, consumer=consumer
            ),
        )
        delivered = {_text(p.identifier): int(p.delivered) for p in pending}
        return [
            Entry(mid, entry.field_values, delivered.get(mid, 1))
            for mid, entry in zip(ids, entries, strict=True)
        ]

    async def touch(self, consumer: str, message_ids: list[str]) -> None:
        client = self.store.client
        try:  # XCLAIM ... JUSTID: resets the idle time, leaves the delivery counter alone
            await self.store.command(
                "XCLAIM",
                lambda: client.xclaim(
                    self.stream, self.group, consumer, 0, message_ids, justid=True
                ),
            )
        except Exception as exc:
            await self._regroup(exc)

    async def ack(self, message_id: str) -> None:
        client = self.store.client
        try:
            await self.store.command(
                "XACK", lambda: client.xack(self.stream, self.group, [message_id])
            )
        except Exception as exc:
            await self._regroup(exc)

    async def bury(self, message_id: str, record: Mapping[str, str]) -> bool:
        client = self.store.client
        args = [self.group, message_id, *(part for pair in record.items() for part in pair)]
        keys = [self.stream, self.dead, self.index]
        try:
            reply = await self.store.command("dead-letter", lambda: client.eval(_BURY, keys, args))
        except Exception as exc:
            await self._regroup(exc)
            return False
        return reply is not None

    async def dead_letters(self, limit: int) -> list[dict[str, str]]:
        client = self.store.client
        rows = await self.store.command(
            "XRANGE", lambda: client.xrange(self.dead, "-", "+", count=limit)
        )
        return [
            {_text(key): _text(value) for key, value in row.field_values.items()} for row in rows
        ]

    async def replay(self, message_id: str) -> str | None:
        client = self.store.client
        keys = [self.stream, self.dead, self.index]
        args = [message_id, "" if self.maxlen is None else str(self.maxlen)]
        reply = await self.store.command("replay", lambda: client.eval(_REPLAY, keys, args))
        return None if reply is None else _text(reply)

    async def _group_info(self) -> dict[str, Any] | None:
        client = self.store.client
        try:
            groups = await self.store.command(
                "XINFO GROUPS", lambda: client.xinfo_groups(self.stream)
            )
        except self._response_error() as exc:
            if "no such key" in str(exc):
                return None
            raise
        for group in groups:
            info = {_text(key): value for key, value in group.items()}
            if _text(info.get("name")) == self.group:
                return info
        return None

    async def pending(self) -> int:
        info = await self._group_info()
        if info is None:  # no consumer has come yet: the group will start from the first
            client = self.store.client
            length = await self.store.command("XLEN", lambda: client.xlen(self.stream))
            return int(length)
        lag = info.get("lag")
        if lag is None:  # Redis cannot tell (entries deleted): count what follows
            lag = len(await self._undelivered(info, 10_000))
        return int(info.get("pending") or 0) + int(lag)

    async def _undelivered(self, info: Mapping[str, Any], count: int) -> list[Any]:
        client = self.store.client
        start = "(" + _text(info.get("last-delivered-id") or "0-0")
        if start == "(0-0":
            start = "-"
        rows = await self.store.command(
            "XRANGE", lambda: client.xrange(self.stream, start, "+", count=count)
        )
        return list(rows)

    async def oldest_pending_age(self) -> float | None:
        info = await self._group_info() or {"pending": 0, "last-delivered-id": "0-0"}
        client = self.store.client
        candidates: list[str] = []
        if int(info.get("pending") or 0):
            summary = await self.store.command(
                "XPENDING", lambda: client.xpending(self.stream, self.group)
            )
            if summary.minimum_identifier is not None:
                candidates.append(_text(summary.minimum_identifier))
        first = await self._undelivered(info, 1)
        if first:
            candidates.append(_text(first[0].identifier))
        if not candidates:
            return None
        oldest_ms = min(id_key(mid) for mid in candidates)[0]
        # The server's clock (entry ids are its milliseconds); TIME through a script, as
        # coredis 6.9's time() misreads the microseconds.
        seconds, micros = await self.store.command(
            "TIME", lambda: client.eval("return redis.call('TIME')", [], [])
        )
        return max(0.0, int(seconds) + int(micros) / 1e6 - oldest_ms / 1000)
