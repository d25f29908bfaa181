"""The worker processes of the bench's multi-process rows (a shared limiter's fleet, the
lanes' consumers): started with pipes, stopped by closing their stdin (a worker's signal
to finish), killed if one does not exit within 5 s."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

__all__ = ["worker_processes"]


@asynccontextmanager
async def worker_processes(command: Sequence[str], count: int) -> AsyncIterator[list[trio.Process]]:
    """``count`` processes running ``command``, stdin and stdout piped; stopped on exit."""
    processes = [
        await trio.lowlevel.open_process(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            if process.stdin is not None:
                await process.stdin.aclose()
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
