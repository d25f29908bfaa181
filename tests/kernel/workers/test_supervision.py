"""The parent's supervision (`kernel._workers.supervise`) in this process, over tiny Python
workers: a crash loop ends in WorkerFailed, a signal stops every worker, a worker that
ignores it is killed after the stop timeout and reported."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

import kernel
import resilience as rs
from kernel._workers import _Fleet, supervise

NO_WAIT = rs.Retry(attempts=2, wait=rs.backoff.constant(0))

#: A worker that says it is up (a file named after its number), then waits for a signal.
PATIENT = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
open(os.path.join(os.environ["READY"], os.environ["TRIO_RUNNER_WORKER"]), "w").close()
time.sleep(60)
"""
#: The same, deaf to SIGTERM.
DEAF = PATIENT.replace("lambda *_: sys.exit(0))\nsignal", "signal.SIG_IGN)\nsignal", 1)


@contextmanager
def fleet(code: str, ready: Path, stop_timeout: float = 10.0) -> Iterator[_Fleet]:
    read_fd, write_fd = os.pipe()
    try:
        yield _Fleet(
            command=[sys.executable, "-c", code],
            env={**os.environ, "READY": str(ready)},
            parent_fd=read_fd,
            stop_timeout=stop_timeout,
        )
    finally:
        os.close(read_fd)
        os.close(write_fd)


async def until_ready(ready: Path, workers: int) -> None:
    with trio.fail_after(10):
        while len(os.listdir(ready)) < workers:  # noqa: ASYNC110 (other processes)
            await trio.sleep(0.01)


async def test_a_worker_that_keeps_exiting_ends_the_supervision_with_its_status(
    tmp_path: Path,
) -> None:
    with (
        fleet("raise SystemExit(3)", tmp_path) as workers,
        trio.fail_after(20),
        pytest.raises(kernel.WorkerFailed, match="worker 1 exited with status 3") as info,
    ):
        await supervise(workers, 1, NO_WAIT)
    assert (info.value.worker, info.value.status) == (1, 3)


async def test_a_crash_loop_stops_the_other_workers_gracefully(tmp_path: Path) -> None:
    code = (
        "import os\n"
        "if os.environ['TRIO_RUNNER_WORKER'] == '2':\n"
        "    raise SystemExit(5)\n" + PATIENT
    )
    with (
        fleet(code, tmp_path) as workers,
        trio.fail_after(20),
        pytest.raises(kernel.WorkerFailed) as info,
    ):
        await supervise(workers, 2, NO_WAIT)
    assert (info.value.worker, info.value.status) == (2, 5)
    assert workers.live == {}  # worker 1 was stopped (SIGTERM), not left behind
    assert workers.failures == []


async def test_sigterm_stops_every_worker_and_returns(tmp_path: Path) -> None:
    with fleet(PATIENT, tmp_path) as workers, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervise, workers, 3, NO_WAIT)
            await until_ready(tmp_path, 3)
            os.kill(os.getpid(), signal.SIGTERM)
    assert workers.stopping.is_set()
    assert workers.live == {}
    assert workers.failures == []


@pytest.mark.slow
async def test_a_worker_deaf_to_sigterm_is_killed_after_the_stop_timeout(tmp_path: Path) -> None:
    failed: list[BaseException] = []

    async def supervised() -> None:
        try:
            await supervise(workers, 1, NO_WAIT)
        except kernel.WorkerFailed as exc:
            failed.append(exc)

    with fleet(DEAF, tmp_path, stop_timeout=0.5) as workers, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervised)
            await until_ready(tmp_path, 1)
            os.kill(os.getpid(), signal.SIGTERM)
    (error,) = failed
    assert str(error) == f"worker 1 exited with status {-signal.SIGKILL} while stopping"
