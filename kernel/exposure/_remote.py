"""Remote tasks: call a task that another process serves over HTTP as if it were local.

``kernel.exposure.remote(id, base_url=..., token=...)`` is a resource holding an
``httpx.AsyncClient`` (closed when the app stops); ``kernel.remote(task, via=endpoint)`` is
a task definition with the same id, input and result types whose body POSTs
``{"input": ...}`` to ``{base_path}/task/{id}`` on that endpoint. So

    kernel.override(place_order, kernel.remote(place_order, via=orders_api))

moves ``place_order`` to another process without touching its callers.

- The remote task keeps the local task's middleware (a timeout, a breaker, a cache run on
  the caller's side, around the HTTP call) unless ``middleware=`` replaces it. The server
  runs the real task with its own middleware too: a retry declared on the task therefore
  runs on both sides when it matches the error the caller sees (see `retryable`).
- A failure status comes back as `kernel.RemoteError` (status, code, request id, message;
  a 422's field problems are appended to the message). A code declared by a
  `kernel.PublicError` subclass is raised as that class instead (see `public_error_for`).
- A transport failure (connection refused or broken, a timeout: httpx's
  ``httpx.TransportError``) is raised as `kernel.RemoteUnavailable`, a `kernel.RemoteError`
  with no status, chained from httpx's exception (``__cause__``), so callers catch one
  kernel error for every way a remote call fails.
- The client keeps up to ``max_connections`` connections alive and gives each request one
  of its own (`kernel.exposure._connections`): requests beyond that wait for a free connection.
  It keeps no cookies (the exposure sets none; httpx's cookie jar costs every request).
- Each request carries ``x-request-id`` (the ``kernel.exposure.request_id`` context
  variable when set, else a new id of 32 hex digits) and, when OpenTelemetry is in use and a span
  is current, a W3C ``traceparent`` (``opentelemetry.propagate.inject``).

Importing this module imports neither httpx nor OpenTelemetry: httpx is imported when a
``remote`` resource starts, OpenTelemetry only when it is already loaded.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import attrs

import middleware as mw
from kernel._definitions import Resource, Task, resource
from kernel._errors import DefinitionError, PublicError, RemoteError, RemoteUnavailable
from kernel._structure import converter, structure
from kernel.exposure._context import new_request_id, request_id
from resilience import validate

if TYPE_CHECKING:
    import httpx

__all__ = [
    "PROTOCOL_CODES",
    "RemoteEndpoint",
    "public_error_for",
    "remote",
    "remote_task",
    "retryable",
]

#: Codes the exposure itself answers with: never mapped to a `kernel.PublicError` subclass,
#: even one that declares the same code (a missing route must not pass for a domain error).
PROTOCOL_CODES: Final = frozenset(
    {
        "malformed_json",
        "unauthorized",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "unsupported_media_type",
        "invalid_input",
        "not_ready",
        "shutting_down",
        "internal",
    }
)

#: The keyword the endpoint is injected under into a remote task's body.
_VIA: Final = "_remote_via"
_HEADER_SAFE: Final = re.compile(r"^[\x21-\x7e]+$")
_OWNER: Final = "kernel.exposure.remote"
#: Statuses worth another attempt: the server (or a proxy before it) is briefly unavailable.
_RETRYABLE_STATUSES: Final = frozenset({502, 503, 504})


@attrs.frozen(eq=False)
class RemoteEndpoint:
    """The value of a `remote` resource: an ``httpx.AsyncClient`` and the exposure's base path.

    The client carries the base URL, the timeout and the ``authorization`` header; it is
    closed when the resource is disposed.
    """

    client: httpx.AsyncClient
    base_path: str
    # Each task's absolute URL, merged with the base URL once (httpx parses and merges a
    # relative URL on every request, a good part of its per-request cost).
    _urls: dict[str, httpx.URL] = attrs.field(factory=dict, init=False, repr=False)

    def _url(self, task_id: str) -> httpx.URL:
        url = self._urls.get(task_id)
        if url is None:
            url = self._urls[task_id] = self.client.build_request(
                "POST", f"{self.base_path}/task/{task_id}"
            ).url
        return url

    async def call_task(self, task_id: str, input: Any) -> Any:
        """POST ``{"input": input}`` to the task ``task_id``; return the decoded result.

        ``input`` must be JSON-serializable (unstructured already). Raises `RemoteError`,
        a `kernel.PublicError` subclass (see `public_error_for`), or `RemoteUnavailable`
        (from httpx's transport error). A checkpoint; cancellation propagates (the request
        is abandoned and its connection closed).
        """
        headers = {"x-request-id": request_id.get() or new_request_id()}
        if "opentelemetry.trace" in sys.modules:
            # No span can be current unless OpenTelemetry's trace API is loaded.
            from opentelemetry.propagate import inject

            inject(headers)
        try:
            response = await self.client.post(
                self._url(task_id), json={"input": input}, headers=headers
            )
        except _transport_error() as exc:
            raise RemoteUnavailable(
                f"remote task {task_id!r}: no answer from {self.client.base_url} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return _result(task_id, response)


def _transport_error() -> type[Exception]:
    """httpx's transport error class (httpx is loaded: a client exists)."""
    import httpx

    return httpx.TransportError


def _body(response: httpx.Response) -> dict[str, Any] | None:
    """The response's JSON object, or ``None`` when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _result(task_id: str, response: httpx.Response) -> Any:
    status = response.status_code
    body = _body(response)
    header_id = response.headers.get("x-request-id")
    if 200 <= status < 300:
        if body is not None and body.get("ok") is True and "result" in body:
            return body["result"]
        raise RemoteError(
            f"remote task {task_id!r} answered with a malformed body "
            '(expected {"ok": true, "result": ...})',
            status=status,
            code="malformed_response",
            request_id=header_id,
        )
    raise _error(task_id, status, header_id, body or {})


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _error(task_id: str, status: int, header_id: str | None, body: dict[str, Any]) -> Exception:
    code = _text(body.get("code")) or "http_error"
    message = _text(body.get("message")) or _phrase(status)
    details = body.get("details")
    if isinstance(details, list) and details:
        message = f"{message}: {'; '.join(str(item) for item in details)}"
    rid = header_id or _text(body.get("request_id"))
    cls = public_error_for(code)
    if cls is None:
        return RemoteError(message, status=status, code=code, request_id=rid)
    # The subclass's own __init__ is not run: its arguments did not cross the wire.
    error = cls.__new__(cls)
    PublicError.__init__(error, message, code=code, http_status=status)
    error.add_note(f"raised by remote task {task_id!r} (HTTP {status}, request id {rid})")
    return error


def _declaring(cls: type[PublicError]) -> Iterable[type[PublicError]]:
    """``cls`` and its subclasses, depth first in definition order."""
    yield cls
    for sub in cls.__subclasses__():
        yield from _declaring(sub)


def public_error_for(code: str) -> type[PublicError] | None:
    """The `kernel.PublicError` class that declares ``code``, or ``None``.

    A class declares a code when ``code = ...`` is in its own body (a subclass inheriting
    its parent's code maps to the parent); among several declaring the same code, the one
    defined first wins (depth first over ``__subclasses__()``, looked up at call time, so
    classes defined late count). `PROTOCOL_CODES` never map. ``PublicError`` itself declares
    ``"bad_request"``.
    """
    if code in PROTOCOL_CODES:
        return None
    for cls in _declaring(PublicError):
        if cls.__dict__.get("code") == code:
            return cls
    return None


def retryable(exc: Exception) -> bool:
    """Whether a remote call failing with ``exc`` is worth another attempt.

    True for `RemoteUnavailable` (connection refused or broken, timeouts), httpx's own
    transport errors, and a `RemoteError` with status 502, 503 (the server is starting or
    shutting down) or 504 (a `kernel.PublicError` is the task's answer: never retryable
    here); use it as ``mw.retry(on=kernel.exposure.retryable)``.
    """
    if isinstance(exc, RemoteUnavailable):
        return True
    if isinstance(exc, RemoteError):
        return exc.status in _RETRYABLE_STATUSES
    httpx = sys.modules.get("httpx")  # not loaded: no httpx error can exist
    return httpx is not None and isinstance(exc, httpx.TransportError)


def _check_url(base_url: object) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"{_OWNER}: base_url must be a str, got {base_url!r}")
    if not base_url.startswith(("http://", "https://")) or len(base_url.split("://", 1)[1]) == 0:
        raise ValueError(f"{_OWNER}: base_url must be an http:// or https:// URL, got {base_url!r}")
    return base_url


def _check_token(token: object) -> str | None:
    if token is None:
        return None
    if not isinstance(token, str):
        raise TypeError(f"{_OWNER}: token must be a str or None, got {type(token).__name__}")
    if not _HEADER_SAFE.match(token):
        # The token itself stays out of the message.
        raise ValueError(
            f"{_OWNER}: token must be non-empty printable ASCII without spaces "
            f"({len(token)} characters given)"
        )
    return token


def _check_base_path(base_path: object) -> str:
    if not isinstance(base_path, str):
        raise TypeError(f"{_OWNER}: base_path must be a str, got {base_path!r}")
    trimmed = base_path.rstrip("/")
    if trimmed and not trimmed.startswith("/"):
        raise ValueError(f"{_OWNER}: base_path must start with '/', got {base_path!r}")
    return trimmed


def _check_connections(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_OWNER}: max_connections must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{_OWNER}: max_connections must be >= 1, got {value!r}")
    return value


def remote(
    id: str,
    *,
    base_url: str,
    token: str | None = None,
    timeout: float | timedelta = 10.0,
    base_path: str = "/__runner",
    max_connections: int = 100,
) -> Resource:
    """A resource holding an ``httpx.AsyncClient`` for the HTTP exposure at ``base_url``.

    Its value is a `RemoteEndpoint`; use it as ``via=`` of `remote_task`. ``token`` is sent
    as ``authorization: Bearer <token>``; ``timeout`` (seconds or a timedelta) bounds each
    phase of a request (connect, write, wait for a read, pool), not the whole call (bound
    that with ``mw.timeout``); ``base_path`` is the exposure's (``/__runner``; ``""`` or
    ``"/"`` for the root); ``max_connections`` the most connections kept open to it (each
    request has one to itself; more concurrent requests wait for one, within the
    timeout). The client is closed when the app stops. Bad arguments raise
    TypeError/ValueError (naming the argument) here; a bad id raises DefinitionError.
    """
    url = _check_url(base_url)
    secret = _check_token(token)
    seconds = validate.seconds(timeout, owner=_OWNER, name="timeout")
    path = _check_base_path(base_path)
    connections = _check_connections(max_connections)
    headers = {} if secret is None else {"authorization": f"Bearer {secret}"}

    async def open_client() -> AsyncIterator[RemoteEndpoint]:
        import httpx

        from kernel.exposure._connections import ConnectionPerRequest, NoCookies

        transport = ConnectionPerRequest(max_connections=connections)
        async with httpx.AsyncClient(
            base_url=url,
            timeout=seconds,
            headers=headers,
            transport=transport,
            cookies=NoCookies(),
        ) as client:
            yield RemoteEndpoint(client, path)

    open_client.__doc__ = f"An HTTP client for the exposure at {url}."
    return resource(id)(open_client)


def remote_task(task: Task, *, via: Resource, middleware: Iterable[object] | None = None) -> Task:
    """A definition of ``task`` whose calls go over HTTP through the endpoint ``via``.

    It has ``task``'s id, input and result types, tags and (unless ``middleware`` replaces
    them) middleware, and depends on ``via`` (a `remote` resource, which must be
    registered). Arguments travel as the exposure expects: with ``input=`` the one argument,
    unstructured (attrs instance to dict); otherwise positional arguments as a list or
    keyword arguments as an object (not both: TypeError). The JSON result is structured into
    ``result=`` when the task declares it (`kernel.ConfigError` if it does not fit).
    """
    if not isinstance(task, Task):
        raise DefinitionError(f"kernel.remote: task must be a kernel.Task, got {task!r}")
    if not isinstance(via, Resource):
        raise DefinitionError(
            f"kernel.remote: via must be a kernel.exposure.remote(...) resource, got {via!r}"
        )
    pipeline = task.pipeline
    if middleware is not None:
        try:
            pipeline = mw.Pipeline(middleware)
        except TypeError as exc:
            raise DefinitionError(f"kernel.remote: {exc}") from exc
    task_id, input_type, result_type = task.id, task.input, task.result
    owner = f"task {task_id!r} (remote)"
    unstructure = converter.unstructure

    async def call_remote(*args: Any, _remote_via: RemoteEndpoint, **kwargs: Any) -> Any:
        if input_type is not None:
            if len(args) != 1 or kwargs:
                raise TypeError(f"{owner}: takes one argument, its {input_type.__name__} input")
            payload = unstructure(args[0])
        elif kwargs:
            if args:
                raise TypeError(
                    f"{owner}: pass positional or keyword arguments, not both (they travel "
                    "as a JSON list or a JSON object)"
                )
            payload = unstructure(kwargs)
        else:
            payload = unstructure(list(args)) if args else None
        result = await _remote_via.call_task(task_id, payload)
        if result_type is not None:
            return structure(result, result_type, owner=owner, path="result")
        return result

    call_remote.__name__ = call_remote.__qualname__ = f"remote:{task_id}"
    call_remote.__doc__ = f"Call the task {task_id!r} over HTTP."
    return Task(
        task_id,
        call_remote,
        {_VIA: via},
        pipeline,
        task.tags,
        input_type,
        result_type,
    )
