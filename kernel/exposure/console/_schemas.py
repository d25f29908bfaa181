"""The JSON Schemas of the console API's answers, for the exposure's OpenAPI document
(``components.schemas["console.<name>"]``): what schemathesis checks every answer against,
and what the API's tests validate with.

Primitive rows carry the primitive's own statistics beside the fields named here, so they
allow more properties; every other object is closed.
"""

from __future__ import annotations

from typing import Any, Final

from kernel.durable import STATUSES

__all__ = ["SCHEMAS", "reference"]

_PREFIX: Final = "console."


def reference(name: str) -> dict[str, str]:
    """The reference to the console schema ``name``."""
    return {"$ref": f"#/components/schemas/{_PREFIX}{name}"}


def _closed(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


_STRING: Final = {"type": "string"}
_STRINGS: Final = {"type": "array", "items": _STRING}
_INTEGER: Final = {"type": "integer"}
_NUMBER: Final = {"type": "number"}
_BOOLEAN: Final = {"type": "boolean"}
_MAYBE_STRING: Final = {"type": ["string", "null"]}
_MAYBE_NUMBER: Final = {"type": ["number", "null"]}

_EXECUTION: Final = {
    "id": _STRING,
    "workflow": _STRING,
    "status": {"enum": list(STATUSES)},
    "terminal": _BOOLEAN,
    "attempt": _INTEGER,
    "waiting_for": _MAYBE_STRING,
    "wake_at": _MAYBE_NUMBER,
    "created_at": _NUMBER,
    "updated_at": _NUMBER,
    "error": _MAYBE_STRING,
}
_PRIMITIVE: Final = {
    "type": "object",
    "properties": {
        "name": _STRING,
        "tasks": _STRINGS,
        "scope": {"enum": ["local", "shared"]},
        "error": _STRING,
        "probe_in_s": _NUMBER,
    },
    "required": ["name", "tasks", "scope"],
}
_TASK: Final = _closed(
    {
        "id": _STRING,
        "allowed": _BOOLEAN,
        "calls": _INTEGER,
        "errors": _INTEGER,
        "in_flight": _INTEGER,
        "rate_per_second": _NUMBER,
        "p50_ms": _MAYBE_NUMBER,
        "p95_ms": _MAYBE_NUMBER,
        "p99_ms": _MAYBE_NUMBER,
        "history": {
            "type": "array",
            # [age_s, calls, errors] (as numbers: schemathesis 4 reads prefixItems wrongly)
            "items": {"type": "array", "items": _NUMBER, "minItems": 3, "maxItems": 3},
        },
    },
    optional=(
        "calls",
        "errors",
        "in_flight",
        "rate_per_second",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "history",
    ),
)
_LANE: Final = _closed(
    {
        "id": _STRING,
        "pending": {},
        "lag": {},
        "oldest_pending_age": {},
        "dead_letters": {
            "type": "array",
            "items": _closed(
                {
                    "message_id": {},
                    "event_id": {},
                    "payload": {},
                    "error": {},
                    "attempts": {},
                }
            ),
        },
        "error": _STRING,
    },
    optional=("pending", "lag", "oldest_pending_age", "dead_letters", "error"),
)

#: By name (without the ``console.`` prefix), the schema of each answer.
_BY_NAME: Final[dict[str, dict[str, Any]]] = {
    "app": _closed(
        {
            "id": _STRING,
            "uptime_s": _NUMBER,
            "state": {"enum": ["ready", "starting", "shutting down"]},
            "ready": _BOOLEAN,
            "shutting_down": _BOOLEAN,
            "pid": _INTEGER,
            "worker": _MAYBE_STRING,
        }
    ),
    "graph": _closed(
        {
            "nodes": {
                "type": "array",
                "items": _closed(
                    {
                        "id": _STRING,
                        "kind": {"enum": ["resource", "task", "event", "hook"]},
                        "on_all": _BOOLEAN,
                    }
                ),
            },
            "edges": {
                "type": "array",
                "items": _closed({"from": _STRING, "to": _STRING, "kind": {"enum": ["dep", "on"]}}),
            },
        }
    ),
    "health": {"$ref": "#/components/schemas/HealthReport"},
    "primitives": _closed(
        {
            "circuits": {"type": "array", "items": _PRIMITIVE},
            "limiters": {"type": "array", "items": _PRIMITIVE},
            "bulkheads": {"type": "array", "items": _PRIMITIVE},
        }
    ),
    "tasks": _closed({"metrics": _BOOLEAN, "tasks": {"type": "array", "items": _TASK}}),
    "lanes": _closed({"lanes": {"type": "array", "items": _LANE}}),
    "executions": _closed(
        {
            "engines": _STRINGS,
            "engine": _MAYBE_STRING,
            "workflows": _STRINGS,
            "statuses": _STRINGS,
            "total": _INTEGER,
            "offset": _INTEGER,
            "limit": _INTEGER,
            "executions": {"type": "array", "items": _closed(dict(_EXECUTION))},
        }
    ),
    "execution": _closed(
        {
            "execution": _closed({**_EXECUTION, "input": {}, "result": {}}),
            "steps": {
                "type": "array",
                "items": _closed(
                    {
                        "step_id": _STRING,
                        "position": {"type": ["integer", "null"]},
                        "result": {},
                        "completed_at": _NUMBER,
                    }
                ),
            },
            "audit": {
                "type": "array",
                "items": _closed(
                    {
                        "seq": _INTEGER,
                        "kind": _STRING,
                        "at": _NUMBER,
                        "step_id": _MAYBE_STRING,
                        "data": {"type": "object"},
                    }
                ),
            },
        }
    ),
    "done": _closed({"ok": {"const": True}}),
    "cancelled": _closed({"ok": {"const": True}, "execution": _closed(dict(_EXECUTION))}),
    "recovered": _closed({"ok": {"const": True}, "active": _STRINGS}),
}
_BY_NAME["overview"] = _closed(
    {name: reference(name) for name in ("app", "health", "primitives", "tasks", "lanes")}
)

#: The console's components, by their name in ``components.schemas``.
SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    _PREFIX + name: schema for name, schema in _BY_NAME.items()
}
