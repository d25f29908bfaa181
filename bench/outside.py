"""The ``served`` rows: each server of `bench.served` alone in its own process(es), driven
from outside by ``wrk`` (C, Debian package ``wrk``), all in one run.

Every server is started first and left idle while another is measured; then each round
runs ``wrk -t1 -c64`` against each server in turn (so the rows share the machine's moods),
after one warm-up run each. A repetition's figure is one over its requests/s (nanoseconds
per request, as every row of the bench); any non-2xx answer or socket error fails the row.
The details give the CPU the server's processes used per request (from ``/proc``): on a
machine shared with other work, that, not the wall clock, compares the servers' costs.
Full runs time 5 rounds of 2 s, quick runs 5 rounds of 1 s. Like the anchors (other
processes, a minute of a run), the rows are skipped with ``--no-anchor``. ``wrk`` itself
needs CPU: on a 2-core machine it takes a share from the servers, the 2-worker row most.

Without ``wrk`` the rows are skipped, with the reason; so is the uvicorn row without uvicorn
(the ``bench`` extra).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Final

import attrs
import httpx

from bench._scenario import Scenario
from bench._timing import FULL, Settings, Stats, summarize
from bench.anchors.runner import AnchorReport, tail_of
from bench.served import PATH, PORT_ENV, TOKEN

__all__ = ["PREFIX", "SCENARIOS", "SERVERS", "parse_wrk", "run_anchor"]

PREFIX: Final = "served."
ROOT: Final = Path(__file__).resolve().parent.parent
CONNECTIONS: Final = 64
_BODY: Final = '{"input":[{"n":1,"s":"hello"}]}'
_SCRIPT: Final = f"""wrk.method = "POST"
wrk.body = '{_BODY}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {TOKEN}"
"""
_RATE: Final = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_TOTAL: Final = re.compile(r"^\s*([0-9]+) requests in", re.MULTILINE)
_NON_2XX: Final = re.compile(r"Non-2xx or 3xx responses: ([0-9]+)")
_SOCKET_ERRORS: Final = re.compile(r"Socket errors: (.*)")


@attrs.frozen(kw_only=True)
class Server:
    """One served row: its key, how to start it, how many processes answer."""

    key: str
    label: str
    who: str
    command: Callable[[int], list[str]]
    processes: int = 1
    needs: str | None = None
    note: str = ""


def _kernel(workers: int) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:  # (the port travels in $BENCH_SERVED_PORT)
        serve = [sys.executable, "-m", "kernel._cli", "serve", "bench.served:service"]
        return [*serve, "--workers", str(workers)]

    return command


def _peer(name: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.served", name, "--port", str(port)]

    return command


SERVERS: Final = (
    Server(
        key="kernel_1",
        label="served: kernel.exposure.http, 1 worker, wrk -c64 (per request)",
        who="ours",
        command=_kernel(1),
        note="trio-runner serve bench.served:service --workers 1; logs at WARNING (no sink "
        "wants the per-call line)",
    ),
    Server(
        key="kernel_2",
        label="served: kernel.exposure.http, 2 workers, wrk -c64 (per request)",
        who="ours",
        command=_kernel(2),
        processes=2,
        note="the same with --workers 2 (SO_REUSEPORT); wrk shares the cores",
    ),
    Server(
        key="bare",
        label="served: hypercorn (trio) + one Starlette route, wrk -c64 (per request)",
        who="hypercorn+starlette",
        command=_peer("bare"),
        note="the floor of the exposure's stack: the bearer check and the JSON echo only",
    ),
    Server(
        key="uvicorn",
        label="served: uvicorn (asyncio) + the same Starlette route, wrk -c64 (per request)",
        who="uvicorn+starlette",
        command=_peer("uvicorn"),
        needs="uvicorn",
        note="what a user might pick instead (asyncio, one process)",
    ),
)

SCENARIOS: Final = tuple(
    Scenario(
        id=PREFIX + server.key,
        label=server.label,
        group="http",
        who=server.who,
        baseline=None,
        source="anchor",
        shape="served",
        note=f"{server.note}; wrk -t1 -c{CONNECTIONS}, 5 rounds of 2 s (quick: 1 s), "
        "per request = 1 / requests/s",
    )
    for server in SERVERS
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@attrs.define
class _Running:
    server: Server
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    samples: list[float] = attrs.Factory(list)
    cpu_per_request: list[float] = attrs.Factory(list)
    requests: int = 0
    error: str | None = None

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server's process and its children (its workers)."""
        return sum(_cpu_seconds(pid) for pid in (self.process.pid, *_children(self.process.pid)))


_TICK: Final = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:  # gone, or no /proc
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def _wait_ready(running: _Running, timeout: float = 30.0) -> None:
    """Until every process of the server answers (new connections spread over them)."""
    deadline = time.monotonic() + timeout
    seen: set[object] = set()
    while True:
        if running.process.poll() is not None:
            raise RuntimeError(
                f"{running.server.key} exited {running.process.returncode}: "
                + tail_of(running.log.read_text(errors="replace"))
            )
        try:
            if running.server.processes > 1:
                reply = httpx.post(
                    running.url.replace("bench.ping", "bench.pid"),
                    headers={"authorization": f"Bearer {TOKEN}"},
                    timeout=2,
                )
                if reply.status_code == 200:
                    seen.add(reply.json()["result"])
            else:
                reply = httpx.post(
                    running.url,
                    content=_BODY,
                    headers={"authorization": f"Bearer {TOKEN}"},
                    timeout=2,
                )
                if reply.status_code == 200:
                    seen.add(None)
        except httpx.TransportError:
            pass
        if len(seen) >= running.server.processes:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{running.server.key} did not answer within {timeout:g} s")
        time.sleep(0.05)


@contextmanager
def _started(server: Server, directory: Path) -> Iterator[_Running]:
    port = _free_port()
    log = directory / f"{server.key}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            server.command(port),
            cwd=ROOT,
            env={**os.environ, PORT_ENV: str(port)},
            stdout=sink,
            stderr=sink,
        )
    running = _Running(server, f"http://127.0.0.1:{port}{PATH}", process, log)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wrk(wrk: str, script: Path, url: str, seconds: int) -> tuple[float, int, str | None]:
    """Run ``wrk`` once against ``url``; see `parse_wrk`."""
    done = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if done.returncode != 0:
        return 0.0, 0, f"wrk exited {done.returncode}: {tail_of(done.stdout + done.stderr)}"
    return parse_wrk(done.stdout)


def parse_wrk(output: str) -> tuple[float, int, str | None]:
    """Requests/s, requests, and what went wrong (``None``: every answer 2xx, no socket
    error) from ``wrk``'s report."""
    rate, total = _RATE.search(output), _TOTAL.search(output)
    if rate is None or total is None:
        return 0.0, 0, f"wrk printed no figures: {tail_of(output)}"
    problems = []
    non_2xx = _NON_2XX.search(output)
    if non_2xx is not None:
        problems.append(f"{non_2xx.group(1)} non-2xx answers")
    errors = _SOCKET_ERRORS.search(output)
    if errors is not None:
        problems.append(f"socket errors: {errors.group(1)}")
    return float(rate.group(1)), int(total.group(1)), "; ".join(problems) or None


def _available(server: Server) -> str | None:
    if server.needs is None:
        return None
    try:
        __import__(server.needs)
    except ImportError:
        return f"needs {server.needs} (the bench extra)"
    return None


def run_anchor(
    settings: Settings,
    *,
    shapes: Collection[str] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> AnchorReport:
    """Measure the chosen servers (``shapes``: their keys; all when ``None``)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return AnchorReport(status="skipped", reason="needs wrk (Debian package wrk)")
    chosen = [s for s in SERVERS if shapes is None or s.key in shapes]
    full = settings.target_rep_ns >= FULL.target_rep_ns
    rounds, seconds = (5, 2) if full else (5, 1)
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-served-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        script = directory / "post.lua"
        script.write_text(_SCRIPT)
        servers: list[_Running] = []
        for server in chosen:
            missing = _available(server)
            if missing is not None:
                errors[PREFIX + server.key] = missing
                continue
            running = stack.enter_context(_started(server, directory))
            try:
                _wait_ready(running)
            except RuntimeError as exc:
                errors[PREFIX + server.key] = str(exc)
                continue
            servers.append(running)
        log(f"served rows: {', '.join(r.server.key for r in servers)} ({rounds} x {seconds} s)")
        for running in servers:  # warm-up
            _wrk(wrk, script, running.url, 1)
        for round_ in range(rounds):
            log(f"served round {round_ + 1}/{rounds}")
            for running in servers:
                if running.error is not None:
                    continue
                cpu = running.cpu_seconds()
                rate, total, problem = _wrk(wrk, script, running.url, seconds)
                if problem is not None:
                    running.error = problem
                else:
                    running.samples.append(1e9 / rate)
                    running.cpu_per_request.append((running.cpu_seconds() - cpu) / total * 1e6)
                    running.requests = total
    stats: dict[str, Stats] = {}
    details: dict[str, str] = {}
    for running in servers:
        key = PREFIX + running.server.key
        if running.error is not None:
            errors[key] = running.error
        else:
            stats[key] = summary = summarize(running.samples, running.requests)
            details[key] = (
                f"{1e9 / summary.median_ns:,.0f} requests/s (median round); CPU "
                f"{statistics.median(running.cpu_per_request):,.0f} µs per request in the "
                f"server's processes ({running.server.processes} serving)"
            )
    return AnchorReport(status="ok", stats=stats, errors=errors, details=details)
