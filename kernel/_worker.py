"""``python -m kernel._worker``: one worker of `kernel._workers`, started by its parent.

It reads what to run from the environment the parent set (`kernel._workers` names the
variables: the target, the exposures' shared ports, the options, the parent's pipe), then
runs the service as `kernel.main` does, in this one process, until SIGTERM/SIGINT (which
the parent forwards) or until the parent's pipe closes (the parent died): either way it
shuts down gracefully and exits 0 after a clean shutdown.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections.abc import Mapping
from typing import Any

import trio

from kernel import _workers
from kernel._cli import load_target
from kernel._definitions import App
from kernel._errors import KernelError
from kernel._main import main
from kernel._runtime import Runtime
from kernel._service import Service
from kernel.exposure._server import shared_ports
from kernel.observability._logging import kernel_logger

__all__ = ["load", "run_worker"]


def load(target: str) -> App | Service:
    """The App or Service ``target`` names: ``module:attribute``, or ``path.py:name`` (the
    script runs as ``__mp_main__``, so its ``if __name__ == "__main__":`` block does not)."""
    path, _, name = target.rpartition(":")
    if path.endswith(".py"):
        namespace = runpy.run_path(path, run_name="__mp_main__")
        value = namespace.get(name)
        if not isinstance(value, App | Service):
            raise KernelError(f"worker: {target!r} is not a kernel.App or kernel.Service")
        return value
    return load_target(target)


def _json_object(environ: Mapping[str, str], name: str) -> dict[str, Any]:
    value = json.loads(environ[name])
    if not isinstance(value, dict):
        raise KernelError(f"worker: {name} must be a JSON object, got {value!r}")
    return value


def _until_parent_leaves(fd: int) -> Any:
    async def serve(rt: Runtime) -> None:
        # EOF once every copy of the write end closed: the parent exited, however.
        stream = trio.lowlevel.FdStream(os.dup(fd))
        async with stream:
            while await stream.receive_some(1024):
                pass
        kernel_logger("kernel.workers").warning(
            "worker {}: the parent process is gone; stopping", os.environ.get(_workers.ENV_WORKER)
        )

    return serve


def run_worker(environ: Mapping[str, str]) -> None:
    """Run the worker ``environ`` describes (see the module docstring)."""
    for entry in reversed(json.loads(environ[_workers.ENV_PATH])):
        if isinstance(entry, str) and entry not in sys.path:
            sys.path.insert(0, entry)
    ports = {str(k): int(v) for k, v in _json_object(environ, _workers.ENV_PORTS).items()}
    options = _json_object(environ, _workers.ENV_OPTIONS)
    target = load(environ[_workers.ENV_TARGET])
    token = shared_ports.set(ports)
    try:
        main(
            target,
            serve=_until_parent_leaves(int(environ[_workers.ENV_PARENT_FD])),
            workers=1,
            **options,
        )
    finally:
        shared_ports.reset(token)


if __name__ == "__main__":
    run_worker(os.environ)
