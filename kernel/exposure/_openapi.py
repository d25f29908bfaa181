"""The OpenAPI 3.1 document of an HTTP exposure (``GET {base}/openapi.json``).

Built once, when the exposure starts, from the same schemas as discovery
(`kernel.exposure._schema`): each allowed task is ``POST {base}/task/{id}`` with the
envelope ``{"input": ...}`` and the answer ``{"ok": true, "result": ...}`` (the result's
schema from the task's ``result=`` type, else its return annotation, else ``{}``); each
allowed event is ``POST {base}/event/{id}`` with ``{"payload": ...}``. Every status the
exposure can answer is listed with the error envelope, and ``default`` covers the statuses
a task's `kernel.PublicError` chooses. Schemas live in ``components.schemas``, their
internal references rewritten to point there (a ``"#"`` inside a standalone schema would
otherwise mean the whole document).
"""

from __future__ import annotations

import importlib.metadata
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Final

from kernel._definitions import Event, Task
from kernel.exposure._config import ExposureConfig
from kernel.exposure._schema import json_schema, type_schema

__all__ = ["ERROR", "Operation", "error_responses", "openapi_document", "ref"]

#: An OpenAPI operation object (``{"summary": ..., "responses": ...}``) by method, by path.
Operation = dict[str, Any]

_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")
_SCHEMAS: Final = "#/components/schemas/"
#: The error envelope, as a reference.
ERROR: Final[Mapping[str, str]] = {"$ref": f"{_SCHEMAS}Error"}
_ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "ok": {"const": False},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "details": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["ok", "code", "message", "request_id"],
    "additionalProperties": False,
}
_HEALTH_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "status": {"enum": ["healthy", "degraded", "unhealthy"]},
        "ready": {"type": "boolean"},
        "timestamp": {"type": "string"},
        "checks": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "status": {"enum": ["healthy", "unhealthy"]},
                    "latency_ms": {"type": "number"},
                    "error": {"type": ["string", "null"]},
                    "critical": {"type": "boolean"},
                },
                "required": ["status", "latency_ms", "error", "critical"],
            },
        },
        "circuits": {
            "type": "object",
            "additionalProperties": {"enum": ["closed", "open", "half_open"]},
        },
    },
    "required": ["status", "ready", "timestamp", "checks", "circuits"],
}
#: Why each status is answered, for the call routes (tasks and events).
_CALL_ERRORS: Final = {
    400: "the body is not JSON, too deep, or not the envelope",
    401: "missing or invalid bearer token",
    404: "no such task or event (or not allowed)",
    408: "the body took longer than body_timeout to arrive",
    413: "the body is larger than body_limit",
    415: "the body is not sent as JSON (anonymous exposures only)",
    422: "the input does not fit the schema (details lists the problems)",
    500: "internal error (details in the server's log only)",
    503: "the service is starting or shutting down",
}
_REQUEST_ID: Final = {
    "x-request-id": {
        "description": "the request's id (the caller's x-request-id when well formed)",
        "schema": {"type": "string"},
    }
}


def ref(components: dict[str, Any], name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Put ``schema`` in ``components`` as ``name`` (made a valid component name), its
    internal references rebased there; return the reference to it."""
    pointer = _SCHEMAS + _NAME.sub("_", name)
    components[pointer.removeprefix(_SCHEMAS)] = _rebase(schema, pointer)
    return {"$ref": pointer}


def _rebase(node: Any, pointer: str) -> Any:
    if isinstance(node, Mapping):
        rebased = {key: _rebase(value, pointer) for key, value in node.items()}
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith("#"):
            rebased["$ref"] = pointer + target[1:]
        return rebased
    if isinstance(node, list):
        return [_rebase(item, pointer) for item in node]
    return node


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _REQUEST_ID,
        "content": {"application/json": {"schema": dict(schema)}},
    }


def error_responses(statuses: Mapping[int, str]) -> dict[str, Any]:
    """The responses of ``statuses`` (status → why), each with the error envelope."""
    return {str(status): _json(ERROR, why) for status, why in statuses.items()}


def _result_schema(task: Task) -> dict[str, Any]:
    """The schema of what the task returns, as the exposure unstructures it."""
    if task.result is not None:
        return json_schema(task.result)
    try:
        hints = typing.get_type_hints(task.fn)
    except Exception:  # an annotation that does not resolve: not described
        return {}
    return type_schema(hints["return"]) if "return" in hints else {}


def _envelope(key: str, schema: Mapping[str, Any], required: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: dict(schema)},
        "required": [key] if required else [],
        "additionalProperties": False,
    }


def _body(envelope: Mapping[str, Any], required: bool) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": dict(envelope)}},
    }


def _calls_errors(config: ExposureConfig) -> dict[int, str]:
    errors = dict(_CALL_ERRORS)
    if config.auth is None:
        del errors[401]
    else:
        del errors[415]
    return errors


#: What ``input`` may be for a task without ``input=``: its arguments.
_ARGUMENTS: Final = {
    "description": "null (no arguments), an array (positional) or an object (keyword)",
    "type": ["null", "array", "object"],
}


def _task_operation(
    id: str, task: Task, config: ExposureConfig, components: dict[str, Any]
) -> Operation:
    if task.input is not None:
        input_schema = json_schema(task.input)
        required = bool(input_schema.get("required"))
        input_ref = ref(components, f"task.{id}.input", input_schema)
    else:
        required, input_ref = False, dict(_ARGUMENTS)
    result_ref = ref(components, f"task.{id}.result", _result_schema(task))
    answer = {
        "type": "object",
        "properties": {"ok": {"const": True}, "result": result_ref},
        "required": ["ok", "result"],
        "additionalProperties": False,
    }
    return {
        "operationId": f"task:{id}",
        "summary": f"run task {id}",
        "description": (task.fn.__doc__ or "").strip(),
        "tags": ["tasks"],
        "requestBody": _body(_envelope("input", input_ref, required), required),
        "responses": {
            "200": _json(answer, "the task's result"),
            **error_responses(_calls_errors(config)),
            "default": _json(ERROR, "a status the task chose (a kernel.PublicError)"),
        },
    }


def _event_operation(
    id: str, event: Event, config: ExposureConfig, components: dict[str, Any]
) -> Operation:
    if event.payload is not None:
        payload_schema = json_schema(event.payload)
        required = bool(payload_schema.get("required"))
        payload_ref = ref(components, f"event.{id}.payload", payload_schema)
    else:
        required, payload_ref = False, {}
    answer = {
        "type": "object",
        "properties": {"ok": {"const": True}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    return {
        "operationId": f"event:{id}",
        "summary": f"emit event {id}",
        "tags": ["events"],
        "requestBody": _body(_envelope("payload", payload_ref, required), required),
        "responses": {
            "200": _json(answer, "the event's hooks ran"),
            **error_responses(_calls_errors(config)),
            "default": _json(ERROR, "a status a hook chose (a kernel.PublicError)"),
        },
    }


def _authenticated(config: ExposureConfig) -> dict[int, str]:
    return {} if config.auth is None else {401: "missing or invalid bearer token"}


def _probes(config: ExposureConfig, components: dict[str, Any]) -> dict[str, dict[str, Operation]]:
    paths: dict[str, dict[str, Operation]] = {}
    health = ref(components, "HealthReport", _HEALTH_SCHEMA)
    refused = {"anyOf": [health, ERROR]}
    if config.health:
        for path, why in (("/health", "unhealthy"), ("/ready", "not ready")):
            paths[path] = {
                "get": {
                    "operationId": path.strip("/"),
                    "summary": f"the health report; 503 when {why}",
                    "tags": ["probes"],
                    "security": [],
                    "responses": {
                        "200": _json(health, "the health report"),
                        "503": _json(refused, f"{why}, or shutting down"),
                    },
                }
            }
    if config.metrics:
        paths["/metrics"] = {
            "get": {
                "operationId": "metrics",
                "summary": "the metrics, Prometheus text format",
                "tags": ["probes"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition",
                        "headers": _REQUEST_ID,
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
    return paths


def openapi_document(
    *,
    title: str,
    config: ExposureConfig,
    tasks: Mapping[str, Task],
    events: Mapping[str, Event],
    extra: Iterable[tuple[str, str, Operation]] = (),
    extra_schemas: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an exposure serving ``tasks`` and ``events`` (by id)
    as ``config`` says; ``extra`` adds ``(path, method, operation)`` (the console's
    routes), whose schemas are in ``extra_schemas``."""
    base = config.base_path
    components: dict[str, Any] = {"Error": dict(_ERROR_SCHEMA), **(extra_schemas or {})}
    paths: dict[str, dict[str, Operation]] = {}
    for id, task in tasks.items():
        paths[f"{base}/task/{id}"] = {"post": _task_operation(id, task, config, components)}
    for id, event in events.items():
        paths[f"{base}/event/{id}"] = {"post": _event_operation(id, event, config, components)}
    for path, summary in (
        ("discovery", "the allowed tasks and events with their JSON Schemas"),
        ("openapi.json", "this document"),
    ):
        paths[f"{base}/{path}"] = {
            "get": {
                "operationId": path,
                "summary": summary,
                "tags": ["discovery"],
                "responses": {
                    "200": _json({"type": "object"}, summary),
                    **error_responses(_authenticated(config)),
                },
            }
        }
    for path, method, operation in extra:
        paths.setdefault(path, {})[method] = operation
    paths.update(_probes(config, components))
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": _version()},
        "paths": paths,
        "components": {"schemas": components},
    }
    if config.auth is not None:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def _version() -> str:
    try:
        return importlib.metadata.version("trio-runner")
    except importlib.metadata.PackageNotFoundError:
        return "0"
