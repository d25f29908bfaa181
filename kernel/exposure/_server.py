"""`http`: the resource serving tasks and events over HTTP (hypercorn's trio worker).

The server runs in the resource's own nursery, started with ``nursery.start`` so that the
bound address is known when the resource's value is handed out.

Stopping, and how ``drain_timeout`` and ``graceful_timeout`` relate: every task call and
emission a request makes is a call the runtime tracks (`kernel._calls`). When a shutdown is
requested, intake stops: requests are answered 503 ``shutting_down`` with
``Connection: close`` (after their body was read, so closing cannot reset the connection
under the client); calls in flight get the runtime's ``drain_timeout``, and those still
running then are cancelled (their callers get the same 503) before ANY resource is disposed,
whatever the order of registration. So a call never runs longer than ``drain_timeout``.
Later, when this resource is disposed, the runtime cancels its nursery: the cancellation is
turned into hypercorn's graceful shutdown (listeners closed at once, so new connections are
refused; idle keep-alive connections closed), shielded and bounded by ``graceful_timeout``,
which by then only covers writing the last answers and requests that never reached a call
(still sending their headers or body).

Importing this module imports neither hypercorn nor Starlette: they are imported when an
exposure starts (the ``http`` extra).
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, cast

import attrs
import trio

from kernel._definitions import Resource, resource
from kernel._errors import KernelError
from kernel._scope import Scope
from kernel.exposure._config import EXPOSURE, Authenticator, BearerAuth, ExposureConfig
from kernel.observability import kernel_logger

if TYPE_CHECKING:
    from hypercorn.config import Config
    from hypercorn.typing import Framework
    from starlette.types import ASGIApp

__all__ = ["Exposure", "http", "listening_socket", "shared_ports"]

#: Where hypercorn's own messages go (a standard logging logger: silent below WARNING
#: unless the application configures logging).
SERVER_LOGGER: Final = "hypercorn.error"

#: In a worker of ``kernel.main(..., workers=N)``: the port each exposure (by resource id)
#: shares with the other workers (bound with ``SO_REUSEPORT``). Empty in a single process.
shared_ports: ContextVar[Mapping[str, int]] = ContextVar(
    "kernel.exposure.shared_ports", default=MappingProxyType({})
)

#: Seconds the request line and headers may take, and an idle keep-alive connection may
#: stay open (hypercorn's ``keep_alive_timeout``).
KEEP_ALIVE_TIMEOUT: Final = 5.0

_EXTRA: Final = "kernel.exposure.http needs the 'http' extra: pip install 'trio-runner[http]'"


@attrs.frozen
class Exposure:
    """The value of a running `http` exposure.

    ``url`` is where it listens (``"http://127.0.0.1:54321"``, no trailing slash),
    ``base_url`` is ``url`` + the base path (where tasks, events and discovery are),
    ``config`` its settings.
    """

    url: str
    base_url: str
    config: ExposureConfig


def http(
    id: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    base_path: str = "/__runner",
    auth: BearerAuth | Authenticator | None = None,
    allow_tasks: Iterable[str] = (),
    allow_events: Iterable[str] = (),
    body_limit: int = 2 * 1024 * 1024,
    max_depth: int = 32,
    health: bool = True,
    metrics: bool = True,
    allow_anonymous: bool = False,
    graceful_timeout: float | timedelta = 5.0,
    read_timeout: float | timedelta = 30.0,
    body_timeout: float | timedelta = 60.0,
    health_cache: float | timedelta = 1.0,
    console: bool = False,
) -> Resource:
    """A resource serving the app's allowed tasks and events over HTTP; its value is an
    `Exposure` (``rt.resource(exposure).url``).

    - ``host``/``port``: where to listen (``port=0``: a free port, see ``Exposure.url``).
    - ``base_path``: the prefix of ``/task/{id}``, ``/event/{id}`` and ``/discovery``.
    - ``auth``: ``BearerAuth(tokens=...)`` or ``async verify(token) -> principal | None``.
      Required: without it ``http(...)`` raises `kernel.DefinitionError`, unless
      ``allow_anonymous=True`` says in so many words to serve without authentication.
    - ``allow_tasks``/``allow_events``: ids or glob patterns (``"api.public.*"``) of what
      may be called; nothing else is (default: nothing). The kernel's own events never are.
    - ``body_limit``: the largest request body in bytes (413 beyond, checked while reading);
      ``max_depth``: the deepest JSON nesting (400 beyond, at most 512).
    - ``health``: serve ``GET /health`` and ``GET /ready``; ``metrics``: ``GET /metrics``.
    - ``graceful_timeout``: seconds (or a timedelta) the server's own stop may take, once
      every call has ended: it never extends a task call, which gets the runtime's
      ``drain_timeout`` and is then cancelled (see the module docstring).
    - ``read_timeout``: seconds a connection may wait between two reads of request data (a
      client that stalls mid-body is disconnected, not held forever); hypercorn counts it in
      whole seconds (rounded up).
    - ``body_timeout``: seconds the whole request body may take to arrive, however steadily
      it drips (408 ``request_timeout`` beyond, and the connection is closed).
    - The request line and headers must arrive within hypercorn's keep-alive timeout (5 s
      from the connection's opening or its previous answer, `KEEP_ALIVE_TIMEOUT`), which
      also closes idle keep-alive connections; ``read_timeout`` does not apply to them.
    - ``Expect: 100-continue``: hypercorn answers ``100 Continue`` as soon as the headers are
      in, before the app sees the request, so a declared ``Content-Length`` over
      ``body_limit`` gets its 413 (with ``Connection: close``) after the ``100 Continue``.
    - ``health_cache``: seconds ``/health`` and ``/ready`` reuse one health report, so a
      flood of unauthenticated probes runs the checks at most once per period (0: always).
    - ``console``: serve the operator console at ``{base}/console/`` (a page, and its JSON
      API under ``{base}/console/api/`` behind the same bearer token; see
      `kernel.exposure.console`). Off by default.

    Tasks and hooks run by a call read who made it from ``kernel.exposure.principal`` (a
    ContextVar). Bad
    settings raise TypeError/ValueError naming the setting, here. The resource carries
    the ``kernel.exposure`` tag with its `ExposureConfig` (what ``trio-runner doctor``
    checks). Starting it needs the ``http`` extra (hypercorn, Starlette).
    """
    config = ExposureConfig(
        host=host,
        port=port,
        base_path=base_path,
        auth=auth,
        allow_tasks=allow_tasks,
        allow_events=allow_events,
        body_limit=body_limit,
        max_depth=max_depth,
        health=health,
        metrics=metrics,
        allow_anonymous=allow_anonymous,
        graceful_timeout=graceful_timeout,
        read_timeout=read_timeout,
        body_timeout=body_timeout,
        health_cache=health_cache,
        console=console,
    )

    async def serve_http(scope: Scope) -> Exposure:
        return await _start(scope, config)

    return resource(id, tags=[EXPOSURE.with_config(config)])(serve_http)


async def _start(scope: Scope, config: ExposureConfig) -> Exposure:
    if scope.runtime is None:
        raise KernelError(f"exposure {scope.id!r}: no runtime to serve (scope.runtime is None)")
    try:
        from hypercorn.config import Config

        from kernel.exposure._app import build_app
    except ImportError as exc:
        raise KernelError(_EXTRA) from exc
    app = build_app(scope.runtime, config)
    shared = shared_ports.get().get(scope.id)
    sock = (
        listening_socket(config.host, config.port)
        if shared is None
        else listening_socket(config.host, shared, reuse_port=True)
    )
    server = server_config(Config(), config, sock.detach())
    binds: list[str] = await scope.nursery.start(serve, app, server)
    url = binds[0]
    kernel_logger(scope.id).info("serving HTTP on {}{}", url, config.base_path)
    return Exposure(url=url, base_url=url + config.base_path, config=config)


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host`` and ``port``, set up as hypercorn sets up its own;
    with ``reuse_port``, ``SO_REUSEPORT`` too (workers share the port: the kernel spreads
    new connections over the processes listening on it).

    Bound here rather than by hypercorn, which leaks its socket when the bind fails: the
    `OSError` (address in use, unknown host) comes out as itself.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def server_config(server: Config, config: ExposureConfig, fd: int) -> Config:
    """``server`` (a fresh hypercorn ``Config``) set up as ``config`` says, to serve on the
    bound socket ``fd`` (which it then owns)."""
    server.bind = [f"fd://{fd}"]
    server.accesslog = None  # every call is logged by the app, redacted, with its request id
    server.errorlog = logging.getLogger(SERVER_LOGGER)
    server.graceful_timeout = config.graceful_timeout
    server.read_timeout = math.ceil(config.read_timeout)  # hypercorn types it as whole seconds
    server.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    server.include_server_header = False
    return server


async def serve(app: ASGIApp, server: Config, *, task_status: trio.TaskStatus[list[str]]) -> None:
    """Serve until cancelled, then stop gracefully (shielded, bounded by the server's
    ``graceful_timeout``)."""
    from hypercorn.trio import serve as hypercorn_serve

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_when_cancelled, stop)
        with trio.CancelScope(shield=True):
            await hypercorn_serve(
                cast("Framework", app), server, shutdown_trigger=stop.wait, task_status=task_status
            )
        nursery.cancel_scope.cancel()


async def _stop_when_cancelled(stop: trio.Event) -> None:
    try:
        await trio.sleep_forever()
    finally:
        stop.set()
