"""`ConnectionPerRequest`: one kept-alive connection per request in flight, at most
``max_connections``, waiters served in order, no slot lost to a cancellation."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import httpx
import pytest
import trio

from kernel.exposure._connections import ConnectionPerRequest


@attrs.define
class Counting:
    """A keep-alive HTTP/1.1 server answering every request ``ok`` once ``gate`` is set."""

    url: str = ""
    connections: int = 0
    open_now: int = 0
    requests: int = 0
    gate: trio.Event = attrs.Factory(trio.Event)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        self.open_now += 1
        data = b""
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = await stream.receive_some()
                    if not chunk:
                        return
                    data += chunk
                _, _, data = data.partition(b"\r\n\r\n")
                self.requests += 1
                await self.gate.wait()
                await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        finally:
            self.open_now -= 1


@asynccontextmanager
async def serving(*, open_gate: bool = True) -> AsyncIterator[Counting]:
    server = Counting()
    if open_gate:
        server.gate.set()
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, server.handle, 0)
        server.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        yield server
        nursery.cancel_scope.cancel()


async def test_concurrent_requests_reuse_at_most_max_connections() -> None:
    with trio.fail_after(20):
        async with serving() as server:
            transport = ConnectionPerRequest(max_connections=8)
            async with httpx.AsyncClient(base_url=server.url, transport=transport) as client:
                answers: list[str] = []

                async def worker() -> None:
                    for _ in range(20):
                        response = await client.get("/")
                        answers.append(response.text)

                async with trio.open_nursery() as nursery:
                    for _ in range(32):
                        nursery.start_soon(worker)
    assert answers == ["ok"] * 640
    assert server.requests == 640
    assert server.connections == 8  # 32 tasks, 8 connections, each kept alive


async def test_sequential_requests_keep_one_connection() -> None:
    with trio.fail_after(20):
        async with serving() as server:
            transport = ConnectionPerRequest(max_connections=100)
            async with httpx.AsyncClient(base_url=server.url, transport=transport) as client:
                for _ in range(10):
                    assert (await client.get("/")).text == "ok"
    assert server.connections == 1


async def test_waiters_get_the_connection_in_order_and_a_cancelled_waiter_loses_nothing() -> None:
    with trio.fail_after(20):
        async with serving(open_gate=False) as server:
            transport = ConnectionPerRequest(max_connections=1)
            async with (
                httpx.AsyncClient(base_url=server.url, transport=transport) as client,
                trio.open_nursery() as nursery,
            ):
                done: list[str] = []

                async def call(name: str) -> None:
                    await client.get("/")
                    done.append(name)

                nursery.start_soon(call, "first")
                await trio.testing.wait_all_tasks_blocked()
                assert server.requests == 1
                cancelled = trio.CancelScope()

                async def cancelled_call() -> None:
                    with cancelled:
                        await call("never")

                nursery.start_soon(cancelled_call)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(call, "second")
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(call, "third")
                await trio.testing.wait_all_tasks_blocked()
                cancelled.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert server.requests == 1  # the others wait for the one connection
                server.gate.set()
    assert done == ["first", "second", "third"]
    assert server.connections == 1


async def test_a_broken_connection_is_replaced_on_its_slot() -> None:
    with trio.fail_after(20):
        async with serving() as server:
            transport = ConnectionPerRequest(max_connections=1)
            async with httpx.AsyncClient(base_url=server.url, transport=transport) as client:
                assert (await client.get("/")).text == "ok"
                server.gate = trio.Event()
                with trio.move_on_after(0.05):  # cancelled mid-request: httpcore closes it
                    await client.get("/")
                server.gate.set()
                assert (await client.get("/")).text == "ok"
    assert server.connections == 2


async def test_a_closed_transport_refuses_requests() -> None:
    transport = ConnectionPerRequest(max_connections=1)
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1:1/"))
