"""The console's view of durable workflows, through the public `kernel.durable.Engine`
(``store.list_executions`` / ``list_step_results`` / ``list_audit_entries``, ``signal``,
``cancel``, ``recover``).

Records come from a store and are untrusted: JSON text that does not parse is shown as
its text, a value JSON cannot hold as its repr; an execution the store cannot read back
is left out of listings by the store itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from kernel._errors import DefinitionError
from kernel.durable import (
    STATUSES,
    AuditEntry,
    CorruptRecordError,
    DurableError,
    Engine,
    Execution,
    Signal,
    StepRecord,
    UnknownExecutionError,
    signal,
)
from kernel.exposure._limits import Refusal
from kernel.exposure.console._views import plain, started_values

if TYPE_CHECKING:
    from kernel._host import Host

__all__ = ["MAX_PAGE", "Durable"]

#: The largest page of executions one request may ask for.
MAX_PAGE: Final = 200
_DEFAULT_PAGE: Final = 50
_LIST_PARAMS: Final = frozenset({"engine", "status", "workflow", "offset", "limit"})


def _text(value: str | None) -> Any:
    """JSON text as its value; text that does not parse as ``{"unparsed": text}``."""
    if value is None:
        return None
    try:
        return plain(json.loads(value))
    except ValueError:
        return {"unparsed": value}


def _execution(execution: Execution) -> dict[str, Any]:
    return {
        "id": execution.id,
        "workflow": execution.workflow,
        "status": execution.status,
        "terminal": execution.terminal,
        "attempt": execution.attempt,
        "waiting_for": execution.waiting_for,
        "wake_at": execution.wake_at,
        "created_at": execution.created_at,
        "updated_at": execution.updated_at,
        "error": execution.error,
    }


def _step(step: StepRecord) -> dict[str, Any]:
    return {
        "step_id": step.step_id,
        "position": step.position,
        "result": _text(step.result),
        "completed_at": step.completed_at,
    }


def _audit(entry: AuditEntry) -> dict[str, Any]:
    data = entry.data if isinstance(entry.data, Mapping) else {}
    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "at": entry.at,
        "step_id": entry.step_id,
        "data": {str(key): plain(value) for key, value in data.items()},
    }


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise Refusal(400, "bad_request", f"{name} must be an integer from {low} to {high}")
    return int(text)


class Durable:
    """The durable engines of a runtime (resource values that are an `Engine`)."""

    def __init__(self, runtime: Host) -> None:
        self._runtime = runtime

    def engines(self) -> dict[str, Engine]:
        """The started engines by resource id."""
        return {
            id: value
            for id, value in started_values(self._runtime).items()
            if isinstance(value, Engine)
        }

    def engine(self, params: Mapping[str, str]) -> tuple[str, Engine]:
        """The engine ``params["engine"]`` names (else the first), or `Refusal` 404."""
        engines = self.engines()
        wanted = params.get("engine")
        if wanted is None and engines:
            return next(iter(engines.items()))
        if wanted is not None and wanted in engines:
            return wanted, engines[wanted]
        raise Refusal(404, "not_found", "no such durable engine")

    async def list(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Executions, newest first, filtered by ``status`` and ``workflow``, one page
        (``offset``, ``limit`` at most `MAX_PAGE`); 400 for a bad parameter."""
        unknown = sorted(set(params) - _LIST_PARAMS)
        if unknown:
            raise Refusal(400, "bad_request", f"unknown parameter {unknown[0]!r}")
        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            raise Refusal(400, "bad_request", f"status must be one of {', '.join(STATUSES)}")
        offset = _int(params, "offset", 0, 0, 10**9)
        limit = _int(params, "limit", _DEFAULT_PAGE, 1, MAX_PAGE)
        engines = self.engines()
        if not engines and "engine" not in params:
            return _page([], [], None, [], offset, limit)
        name, engine = self.engine(params)
        found = await engine.store.list_executions(
            statuses=None if status is None else [status],
            workflow=params.get("workflow") or None,
        )
        found.sort(key=lambda execution: execution.created_at, reverse=True)
        workflows = [task.id for task in engine.workflows()]
        return _page(list(engines), workflows, name, found, offset, limit)

    async def detail(self, params: Mapping[str, str], execution_id: str) -> dict[str, Any]:
        """One execution with its input, result, step results and audit timeline."""
        _, engine = self.engine(params)
        with _refusals():
            execution = await engine.get_execution(execution_id)
        steps = await engine.store.list_step_results(execution.id)
        audit = await engine.store.list_audit_entries(execution.id)
        return {
            "execution": {
                **_execution(execution),
                "input": _text(execution.input),
                "result": _text(execution.result),
            },
            "steps": [_step(step) for step in steps],
            "audit": [_audit(entry) for entry in audit],
        }

    async def signal(
        self, params: Mapping[str, str], execution_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Send ``body["signal"]`` (an id) with ``body["payload"]`` to the execution."""
        _, engine = self.engine(params)
        name = body.get("signal")
        if not isinstance(name, str) or set(body) - {"signal", "payload"}:
            raise Refusal(
                400, "bad_request", 'the body must be {"signal": "<signal id>", "payload": ...}'
            )
        try:
            target: Signal[Any] = signal(name)
        except DefinitionError:
            raise Refusal(400, "bad_request", "not a signal id") from None
        with _refusals():
            # (A signal named here has no payload type: the workflow's wait reads it.)
            await engine.signal(execution_id, target, body.get("payload"))
        return {"ok": True}

    async def cancel(self, params: Mapping[str, str], execution_id: str) -> dict[str, Any]:
        """Cancel the execution (an ended one is left as it is); its summary after."""
        _, engine = self.engine(params)
        with _refusals():
            execution = await engine.cancel(execution_id)
        return {"ok": True, "execution": _execution(execution)}

    async def recover(self, params: Mapping[str, str]) -> dict[str, Any]:
        """`Engine.recover`: the ids of the executions that have not ended."""
        _, engine = self.engine(params)
        return {"ok": True, "active": await engine.recover()}


@contextmanager
def _refusals() -> Iterator[None]:
    """The engine's refusals as answers: an unknown execution 404, one that cannot be read
    back 409 (its text stays out of the answer), one that has ended 409."""
    try:
        yield
    except UnknownExecutionError:
        raise Refusal(404, "not_found", "no such execution") from None
    except CorruptRecordError:
        raise Refusal(409, "corrupt_record", "the execution's record cannot be read back") from None
    except DurableError as exc:  # e.g. a signal to an execution that has ended
        raise Refusal(409, "conflict", str(exc)) from None


def _page(
    engines: list[str],
    workflows: list[str],
    engine: str | None,
    found: list[Execution],
    offset: int,
    limit: int,
) -> dict[str, Any]:
    return {
        "engines": engines,
        "engine": engine,
        "workflows": workflows,
        "statuses": list(STATUSES),
        "total": len(found),
        "offset": offset,
        "limit": limit,
        "executions": [_execution(execution) for execution in found[offset : offset + limit]],
    }
