"""The console's routes: the page and its assets (static, no token needed: they hold no
data) and the JSON API under ``{base}/console/api/`` (the exposure's bearer token, sent in
the ``Authorization`` header; no cookies), with their OpenAPI operations.

Starlette is imported where a route is built or answers, not with this module (the
``http`` extra is needed only to serve)."""

from __future__ import annotations

import importlib.resources
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from kernel.exposure._config import ExposureConfig
from kernel.exposure._limits import Refusal, parse_json
from kernel.exposure._openapi import Operation, error_responses
from kernel.exposure.console._durable import MAX_PAGE, Durable
from kernel.exposure.console._lanes import Lanes
from kernel.exposure.console._schemas import SCHEMAS, reference
from kernel.exposure.console._views import (
    History,
    app_view,
    graph_view,
    primitives_view,
    tasks_view,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from starlette.types import Scope

    from kernel._host import Host

__all__ = ["ASSETS", "Console", "Gate"]

#: The files of the page, shipped in the package (``static/``), with their media types.
ASSETS: Final[Mapping[str, str]] = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
#: The page runs only its own script and style, talks only to its own origin, and is
#: never framed.
_PAGE_HEADERS: Final = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
_API_HEADERS: Final = {"cache-control": "no-store", "x-content-type-options": "nosniff"}

Handler = Callable[["Request"], Awaitable[Any]]


@attrs.frozen
class Gate:
    """What the console borrows from its exposure: authentication (401), the error
    answer, the body reader (limits), the JSON response and the health report (shared with
    ``/health`` for ``health_cache`` seconds, so open consoles do not multiply the checks)."""

    authenticate: Callable[[Request], Awaitable[Any]]
    answer: Callable[[Scope, Exception], Response]
    read_body: Callable[[Request], Awaitable[bytes]]
    respond: Callable[[int, Any], Response]
    health: Callable[[], Awaitable[dict[str, Any]]]
    is_json: Callable[[str | None], bool]


def _asset(name: str) -> bytes:
    return (importlib.resources.files(__package__) / "static" / name).read_bytes()


class Console:
    """The operator console of one exposure over ``runtime``."""

    def __init__(
        self, runtime: Host, config: ExposureConfig, allowed: frozenset[str], gate: Gate
    ) -> None:
        self._runtime = runtime
        self._config = config
        self._allowed = allowed
        self._gate = gate
        self._started = trio.current_time()
        self._history = History()
        self._durable = Durable(runtime)
        self._lanes = Lanes(runtime)
        self._assets = {name: _asset(name) for name in ASSETS}

    # ------------------------------------------------------------------ plumbing

    def _api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        gate = self._gate

        async def endpoint(request: Request) -> Response:
            try:
                await gate.authenticate(request)
                content = await handler(request)
            except Exception as exc:
                response = gate.answer(request.scope, exc)
            else:
                response = gate.respond(200, content)
            response.headers.update(_API_HEADERS)
            return response

        return endpoint

    async def _body(self, request: Request) -> dict[str, Any]:
        """The JSON object of the body (``{}`` when empty), else `Refusal` 400; on an
        anonymous exposure, 415 unless sent as JSON (a cross-site form cannot be)."""
        if self._config.auth is None and not self._gate.is_json(
            request.headers.get("content-type")
        ):
            raise Refusal(
                415,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            )
        raw = await self._gate.read_body(request)
        if not raw:
            return {}
        body = parse_json(raw, max_depth=self._config.max_depth)
        if not isinstance(body, dict):
            raise Refusal(400, "bad_request", "the body must be a JSON object (or empty)")
        return body

    @staticmethod
    def _params(request: Request, *allowed: str) -> dict[str, str]:
        params = dict(request.query_params)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise Refusal(400, "bad_request", f"unknown parameter {unknown[0]!r}")
        return params

    # ------------------------------------------------------------------ endpoints

    async def _page(self, request: Request) -> Response:
        from starlette.responses import Response

        return Response(self._assets["index.html"], 200, _PAGE_HEADERS, ASSETS["index.html"])

    async def _static(self, request: Request) -> Response:
        from starlette.responses import Response

        name = request.path_params["name"]
        if name == "index.html" or name not in ASSETS:
            return self._gate.answer(request.scope, Refusal(404, "not_found", "not found"))
        return Response(self._assets[name], 200, _PAGE_HEADERS, ASSETS[name])

    async def _redirect(self, request: Request) -> Response:
        from starlette.responses import RedirectResponse

        return RedirectResponse(f"{self._config.base_path}/console/", 308)

    async def _overview(self, request: Request) -> Any:
        self._params(request)
        return {
            "app": app_view(self._runtime, self._started),
            "health": await self._gate.health(),
            "primitives": await primitives_view(self._runtime),
            "tasks": tasks_view(self._runtime, self._allowed, self._history),
            "lanes": await self._lanes.view(),
        }

    async def _app(self, request: Request) -> Any:
        self._params(request)
        return app_view(self._runtime, self._started)

    async def _graph(self, request: Request) -> Any:
        self._params(request)
        return graph_view(self._runtime.graph)

    async def _health(self, request: Request) -> Any:
        self._params(request)
        return await self._gate.health()

    async def _primitives(self, request: Request) -> Any:
        self._params(request)
        return await primitives_view(self._runtime)

    async def _tasks(self, request: Request) -> Any:
        self._params(request)
        return tasks_view(self._runtime, self._allowed, self._history)

    async def _executions(self, request: Request) -> Any:
        return await self._durable.list(dict(request.query_params))

    async def _execution(self, request: Request) -> Any:
        params = self._params(request, "engine")
        return await self._durable.detail(params, request.path_params["id"])

    async def _signal(self, request: Request) -> Any:
        params = self._params(request, "engine")
        body = await self._body(request)
        return await self._durable.signal(params, request.path_params["id"], body)

    async def _cancel(self, request: Request) -> Any:
        params = self._params(request, "engine")
        await self._body(request)
        return await self._durable.cancel(params, request.path_params["id"])

    async def _recover(self, request: Request) -> Any:
        params = self._params(request, "engine")
        await self._body(request)
        return await self._durable.recover(params)

    async def _lanes_view(self, request: Request) -> Any:
        self._params(request)
        return await self._lanes.view()

    async def _replay(self, request: Request) -> Any:
        self._params(request)
        return await self._lanes.replay(request.path_params["id"], await self._body(request))

    # ------------------------------------------------------------------ wiring

    def _api_table(self) -> list[tuple[str, str, Handler, str]]:
        """``(path, method, handler, name of the answer's schema)`` of each API route."""
        return [
            ("overview", "GET", self._overview, "overview"),
            ("app", "GET", self._app, "app"),
            ("graph", "GET", self._graph, "graph"),
            ("health", "GET", self._health, "health"),
            ("primitives", "GET", self._primitives, "primitives"),
            ("tasks", "GET", self._tasks, "tasks"),
            ("durable/executions", "GET", self._executions, "executions"),
            ("durable/executions/{id}", "GET", self._execution, "execution"),
            ("durable/executions/{id}/signal", "POST", self._signal, "done"),
            ("durable/executions/{id}/cancel", "POST", self._cancel, "cancelled"),
            ("durable/recover", "POST", self._recover, "recovered"),
            ("lanes", "GET", self._lanes_view, "lanes"),
            ("lanes/{id}/replay", "POST", self._replay, "done"),
        ]

    def routes(self) -> list[Route]:
        """The page, its assets and the API, under ``{base}/console``."""
        from starlette.routing import Route

        root = f"{self._config.base_path}/console"
        routes = [
            Route(root, self._redirect, methods=["GET"]),
            Route(f"{root}/", self._page, methods=["GET"]),
            Route(f"{root}/static/{{name}}", self._static, methods=["GET"]),
        ]
        for path, method, handler, _ in self._api_table():
            routes.append(Route(f"{root}/api/{path}", self._api(handler), methods=[method]))
        return routes

    @staticmethod
    def schemas() -> dict[str, Any]:
        """The components the operations refer to (`kernel.exposure.console._schemas`)."""
        return dict(SCHEMAS)

    def operations(self) -> list[tuple[str, str, Operation]]:
        """The API's ``(path, method, operation)`` for the OpenAPI document; the schemas
        they refer to are `SCHEMAS`."""
        root = f"{self._config.base_path}/console/api"
        anonymous = self._config.auth is None
        return [
            (f"{root}/{path}", method.lower(), _operation(path, method, answer, anonymous))
            for path, method, _, answer in self._api_table()
        ]


# ---------------------------------------------------------------------- OpenAPI

_OBJECT: Final = {"type": "object"}
_ENGINE: Final = {
    "name": "engine",
    "in": "query",
    "required": False,
    "description": "the durable engine's resource id (default: the first)",
    "schema": {"type": "string"},
}
_ID: Final = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_LIST: Final = [
    _ENGINE,
    {
        "name": "status",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "only executions of this status",
    },
    {"name": "workflow", "in": "query", "required": False, "schema": {"type": "string"}},
    {"name": "offset", "in": "query", "required": False, "schema": {"type": "integer"}},
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer"},
        "description": f"at most {MAX_PAGE}",
    },
]
_SIGNAL: Final = {
    "type": "object",
    "properties": {"signal": {"type": "string"}, "payload": {}},
    "required": ["signal"],
}
_SUMMARIES: Final = {
    "overview": "app, health, primitives, tasks and lanes in one answer (what the page polls)",
    "app": "the app: id, uptime, state, process and worker",
    "graph": "the dependency graph: nodes and edges",
    "health": "the health report (the one /health serves, within health_cache)",
    "primitives": "circuit breakers, rate limiters and bulkheads of the task pipelines",
    "tasks": "per task: calls, errors, in flight, p50/p95/p99 and a short history",
    "durable/executions": "durable executions, newest first, filtered, one page",
    "durable/executions/{id}": "one execution: input, result, steps and audit timeline",
    "durable/executions/{id}/signal": "send a signal to the execution",
    "durable/executions/{id}/cancel": "cancel the execution",
    "durable/recover": "recover the engine's executions whose worker died",
    "lanes": "lanes: pending, lag, oldest pending age, dead letters",
    "lanes/{id}/replay": "replay one dead letter",
}


def _operation(path: str, method: str, answer: str, anonymous: bool) -> Operation:
    errors = {400: "a bad parameter or body"}
    if not anonymous:
        errors[401] = "missing or invalid bearer token"
    parameters: list[Any] = []
    if path == "durable/executions":
        parameters = list(_LIST)
    elif path.startswith("durable/"):
        parameters = [_ENGINE]
    if "{id}" in path:
        parameters.append(_ID)
    if path.startswith(("durable/", "lanes/")):
        errors[404] = "no such engine, execution or lane"
    if path.startswith("durable/executions/"):
        errors[409] = "the execution has ended, or its record cannot be read back"
    if method == "POST":
        errors.update({408: "the body was too slow", 413: "the body is too large"})
        if anonymous:
            errors[415] = "the body is not sent as JSON (anonymous exposures only)"
    errors.update({500: "internal error", 503: "the service is shutting down"})
    operation: Operation = {
        "operationId": f"console:{method.lower()}:{path}",
        "summary": _SUMMARIES[path],
        "tags": ["console"],
        "parameters": parameters,
        "responses": {
            "200": {
                "description": _SUMMARIES[path],
                "content": {"application/json": {"schema": reference(answer)}},
            },
            **error_responses(errors),
        },
    }
    if method == "POST":
        schema = _SIGNAL if path.endswith("/signal") else _OBJECT
        if path.endswith("/replay"):
            schema = {
                "type": "object",
                "properties": {"message_id": {"type": "string"}},
                "required": ["message_id"],
            }
        operation["requestBody"] = {
            "required": path.endswith(("/signal", "/replay")),
            "content": {"application/json": {"schema": dict(schema)}},
        }
    return operation
