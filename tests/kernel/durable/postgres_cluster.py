"""A throwaway PostgreSQL cluster for the durable store's tests.

`cluster()` runs Debian's server binaries (``/usr/lib/postgresql/<version>/bin``) on a
fresh temporary directory and a free loopback port, yields a DSN and removes everything
afterwards. ``initdb`` refuses to run as root, so as root the binaries run as the
``postgres`` OS user the Debian package creates. Without PostgreSQL the calling test is
skipped, except with ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ["cluster", "restartable_cluster"]

_INSTALL_ROOT = Path("/usr/lib/postgresql")
_SERVER_USER = "postgres"
_LOG_TAIL_LINES = 30


def _unavailable(reason: str) -> NoReturn:
    message = f"PostgreSQL is not installed: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    parts = bin_dir.parent.name.split(".")
    return tuple(int(part) for part in parts) if all(p.isdigit() for p in parts) else (-1,)


def _bin_dir() -> Path:
    """The ``bin`` directory of the highest installed PostgreSQL version."""
    found = [
        path
        for path in _INSTALL_ROOT.glob("*/bin")
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file()
    ]
    if not found:
        _unavailable(f"no {_INSTALL_ROOT}/<version>/bin/initdb (apt-get install postgresql)")
    return max(found, key=_version_key)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log file was written)"
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(the log file is empty)"


@contextlib.contextmanager
def cluster() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster; yield its DSN; stop and delete it afterwards.

    The server trusts every local connection (user ``test``, database ``postgres``) and
    runs with ``fsync=off``: fast, and fine for data that dies with the test session.
    """
    with restartable_cluster() as (dsn, _):
        yield dsn


@contextlib.contextmanager
def restartable_cluster() -> Iterator[tuple[str, Callable[[], None]]]:
    """`cluster`, yielding also ``restart()``: stop the server at once (``-m immediate``,
    as a crash: every connection cut, no checkpoint) and start it again on the same port;
    blocks until it accepts connections."""
    bin_dir = _bin_dir()
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(_SERVER_USER)
        except KeyError:
            _unavailable(f"no {_SERVER_USER!r} OS user to run the server as (initdb refuses root)")
        run_as = ["runuser", "-u", _SERVER_USER, "--"]

    base = Path(tempfile.mkdtemp(prefix="durable-pg-"))
    data, sockets, log = base / "data", base / "sock", base / "server.log"
    sockets.mkdir()
    if owner is not None:
        for path in (base, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # cwd=base: the server user may not be allowed into the caller's directory.
        return subprocess.run(
            [*run_as, *args], cwd=base, capture_output=True, text=True, check=False
        )

    def fail(step: str, done: subprocess.CompletedProcess[str]) -> NoReturn:
        raise RuntimeError(
            f"PostgreSQL {step} failed (exit {done.returncode}): {done.stderr.strip()}\n"
            f"--- {log} (tail) ---\n{_log_tail(log)}"
        )

    initialised = False
    try:
        done = run(
            str(bin_dir / "initdb"),
            *("-D", str(data), "-A", "trust", "-U", "test", "-E", "UTF8", "--locale=C"),
            "--no-sync",
        )
        if done.returncode != 0:
            fail("initdb", done)
        initialised = True  # from here on, stop the server whatever happens
        port = _free_port()
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        done = run(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"
        )
        if done.returncode != 0:
            fail("server start", done)

        def restart() -> None:
            done = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop")
            if done.returncode != 0:
                fail("server stop", done)
            done = run(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-o",
                options,
                "start",
            )
            if done.returncode != 0:
                fail("server restart", done)

        yield f"postgresql://test@127.0.0.1:{port}/postgres", restart
    finally:
        if initialised:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
