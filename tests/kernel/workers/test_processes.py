"""Workers as real processes: load with 1 and 2 workers, what the exposure promises with
2, SIGTERM under load, a worker SIGKILLed under load, a worker that keeps crashing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from kernel.exposure._connections import ConnectionPerRequest
from tests.kernel.workers.service import TOKEN

ROOT = Path(__file__).resolve().parents[3]
SERVICE = Path(__file__).parent / "service.py"
HEADERS = {"authorization": f"Bearer {TOKEN}"}
IN_FLIGHT = 64


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@attrs.define
class Service:
    """The test service's parent process, its base URL and where its stderr goes (a file:
    a pipe nobody reads while the test runs would fill up and block the logging workers)."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def stop(self) -> tuple[int, str]:
        """SIGTERM the parent; its exit status and stderr."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout: float = 30) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        return code, self.log.read_text(errors="replace")


@contextmanager
def running(
    tmp_path: Path, workers: int, *, cli: bool = False, crash: bool = False, log: str = "WARNING"
) -> Iterator[Service]:
    """The test service's parent process with ``workers`` workers."""
    port = free_port()
    env = {**os.environ, "WORKERS_TEST_PORT": str(port), "WORKERS_TEST_LOG": log}
    if crash:
        env["WORKERS_TEST_CRASH"] = "1"
    if cli:
        command = [sys.executable, "-m", "kernel._cli", "serve"]
        command += ["tests.kernel.workers.service:service", "--workers", str(workers)]
    else:
        command = [sys.executable, str(SERVICE), str(workers)]
    output = tmp_path / "service.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stderr=sink, stdout=subprocess.DEVNULL
        )
    try:
        yield Service(process, f"http://127.0.0.1:{port}/__runner", output)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers=HEADERS,
        transport=ConnectionPerRequest(max_connections=IN_FLIGHT),
        timeout=10,
    )


async def pids_answering(
    base_url: str, workers: int, without: frozenset[int] = frozenset()
) -> set[int]:
    """Wait (new connections, so the kernel spreads them) until ``workers`` pids not in
    ``without`` answered."""
    seen: set[int] = set()
    with trio.fail_after(20):
        while len(seen) < workers:
            try:
                async with httpx.AsyncClient(base_url=base_url, headers=HEADERS) as fresh:
                    reply = await fresh.post("/task/w.pid")
            except httpx.TransportError:
                await trio.sleep(0.05)
                continue
            if reply.status_code == 200 and reply.json()["result"] not in without:
                seen.add(reply.json()["result"])
    return seen


@asynccontextmanager
async def load(base_url: str, task: str, body: dict[str, object]) -> AsyncIterator[Load]:
    """``IN_FLIGHT`` tasks posting ``body`` to ``task`` until the block ends."""
    result = Load()
    async with client(base_url) as http, trio.open_nursery() as nursery:

        async def one() -> None:
            while not result.done:
                try:
                    reply = await http.post(f"/task/{task}", json=body)
                except (httpx.ConnectError, httpx.ConnectTimeout):
                    result.refused += 1  # never reached a worker: the listeners are closed
                    await trio.sleep(0.01)
                except httpx.TransportError as exc:
                    result.broken.append(exc)
                else:
                    ok = reply.status_code == 200
                    result.record(reply.status_code, reply.json()["result"] if ok else None)

        for _ in range(IN_FLIGHT):
            nursery.start_soon(one)
        yield result
        result.done = True


class Load:
    """What the load saw: statuses, worker pids, errors (refused apart)."""

    def __init__(self) -> None:
        self.done = False
        self.refused = 0
        self.broken: list[Exception] = []
        self.statuses: list[int] = []
        self.pids: set[int] = set()
        self._wanted: tuple[int, trio.Event] | None = None

    def record(self, status: int, pid: int | None) -> None:
        self.statuses.append(status)
        if pid is not None:
            self.pids.add(pid)
        if self._wanted is not None and len(self.statuses) >= self._wanted[0]:
            self._wanted[1].set()

    async def answered(self, n: int) -> None:
        """Wait until ``n`` answers came."""
        reached = trio.Event()
        self._wanted = (n, reached)
        if len(self.statuses) < n:
            await reached.wait()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_5000_requests_at_64_in_flight_without_an_error(tmp_path: Path, workers: int) -> None:
    with running(tmp_path, workers) as service:
        base_url = service.base_url
        await pids_answering(base_url, workers)
        answers: list[int] = []
        with trio.fail_after(60):
            async with client(base_url) as http:

                async def worker(n: int) -> None:
                    for i in range(n, 5_000, IN_FLIGHT):
                        reply = await http.post("/task/w.order", json={"input": {"qty": i}})
                        assert reply.status_code == 200, reply.text
                        answers.append(reply.json()["result"])

                async with trio.open_nursery() as nursery:
                    for n in range(IN_FLIGHT):
                        nursery.start_soon(worker, n)
        assert sorted(answers) == list(range(5_000))
        code, err = service.stop()
    assert code == 0, err


@pytest.mark.slow
async def test_what_the_exposure_promises_holds_with_two_workers(tmp_path: Path) -> None:
    with running(tmp_path, 2) as service:
        base_url = service.base_url
        await pids_answering(base_url, 2)
        for _ in range(6):  # new connections: both workers answer some
            async with httpx.AsyncClient(base_url=base_url) as fresh:
                anonymous = await fresh.post("/task/w.pid")
                assert anonymous.status_code == 401
                assert anonymous.headers["www-authenticate"] == "Bearer"
                fresh.headers.update(HEADERS)
                assert (await fresh.post("/task/w.nope")).status_code == 404
                malformed = await fresh.post(
                    "/task/w.order", content=b"{", headers={"x-request-id": "abc-1"}
                )
                assert malformed.status_code == 400
                assert malformed.headers["x-request-id"] == "abc-1"
                assert malformed.json()["request_id"] == "abc-1"
                big = await fresh.post("/task/w.order", content=b"[" * 2_000)
                assert big.status_code == 413
                invalid = await fresh.post("/task/w.order", json={"input": {"qty": "x"}})
                assert invalid.status_code == 422
                assert (
                    await fresh.get(base_url.removesuffix("/__runner") + "/ready")
                ).status_code == 200
        code, err = service.stop()
    assert code == 0, err


@pytest.mark.slow
async def test_sigterm_under_load_drains_every_worker_and_exits_0(tmp_path: Path) -> None:
    with running(tmp_path, 2, log="INFO") as service:
        base_url = service.base_url
        await pids_answering(base_url, 2)
        with trio.fail_after(30):
            async with load(base_url, "w.slow", {"input": [0.05]}) as seen:
                await seen.answered(200)
                started = time.monotonic()
                service.process.send_signal(signal.SIGTERM)
                code, err = await trio.to_thread.run_sync(service.wait)
    assert code == 0, err
    assert time.monotonic() - started < 15
    assert err.count("shutdown: intake stopped") == 2
    assert set(seen.statuses) <= {200, 503}
    assert len(seen.pids) == 2
    # Every request a worker took got its answer: the workers answered exactly what the
    # client received, and no answer was lost on a broken connection.
    answered = err.count("POST /__runner/task/w.slow -> ")
    assert answered == len(seen.statuses)
    assert "the connection failed while sending the response" not in err
    # What failed (refused; reset or closed by the kernel or hypercorn before the app read
    # a request on it: still in the accept queue of a closing listener, or opened just as
    # idle connections were closed) never reached a worker's app: the counts above match.


@pytest.mark.slow
async def test_a_worker_killed_under_load_is_replaced_and_the_service_keeps_answering(
    tmp_path: Path,
) -> None:
    with running(tmp_path, 2, cli=True) as service:
        base_url = service.base_url
        first = await pids_answering(base_url, 2)
        with trio.fail_after(30):
            async with load(base_url, "w.pid", {}) as seen:
                await seen.answered(200)
                victim = min(first)
                os.kill(victim, signal.SIGKILL)
                answered = len(seen.statuses)
                # The survivor and a replacement answer new connections.
                now = await pids_answering(base_url, 2, without=frozenset({victim}))
                await seen.answered(answered + 200)  # the load goes on
        code, err = service.stop()
    assert len(now - first) == 1
    assert code == 0, err
    assert "supervised task 'worker" in err
    assert "crashed" in err
    # Only requests in flight on the killed worker's connections may have failed.
    assert len(seen.broken) <= IN_FLIGHT


@pytest.mark.slow
def test_a_worker_that_keeps_crashing_brings_the_service_down_with_its_error(
    tmp_path: Path,
) -> None:
    with running(tmp_path, 2, cli=True, crash=True) as service:
        code, err = service.wait(timeout=60)
    assert code == 1
    assert "RuntimeError: this worker cannot start" in err
    assert "WorkerFailed: worker " in err
    assert "exited with status 1" in err


@pytest.mark.slow
async def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    with running(tmp_path, 2, log="INFO") as service:
        pids = await pids_answering(service.base_url, 2)
        service.process.kill()
        service.process.wait(timeout=10)
        with trio.fail_after(20):
            while any(_alive(pid) for pid in pids):  # noqa: ASYNC110 (other processes)
                await trio.sleep(0.05)
        err = service.log.read_text(errors="replace")
    # They noticed the closed pipe and stopped (they were not killed with the parent).
    assert err.count("the parent process is gone; stopping") == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its new parent to reap it has exited.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
