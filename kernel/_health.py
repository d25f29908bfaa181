"""Health checks and readiness, as data: the runtime collects, the application reports.

A resource declares ``health=`` (an async callable receiving its value, raising when
unhealthy). `health_targets` lists the checks of a graph's started resources;
`check_health` runs them concurrently, each under its own timeout, adds the states of the
circuit breakers it is given, and returns a `HealthReport`. The overall status is:

- ``"unhealthy"`` when a check of a resource tagged `kernel.tags.critical` fails;
- ``"degraded"`` when another check fails, or a circuit breaker is not closed (open,
  isolated or half-open: calls through it are being refused or probed);
- ``"healthy"`` otherwise.

Readiness is reported as given (see `Readiness`); it does not change the status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

import attrs
import trio

import resilience as rs
from kernel import tags
from kernel._definitions import Resource
from kernel._graph import Graph
from kernel.observability._logging import active_redaction
from resilience import redis as shared
from resilience import validate

__all__ = [
    "CheckResult",
    "HealthReport",
    "HealthTarget",
    "Readiness",
    "breakers_of",
    "check_health",
    "health_targets",
]

HealthStatus: TypeAlias = Literal["healthy", "degraded", "unhealthy"]
CheckStatus: TypeAlias = Literal["healthy", "unhealthy"]

#: Longest error text a check result carries (a longer one is cut, ending with "…").
MAX_ERROR_LENGTH: Final = 200


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def _type_error(instance: object, name: str, expected: str, value: object) -> TypeError:
    return TypeError(f"{type(instance).__name__}: {name} must be {expected}, got {value!r}")


@attrs.frozen
class CheckResult:
    """The outcome of one health check.

    ``error`` is ``"<ExceptionType>: <message>"`` on one line (no traceback, at most
    `MAX_ERROR_LENGTH` characters), ``"timed out after <timeout> s"``, or ``None`` when
    healthy. ``critical`` says whether the resource is tagged `kernel.tags.critical`.
    """

    status: CheckStatus
    latency_ms: float
    error: str | None
    critical: bool

    def to_dict(self) -> dict[str, Any]:
        """``{"status", "latency_ms", "error", "critical"}``, JSON-serialisable."""
        return {
            "status": self.status,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "critical": self.critical,
        }


@attrs.frozen
class HealthReport:
    """The health of a running app at ``timestamp``.

    ``checks`` maps resource ids to their `CheckResult` (in the order the checks were
    given); ``circuits`` maps circuit breaker names to their state (``"closed"``,
    ``"open"`` or ``"half_open"``); ``ready`` is the readiness the runtime reported;
    ``timestamp`` is the wall-clock time the report was assembled, ISO 8601 in UTC
    (``2025-01-31T12:00:00.000Z``).
    """

    status: HealthStatus
    checks: Mapping[str, CheckResult] = attrs.field(converter=_frozen)
    circuits: Mapping[str, str] = attrs.field(converter=_frozen)
    ready: bool
    timestamp: str

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-serialisable data.

        Keys: ``status``, ``ready``, ``timestamp``, ``checks`` (``{id: {"status",
        "latency_ms", "error", "critical"}}``) and ``circuits`` (``{name: state}``).
        """
        return {
            "status": self.status,
            "ready": self.ready,
            "timestamp": self.timestamp,
            "checks": {id: result.to_dict() for id, result in self.checks.items()},
            "circuits": dict(self.circuits),
        }


def _check_id(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise _type_error(instance, attribute.name, "a non-empty str", value)


def _check_callable(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not callable(value):
        raise _type_error(instance, attribute.name, "an async callable (value) -> None", value)


def _check_bool(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise _type_error(instance, attribute.name, "a bool", value)


@attrs.frozen
class HealthTarget:
    """One check to run: ``await check(value)`` for the resource ``id``.

    ``critical`` makes the whole report unhealthy when the check fails.
    """

    id: str = attrs.field(validator=_check_id)
    check: Callable[[Any], Awaitable[object]] = attrs.field(validator=_check_callable)
    value: Any
    critical: bool = attrs.field(default=False, kw_only=True, validator=_check_bool)


@attrs.define(eq=False)
class Readiness:
    """Whether the app accepts work: false until `mark_ready`, false again for good from
    `mark_stopping` (a later `mark_ready` does not revive it)."""

    _ready: bool = attrs.field(default=False, init=False)
    _stopping: bool = attrs.field(default=False, init=False)
    _started: trio.Event = attrs.field(factory=trio.Event, init=False)

    @property
    def ready(self) -> bool:
        """True between `mark_ready` and `mark_stopping`."""
        return self._ready

    @property
    def stopping(self) -> bool:
        """True once `mark_stopping` was called."""
        return self._stopping

    def mark_ready(self) -> None:
        """Every resource is up (the ``ready`` event was emitted)."""
        if not self._stopping:
            self._ready = True
            self._started.set()

    async def wait_started(self) -> None:
        """Return once `mark_ready` was called (at once if it was)."""
        await self._started.wait()

    def mark_stopping(self) -> None:
        """Shutdown began (``disposing``): not ready any more."""
        self._stopping = True
        self._ready = False


def health_targets(graph: Graph, values: Mapping[str, Any]) -> list[HealthTarget]:
    """The checks of ``graph``'s resources that declare ``health=`` and are started.

    ``values`` maps the ids of started resources to their values; resources absent from it
    are skipped. Listed in init order; ``critical`` when the resource is tagged
    `kernel.tags.critical` (matched by tag id).
    """
    found: list[HealthTarget] = []
    for node in graph.resources():
        definition = node.definition
        if not isinstance(definition, Resource) or definition.health is None:
            continue
        if node.id not in values:
            continue
        critical = any(use.tag.id == tags.critical.id for use in definition.tags)
        found.append(HealthTarget(node.id, definition.health, values[node.id], critical=critical))
    return found


#: A circuit breaker the health report shows: in-process, or one for the fleet (its
#: ``state`` is this process's view, no round trip).
Breaker: TypeAlias = rs.CircuitBreaker | shared.CircuitBreaker


def breakers_of(runners: Iterable[Callable[..., Any]]) -> list[Breaker]:
    """The circuit breakers exposed as ``.breaker`` by ``runners`` (functions wrapped by a
    pipeline with ``mw.circuit_breaker``), each once, in first-seen order.

    A ``.breaker`` that is neither a `resilience.CircuitBreaker` nor a
    ``resilience.redis.CircuitBreaker`` is ignored.
    """
    found: dict[int, Breaker] = {}
    for runner in runners:
        breaker = getattr(runner, "breaker", None)
        if isinstance(breaker, rs.CircuitBreaker | shared.CircuitBreaker):
            found.setdefault(id(breaker), breaker)
    return list(found.values())


async def check_health(
    targets: Sequence[HealthTarget],
    *,
    # Per check, not for the whole call (which the caller bounds with trio.fail_after).
    timeout: float | timedelta = 5.0,  # noqa: ASYNC109
    circuits: Iterable[Breaker] = (),
    ready: bool,
) -> HealthReport:
    """Run every check concurrently and report (see the module docstring for the status).

    Each check runs under its own ``timeout`` (seconds or a timedelta); one that raises an
    ``Exception`` or times out is unhealthy, its ``latency_ms`` measured with
    ``trio.current_time()``. ``circuits`` are reported by name (``"circuit"`` when unnamed;
    ``#2``, ``#3``... appended to a name already taken), each breaker once.

    Always a checkpoint. Cancellation propagates: the checks still running are cancelled
    and no report is made; a check's own cancellation or other ``BaseException`` is never
    taken for a failure.
    """
    seconds = validate.seconds(timeout, owner="check_health", name="timeout")
    listed = _listed(targets)
    if not isinstance(ready, bool):
        raise TypeError(f"check_health: ready must be a bool, got {ready!r}")
    breakers = _breakers(circuits)
    await trio.lowlevel.checkpoint_if_cancelled()
    results: dict[str, CheckResult] = {}
    if listed:
        async with trio.open_nursery() as nursery:
            for target in listed:
                nursery.start_soon(_run_check, target, seconds, results)
    else:
        await trio.lowlevel.cancel_shielded_checkpoint()
    checks = {target.id: results[target.id] for target in listed}
    states = _states(breakers)
    return HealthReport(
        status=_overall(checks.values(), states.values()),
        checks=checks,
        circuits=states,
        ready=ready,
        timestamp=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


def _listed(targets: object) -> list[HealthTarget]:
    if isinstance(targets, str) or not isinstance(targets, Iterable):
        raise TypeError(
            f"check_health: targets must be a sequence of HealthTarget, got {targets!r}"
        )
    listed = list(targets)
    seen: set[str] = set()
    for target in listed:
        if not isinstance(target, HealthTarget):
            raise TypeError(f"check_health: targets must hold HealthTarget values, got {target!r}")
        if target.id in seen:
            raise ValueError(f"check_health: targets has the id {target.id!r} twice")
        seen.add(target.id)
    return listed


def _breakers(circuits: object) -> list[Breaker]:
    if not isinstance(circuits, Iterable):
        raise TypeError(
            f"check_health: circuits must be an iterable of CircuitBreaker, got {circuits!r}"
        )
    found: dict[int, Breaker] = {}
    for breaker in circuits:
        if not isinstance(breaker, rs.CircuitBreaker | shared.CircuitBreaker):
            raise TypeError(
                "check_health: circuits must hold resilience.CircuitBreaker or "
                f"resilience.redis.CircuitBreaker values, got {breaker!r}"
            )
        found.setdefault(id(breaker), breaker)
    return list(found.values())


async def _run_check(target: HealthTarget, seconds: float, results: dict[str, CheckResult]) -> None:
    error: str | None = None
    start = trio.current_time()
    with trio.move_on_after(seconds) as scope:
        try:
            await target.check(target.value)
        except Exception as exc:
            error = _describe(exc)
    if scope.cancelled_caught:
        error = f"timed out after {seconds:g} s"
    results[target.id] = CheckResult(
        status="healthy" if error is None else "unhealthy",
        latency_ms=(trio.current_time() - start) * 1000.0,
        error=error,
        critical=target.critical,
    )


def _describe(exc: Exception) -> str:
    """``"Type: message"`` on one line, redacted by the active policy (a connection string's
    password, a card number), cut to `MAX_ERROR_LENGTH`; never raises."""
    try:
        message = active_redaction().redact_text(" ".join(str(exc).split()))
    except Exception:
        message = "<unprintable message>"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 1] + "…"
    return text


def _states(breakers: list[Breaker]) -> dict[str, str]:
    states: dict[str, str] = {}
    for breaker in breakers:
        base = "circuit" if breaker.name is None else breaker.name
        key, suffix = base, 2
        while key in states:
            key, suffix = f"{base}#{suffix}", suffix + 1
        states[key] = breaker.state.value
    return states


def _overall(checks: Iterable[CheckResult], circuit_states: Iterable[str]) -> HealthStatus:
    degraded = any(state != rs.CircuitState.CLOSED.value for state in circuit_states)
    for result in checks:
        if result.status == "unhealthy":
            if result.critical:
                return "unhealthy"
            degraded = True
    return "degraded" if degraded else "healthy"
