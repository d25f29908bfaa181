"""The ASGI application of an HTTP exposure: Starlette routes over one running `kernel.Runtime`.

Routes (``{base}`` is the exposure's ``base_path``):

- ``POST {base}/task/{id}`` with ``{"input": X}`` → ``{"ok": true, "result": R}``;
- ``POST {base}/event/{id}`` with ``{"payload": P}`` → ``{"ok": true}``;
- ``GET {base}/discovery`` → the allowed ids with the JSON Schemas of their input/payload;
- ``GET {base}/openapi.json`` → the OpenAPI 3.1 document of the same (`kernel.exposure._openapi`);
- ``GET /health``, ``GET /ready`` (``health=True``) and ``GET /metrics`` (``metrics=True``),
  without authentication.

A call is checked in this order, each failure answered before the next step runs:
authentication (401), id allowed and registered (404, the same response either way), the
runtime serving (503), content type (415, anonymous exposures only), body size (413) and
time (408), JSON (400), envelope (400), input (422); then the task or the hooks run.

From the moment a shutdown is requested every HTTP/1 response carries ``Connection: close``
(clients open a new connection, which a load balancer sends elsewhere, instead of reusing one
the server is about to close), and a call refused 503 ``shutting_down`` has its body read
first (within ``body_limit`` and ``body_timeout``): closing a connection with unread data
would reset it and could destroy the answer before the client reads it. Failures are JSON
``{"ok": false, "code", "message", "request_id"}`` (``details`` for 422); an unexpected
exception is a 500 ``"internal error"`` whose details go to the log only. Every response
carries ``x-request-id`` and every call is logged (source ``kernel.exposure``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
import json
import string
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import resilience as rs
from kernel._definitions import Event, Task
from kernel._errors import ConfigError, PublicError
from kernel._graph import KERNEL_PLACE, Node
from kernel._shutdown import ShuttingDown
from kernel._structure import converter, structure
from kernel.durable import WORKFLOW
from kernel.exposure._config import BearerAuth, ExposureConfig
from kernel.exposure._context import new_request_id, principal
from kernel.exposure._context import request_id as outgoing_request_id
from kernel.exposure._limits import Refusal, parse_json, read_body
from kernel.exposure._openapi import openapi_document
from kernel.exposure._schema import json_schema
from kernel.metrics import prometheus_text
from kernel.observability import kernel_logger

if TYPE_CHECKING:
    from loguru import Logger

    from kernel._host import Host
    from kernel.exposure.console import Console

__all__ = ["REQUEST_ID_KEY", "ExposureApp", "build_app"]

#: Where the request id is kept in the ASGI scope.
REQUEST_ID_KEY: Final = "kernel.exposure.request_id"
_ERROR_KEY: Final = "kernel.exposure.error"
_PRINCIPAL_KEY: Final = "kernel.exposure.principal"
#: The `kernel.exposure._limits.ReceiveNow` of the request, when the server offers one.
_RECEIVED_KEY: Final = "kernel.exposure.received"
_REQUEST_ID_HEADER: Final = b"x-request-id"
_CLOSE: Final = (b"connection", b"close")
_HTTP1: Final = frozenset({"1.0", "1.1"})
_REQUEST_ID_CHARS: Final = frozenset((string.ascii_letters + string.digits + "._:-").encode())
_JSON: Final = "application/json"
_PROMETHEUS: Final = "text/plain; version=0.0.4; charset=utf-8"
_JSON_TYPES: Final[Mapping[type[Any], str]] = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}

_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}
_STATUS_CODES: Final[Mapping[int, str]] = {404: "not_found", 405: "method_not_allowed"}


def _scan(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, bool]:
    """The request id (the first incoming ``x-request-id`` when it is 1 to 64 of
    ``A-Za-z0-9._:-``, else a new one: 32 hex digits) and whether a request body follows."""
    request_id: str | None = None
    seen = body = False
    for name, value in headers:
        if name == _REQUEST_ID_HEADER:
            if not seen and 0 < len(value) <= 64 and _REQUEST_ID_CHARS.issuperset(value):
                request_id = value.decode("ascii")
            seen = True
        elif name == b"content-length":
            body = value != b"0"
        elif name == b"transfer-encoding":
            body = True
    return request_id or new_request_id(), body


#: Built once (``json.dumps`` with options builds an encoder per call). ASCII output: a
#: lone surrogate a client sent (valid JSON) still renders.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _json(status: int, content: Any, headers: Mapping[str, str] | None = None) -> Response:
    """``content`` as a JSON response."""
    # ASCII output (the encoder's default): a lone surrogate a client sent (valid JSON)
    # still renders.
    body = _ENCODER.encode(content).encode()
    return Response(body, status, headers, _JSON)


def _failure(
    status: int,
    code: str,
    message: str,
    request_id: str,
    details: list[str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    content: dict[str, Any] = {
        "ok": False,
        "code": code,
        "message": message,
        "request_id": request_id,
    }
    if details is not None:
        content["details"] = details
    return _json(status, content, headers)


def _single(exc: Exception) -> Exception:
    """The one exception inside (nested) single-member groups, as a nursery may wrap it."""
    while (
        isinstance(exc, ExceptionGroup)
        and len(exc.exceptions) == 1
        and isinstance(exc.exceptions[0], Exception)
    ):
        exc = exc.exceptions[0]
    return exc


def _public_status(exc: PublicError) -> int:
    status = exc.http_status
    return status if type(status) is int and 400 <= status <= 599 else 500


def _json_type(value: object) -> str:
    """How JSON calls the type of the scalar ``value``."""
    return _JSON_TYPES[type(value)]


def _invalid(owner: str, details: list[str]) -> Refusal:
    return Refusal(422, "invalid_input", f"invalid input for {owner}", details=details)


@attrs.frozen(eq=False)
class _TaskRoute:
    """An allowed task, and how a call's ``input`` becomes its arguments."""

    task: Task
    owner: str
    # Without input=: the body's signature, and its injected keywords (never from a caller).
    signature: inspect.Signature | None
    deps: frozenset[str]
    placeholders: Mapping[str, None]

    @classmethod
    def of(cls, node: Node) -> _TaskRoute:
        task = node.definition
        assert isinstance(task, Task)
        signature = None if task.input is not None else inspect.signature(task.fn)
        deps = frozenset(node.deps)
        return cls(task, f"task {task.id!r}", signature, deps, dict.fromkeys(deps))

    def arguments(self, envelope: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments of the call, else `Refusal` 422."""
        value = envelope.get("input")
        if self.signature is None:
            try:
                structured = structure(
                    {} if value is None else value, self.input, owner=self.owner, path="input"
                )
            except ConfigError as exc:
                raise _invalid(self.owner, exc.problems) from None
            return (structured,), {}
        if value is None:
            args: tuple[Any, ...] = ()
            kwargs: dict[str, Any] = {}
        elif isinstance(value, list):
            args, kwargs = tuple(value), {}
        elif isinstance(value, dict):
            args, kwargs = (), value
            injected = sorted(self.deps.intersection(kwargs))
            if injected:
                # Said as Python would for an unknown keyword: deps are nobody's business.
                raise _invalid(
                    self.owner, [f"input: got an unexpected keyword argument {injected[0]!r}"]
                )
        else:
            raise _invalid(
                self.owner,
                [
                    "input: expected null, an array (positional arguments) or an object "
                    f"(keyword arguments), got {_json_type(value)}"
                ],
            )
        try:
            self.signature.bind(*args, **kwargs, **self.placeholders)
        except TypeError as exc:
            raise _invalid(self.owner, [f"input: {exc}"]) from None
        return args, kwargs

    @property
    def input(self) -> type[Any]:
        assert self.task.input is not None
        return self.task.input


def _allowed(nodes: list[Node], patterns: tuple[str, ...]) -> list[Node]:
    """The user's ``nodes`` (never the kernel's built-ins, never durable workflows, which
    run only under their engine) whose id matches a pattern."""
    return [
        node
        for node in nodes
        if node.place != KERNEL_PLACE
        and not _is_workflow(node)
        and any(fnmatch.fnmatchcase(node.id, pattern) for pattern in patterns)
    ]


def _is_workflow(node: Node) -> bool:
    tags = getattr(node.definition, "tags", ())
    return any(use.tag is WORKFLOW for use in tags)


class ExposureApp:
    """The Starlette app serving ``runtime`` as ``config`` says; `asgi` is what to serve."""

    def __init__(self, runtime: Host, config: ExposureConfig) -> None:
        self._runtime = runtime
        # Unauthenticated probes share one report per period (single-flight): no amplification.
        self._health_cache = (
            rs.Cache(ttl=config.health_cache, max_size=1) if config.health_cache > 0 else None
        )
        self._config = config
        graph = runtime.graph
        self._tasks = {
            node.id: _TaskRoute.of(node) for node in _allowed(graph.tasks(), config.allow_tasks)
        }
        self._events: dict[str, Event] = {}
        for node in _allowed(graph.events(), config.allow_events):
            assert isinstance(node.definition, Event)
            self._events[node.id] = node.definition
        self._discovery = json.dumps(self._discovery_document(), separators=(",", ":")).encode()
        self._bearer = config.auth if isinstance(config.auth, BearerAuth) else None
        self._log: Logger = kernel_logger("kernel.exposure")
        base = config.base_path
        routes = [
            Route(f"{base}/task/{{id:path}}", self.task, methods=["POST"]),
            Route(f"{base}/event/{{id:path}}", self.event, methods=["POST"]),
            Route(f"{base}/discovery", self.discovery, methods=["GET"]),
            Route(f"{base}/openapi.json", self.openapi, methods=["GET"]),
        ]
        console = self._console() if config.console else None
        if console is not None:
            routes.extend(console.routes())
        self._openapi = json.dumps(
            openapi_document(
                title=graph.root.id,
                config=config,
                tasks={id: route.task for id, route in self._tasks.items()},
                events=self._events,
                extra=console.operations() if console is not None else (),
                extra_schemas=console.schemas() if console is not None else None,
            ),
            separators=(",", ":"),
        ).encode()
        if config.health:
            routes.append(Route("/health", self.health, methods=["GET"]))
            routes.append(Route("/ready", self.ready, methods=["GET"]))
        if config.metrics:
            routes.append(Route("/metrics", self.metrics, methods=["GET"]))
        starlette = Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_exception, Exception: self._crash},
        )
        starlette.router.redirect_slashes = False
        #: The ASGI application to serve.
        self.asgi: ASGIApp = _Calls(starlette, self._log, runtime)

    def _console(self) -> Console:
        from kernel.exposure.console import Console, Gate

        gate = Gate(
            self._authenticate, self._answer, self._read_body, _json, self._health_report, _is_json
        )
        return Console(self._runtime, self._config, frozenset(self._tasks), gate)

    # ------------------------------------------------------------------ endpoints

    async def task(self, request: Request) -> Response:
        """``POST {base}/task/{id}``: run the task through ``rt.run_task``."""
        try:
            caller = await self._authenticate(request)
            route = self._tasks.get(request.path_params["id"])
            if route is None:
                raise Refusal(404, "not_found", "not found")
            await self._check_serving(request)
            args, kwargs = route.arguments(await self._envelope(request, "input"))
            with _call_context(caller, request):
                result = await self._runtime.run_task(route.task, *args, **kwargs)
            return _json(200, {"ok": True, "result": converter.unstructure(result)})
        except Exception as exc:
            return self._answer(request.scope, exc)

    async def event(self, request: Request) -> Response:
        """``POST {base}/event/{id}``: emit the event with ``rt.emit``."""
        try:
            caller = await self._authenticate(request)
            event = self._events.get(request.path_params["id"])
            if event is None:
                raise Refusal(404, "not_found", "not found")
            await self._check_serving(request)
            payload = (await self._envelope(request, "payload")).get("payload")
            if event.payload is not None:
                try:
                    payload = structure(
                        {} if payload is None else payload,
                        event.payload,
                        owner=f"event {event.id!r}",
                        path="payload",
                    )
                except ConfigError as exc:
                    raise _invalid(f"event {event.id!r}", exc.problems) from None
            with _call_context(caller, request):
                await self._runtime.emit(event, payload)
            return _json(200, {"ok": True})
        except Exception as exc:
            return self._answer(request.scope, exc)

    async def discovery(self, request: Request) -> Response:
        """``GET {base}/discovery``: the allowed tasks and events, with their schemas."""
        try:
            await self._authenticate(request)
        except Exception as exc:
            return self._answer(request.scope, exc)
        return Response(self._discovery, 200, media_type=_JSON)

    async def openapi(self, request: Request) -> Response:
        """``GET {base}/openapi.json``: the OpenAPI 3.1 document (`kernel.exposure._openapi`)."""
        try:
            await self._authenticate(request)
        except Exception as exc:
            return self._answer(request.scope, exc)
        return Response(self._openapi, 200, media_type=_JSON)

    async def _health_report(self) -> dict[str, Any]:
        if self._health_cache is None:
            return (await self._runtime.health()).to_dict()
        report: dict[str, Any] = await self._health_cache.get_or_compute(
            "report", self._fresh_health_report
        )
        return report

    async def _fresh_health_report(self) -> dict[str, Any]:
        return (await self._runtime.health()).to_dict()

    async def health(self, request: Request) -> Response:
        """``GET /health``: ``rt.health()``; 503 when the app is unhealthy (or disposing)."""
        try:
            report = await self._health_report()
        except ShuttingDown as exc:
            return self._answer(request.scope, exc)
        return _json(503 if report["status"] == "unhealthy" else 200, report)

    async def ready(self, request: Request) -> Response:
        """``GET /ready``: ``rt.health()``; 503 while the app is not ready."""
        try:
            report = await self._health_report()
        except ShuttingDown as exc:
            return self._answer(request.scope, exc)
        return _json(200 if self._runtime.ready else 503, report)

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: the runtime's metrics (else the process-wide ones), Prometheus text."""
        return Response(prometheus_text(self._runtime.metrics), 200, media_type=_PROMETHEUS)

    # ------------------------------------------------------------------ steps

    async def _authenticate(self, request: Request) -> Any:
        """The caller's principal, else `Refusal` 401. A checkpoint if ``verify`` is."""
        auth = self._config.auth
        if auth is None:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            caller = (
                self._bearer.principal(token) if self._bearer is not None else await auth(token)
            )
            if caller is not None:
                request.scope[_PRINCIPAL_KEY] = caller
                return caller
        raise Refusal(401, "unauthorized", "missing or invalid bearer token", headers=_CHALLENGE)

    async def _check_serving(self, request: Request) -> None:
        """Raise unless the runtime takes calls: `ShuttingDown` once it has stopped being
        ready (after reading the body: see the module docstring), `Refusal` 503
        ``not_ready`` while it is still starting."""
        runtime = self._runtime
        if runtime.ready:
            return
        if runtime.closing:
            with contextlib.suppress(Refusal):
                await self._read_body(request)
            raise ShuttingDown("the runtime is shutting down")
        raise Refusal(503, "not_ready", "the service is starting")

    async def _read_body(self, request: Request) -> bytes:
        """The request body, within ``body_limit`` (413) and ``body_timeout`` (408)."""
        config = self._config
        return await read_body(
            request.receive,
            content_length=request.headers.get("content-length"),
            limit=config.body_limit,
            time_limit=config.body_timeout,
            received=request.scope.get(_RECEIVED_KEY),
        )

    async def _envelope(self, request: Request, key: str) -> Mapping[str, Any]:
        """The body as ``{key: ...}`` (``{}`` for an empty body), else a `Refusal`."""
        headers = request.headers
        if self._config.auth is None and not _is_json(headers.get("content-type")):
            # A browser cannot send this header cross-site without a CORS preflight (which
            # is never granted): an anonymous exposure is safe from cross-site requests.
            raise Refusal(
                415,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            )
        body = await self._read_body(request)
        if not body:
            return {}
        envelope = parse_json(body, max_depth=self._config.max_depth)
        if not isinstance(envelope, dict) or any(name != key for name in envelope):
            raise Refusal(
                400, "bad_request", f'the body must be a JSON object {{"{key}": ...}} (or empty)'
            )
        return envelope

    def _answer(self, scope: Scope, exc: Exception) -> Response:
        """The response for a call that raised ``exc``."""
        request_id = scope[REQUEST_ID_KEY]
        exc = _single(exc)
        if isinstance(exc, Refusal):
            details = exc.details if exc.status == 422 else None
            return _failure(exc.status, exc.code, exc.message, request_id, details, exc.headers)
        if isinstance(exc, PublicError):
            code = exc.code if isinstance(exc.code, str) else "internal"
            message = str(getattr(exc, "message", exc))
            return _failure(_public_status(exc), code, message, request_id)
        if isinstance(exc, ShuttingDown):
            return _failure(503, "shutting_down", "the service is shutting down", request_id)
        scope[_ERROR_KEY] = exc
        return _failure(500, "internal", "internal error", request_id)

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        code = _STATUS_CODES.get(status, "bad_request")
        return _failure(
            status, code, str(exc.detail).lower(), request.scope[REQUEST_ID_KEY], None, exc.headers
        )

    async def _crash(self, request: Request, exc: Exception) -> Response:
        request.scope[_ERROR_KEY] = exc
        return _failure(500, "internal", "internal error", request.scope[REQUEST_ID_KEY])

    def _discovery_document(self) -> dict[str, Any]:
        return {
            "ok": True,
            "tasks": [
                {
                    "id": id,
                    "input_schema": None if route.task.input is None else json_schema(route.input),
                }
                for id, route in self._tasks.items()
            ],
            "events": [
                {
                    "id": id,
                    "payload_schema": None if event.payload is None else json_schema(event.payload),
                }
                for id, event in self._events.items()
            ],
        }


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == _JSON or (media.startswith("application/") and media.endswith("+json"))


class _Calls:
    """ASGI wrapper: the request id on every response, ``Connection: close`` where the
    connection must not be reused, and one log line per call."""

    def __init__(self, app: ASGIApp, log: Logger, runtime: Host) -> None:
        self._app = app
        self._log = log
        self._runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id, unread = _scan(scope["headers"])
        # (HTTP/2 multiplexes: a refused stream leaves the connection usable.)
        http1 = scope.get("http_version", "1.1") in _HTTP1
        unread = unread and http1
        runtime = self._runtime
        scope[REQUEST_ID_KEY] = request_id
        header = (_REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 0
        lost: Exception | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, lost
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), header]
                if unread or (http1 and runtime.closing):
                    # Answered before the whole body came (a refusal): the server will close
                    # the connection. Or shutting down: it will close it soon. Either way the
                    # client must not send on it again.
                    headers.append(_CLOSE)
                message = {**message, "headers": headers}
            try:
                await send(message)
            except Exception as exc:
                lost = exc
                raise

        app_receive = receive
        if unread:

            async def receive_body() -> Message:
                nonlocal unread
                message = await receive()
                if not message.get("more_body", False):
                    unread = False
                return message

            app_receive = receive_body
        channel = getattr(receive, "__self__", None)
        if isinstance(channel, trio.MemoryReceiveChannel):
            # hypercorn's trio worker hands over a memory channel's receive: the body that
            # came with the headers can be taken at once, with no deadline to arm.

            def received() -> Message | None:
                nonlocal unread
                try:
                    message: Message = channel.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    return None  # (receive will wait, or say why)
                if not message.get("more_body", False):
                    unread = False
                return message

            scope[_RECEIVED_KEY] = received

        started = trio.current_time()
        error: Exception | None = None
        try:
            await self._app(scope, app_receive, send_with_id)
        except Exception as exc:
            # Escaped Starlette (after its error response, if any, went out): logged here,
            # not re-raised (the server would only log it again).
            error = exc
        error = error or scope.get(_ERROR_KEY)
        if error is lost:
            error = None
        method, path = scope["method"], scope["path"]
        data = {
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((trio.current_time() - started) * 1000, 3),
        }
        if _PRINCIPAL_KEY in scope:
            data["principal"] = scope[_PRINCIPAL_KEY]
        if error is not None:
            self._log.opt(exception=error).error(
                "{} {} -> {}: {}", method, path, status, type(error).__name__, data=data
            )
        elif lost is not None:
            # The client went away (or the connection broke): not the app's failure.
            self._log.warning(
                "{} {} -> {}: the connection failed while sending the response ({})",
                method,
                path,
                status,
                type(lost).__name__,
                data=data,
            )
        else:
            self._log.info("{} {} -> {}", method, path, status, data=data)


def build_app(runtime: Host, config: ExposureConfig) -> ASGIApp:
    """The ASGI application serving ``runtime`` as ``config`` says."""
    return ExposureApp(runtime, config).asgi


@contextmanager
def _call_context(caller: Any, request: Request) -> Iterator[None]:
    """Who called, the request id (carried on by remote calls the task makes), and — when
    OpenTelemetry is in use — the caller's trace context from ``traceparent``, so the task's
    span continues the caller's trace."""
    caller_token = principal.set(caller)
    id_token = outgoing_request_id.set(request.scope[REQUEST_ID_KEY])
    trace_token = _attach_trace_context(request)
    try:
        yield
    finally:
        if trace_token is not None:
            from opentelemetry import context

            context.detach(trace_token)
        outgoing_request_id.reset(id_token)
        principal.reset(caller_token)


def _attach_trace_context(request: Request) -> Any:
    if "opentelemetry.trace" not in sys.modules or "traceparent" not in request.headers:
        return None
    from opentelemetry import context, propagate

    return context.attach(propagate.extract(dict(request.headers)))
