"""``REDIS_URL``, or a throwaway ``redis-server`` for the run: what the Redis examples
(``fleet_limits.py``, ``order_lanes.py``) start when no server is given.

Not a program of its own: the examples import it (``from throwaway_redis import redis_url``),
which works because Python puts a script's folder first on ``sys.path``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["redis_url"]


@contextmanager
def redis_url(name: str) -> Iterator[str]:
    """``REDIS_URL``, or a ``redis-server`` of our own (no persistence, a free loopback port,
    a temporary folder named after the example ``name``), stopped when the block ends."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("REDIS_URL is not set and there is no redis-server to start (apt install it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tempfile.mkdtemp(prefix=f"{name}-example-")
    print(f"REDIS_URL is not set: starting a throwaway redis-server on 127.0.0.1:{port}")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)
