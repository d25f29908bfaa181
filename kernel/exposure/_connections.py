"""`ConnectionPerRequest`: an httpx transport that gives each request a kept-alive
connection of its own, for many concurrent requests from one trio thread.

httpcore's pool (1.0) hands every queued request the FIRST available connection: when
many tasks enter it before any has started sending (what 64 tasks in one trio thread do),
all but one are refused by that connection and go round again, each round scanning every
connection, and ``max_keepalive_connections`` is compared with the count of ALL
connections, so a pool bigger than it closes its idle ones. Measured in
``python -m bench --only http.remote_64``: most of a remote call's client-side CPU.

A *slot* is an ``httpx.AsyncHTTPTransport`` limited to one connection. A request takes an
idle slot (most recently used first, so the connections kept warm are few), else opens a
new one while there are fewer than ``max_connections``, else waits (FIFO) for one to be
released; the slot is released when the response is closed. Errors are the slots' own:
httpx's, mapped from httpcore's by httpx. Slots idle longer than ``keepalive_expiry`` close
their connection themselves (httpx's own expiry, checked when the slot is next used).

Importing this module imports httpx.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar
from typing import Final

import httpx
import trio

__all__ = ["ConnectionPerRequest", "NoCookies"]

#: Seconds an idle connection is kept (httpx's default).
KEEPALIVE_EXPIRY: Final = 5.0


class NoCookies(CookieJar):
    """A cookie jar that keeps nothing and sends nothing, for a client whose server sets no
    cookies: httpx runs every response through its jar (``http.cookiejar`` parsing and
    policy checks), a measurable share of a small request's cost."""

    def extract_cookies(self, response: object, request: object) -> None:
        """Keep none."""

    def add_cookie_header(self, request: object) -> None:
        """Send none."""


class _Released(httpx.AsyncByteStream):
    """A response body that gives its slot back when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: _Release) -> None:
        self._stream = stream
        self._release = release

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()


class _Body(httpx.AsyncByteStream):
    """A request body known in full, as an iterator object rather than httpx's async
    generator: a request that fails while sending it (the server went away) leaves no
    unfinished generator behind for the garbage collector to warn about."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


class _Release:
    """Gives ``slot`` back to ``pool`` once (closing a response twice is harmless)."""

    def __init__(self, pool: ConnectionPerRequest, slot: httpx.AsyncHTTPTransport) -> None:
        self._pool = pool
        self._slot: httpx.AsyncHTTPTransport | None = slot

    def __call__(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            self._pool._give_back(slot)


class ConnectionPerRequest(httpx.AsyncBaseTransport):
    """At most ``max_connections`` slots (connections), each serving one request at a time."""

    def __init__(self, *, max_connections: int) -> None:
        self._max = max_connections
        self._limits = httpx.Limits(
            max_connections=1, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_EXPIRY
        )
        self._idle: list[httpx.AsyncHTTPTransport] = []
        self._all: list[httpx.AsyncHTTPTransport] = []
        self._waiters: deque[trio.Event] = deque()
        self._handed: dict[trio.Event, httpx.AsyncHTTPTransport] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if isinstance(request.stream, httpx.ByteStream):
            request.stream = _Body(request.content)
        slot = await self._take()
        try:
            response = await slot.handle_async_request(request)
        except BaseException:
            self._give_back(slot)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Released(response.stream, _Release(self, slot))
        return response

    async def _take(self) -> httpx.AsyncHTTPTransport:
        """An idle slot, a new one, or (FIFO) the next one released. A checkpoint."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise RuntimeError("ConnectionPerRequest: the transport is closed")
        slot = self._free_slot()
        if slot is not None:
            # Taken before the checkpoint, which cannot raise: no slot is lost to a cancel.
            await trio.lowlevel.cancel_shielded_checkpoint()
            return slot
        handed = trio.Event()
        self._waiters.append(handed)
        try:
            await handed.wait()
        except BaseException:
            if handed in self._handed:
                # Handed a slot as it was cancelled: pass it on.
                self._give_back(self._handed.pop(handed))
            else:
                self._waiters.remove(handed)
            raise
        return self._handed.pop(handed)

    def _free_slot(self) -> httpx.AsyncHTTPTransport | None:
        """An idle slot (most recently used), a new one if there is room, else ``None``."""
        if self._idle:
            return self._idle.pop()
        if len(self._all) < self._max:
            slot = httpx.AsyncHTTPTransport(limits=self._limits)
            self._all.append(slot)
            return slot
        return None

    def _give_back(self, slot: httpx.AsyncHTTPTransport) -> None:
        if self._waiters:
            handed = self._waiters.popleft()
            self._handed[handed] = slot
            handed.set()
        else:
            self._idle.append(slot)

    async def aclose(self) -> None:
        """Close every slot's connection (each one, even if closing another fails)."""
        self._closed = True
        slots, self._all, self._idle = self._all, [], []
        await _close_all(slots)


async def _close_all(slots: list[httpx.AsyncHTTPTransport]) -> None:
    if slots:
        try:
            await slots[0].aclose()
        finally:
            await _close_all(slots[1:])
