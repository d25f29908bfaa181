"""``trio-runner doctor``: the production checklist, checked on an app that is not started.

`diagnose` builds the app's graph (nothing is initialised, no I/O) and returns one `Row` per
check, each ``"pass"``, ``"fail"`` (with a one-line remediation) or ``"n/a"``. An invalid
graph gives the single row ``graph``. The checks:

- ``python``: Python >= 3.11.
- ``installed`` (with ``prod=True``, else n/a): the ``kernel`` package is imported from an
  installed copy, not a source checkout (see `installed_from_package`).
- ``external_io.resilience``: every task using external I/O has a timeout and a retry or a
  circuit breaker, counting the task's own middleware and the Service's app-level
  ``middleware`` (adapters matched by `middleware.Adapter.kind`). A task uses external I/O
  when it depends on a resource tagged `kernel.tags.external_io`, directly or through
  resources (and Apps) it depends on. Dependencies on other tasks are not followed: such a
  call runs through the other task's own pipeline, which this check covers on its own.
- ``external_io.health``: every resource tagged ``external_io`` declares ``health=``.
- ``shutdown.signals``, ``shutdown.drain``: SIGTERM/SIGINT handled, ``drain_timeout > 0``.
  A bare App is judged with the defaults of ``kernel.Service`` and ``kernel.main``.
- ``logs.json``, ``logs.redaction``, ``metrics``, ``tracing``: the Service's ``log`` is a
  ``LogConfig`` with ``format="json"``; its logs are sanitized (``logs.redaction``, see
  `kernel.observability._audit`: a probe carrying secrets in its locals, message and data is
  redacted with the config's policy and searched for them, and no loguru handler of the
  process prints locals); ``metrics`` is on (``True`` or a registry), ``tracing`` is a
  ``TracingConfig`` with an exporter. A bare App fails them all.
- ``error_tracking`` (with ``prod=True``, else n/a): the Service has a ``SentryConfig``,
  sentry-sdk is installed, and what is sent is redacted: the config's policy, else the log
  config's, passes the ``logs.redaction`` probe.
- ``exposure.auth``, ``exposure.allow_lists``, ``exposure.body_limit``: every HTTP exposure
  (a resource tagged ``kernel.exposure``) has ``auth`` (one serving the operator console
  without it is called out); allows some task or event ids and no bare ``*``; and a
  ``body_limit`` of at most 10 MiB. n/a while no exposure is
  registered. `exposure_rows` finds exposures and their settings; `EXPOSURE_CHECKS` holds
  one function per row, the place to extend.
- ``lanes.secret``, ``lanes.claim_idle``, ``lanes.maxlen``: the event lanes (resources
  tagged ``kernel.lanes.lane``, with their `kernel.lanes.LaneOptions` as the tag's config).
  With ``prod=True`` every Redis lane (one tagged ``external_io``) has a ``secret`` (else
  n/a); no consuming lane retries later than ``claim_idle`` (a retry waiting longer is taken
  by another consumer after ``claim_idle``, which makes the delay ``claim_idle``); every
  lane has a ``maxlen`` of at least `MIN_LANE_MAXLEN`, above its ``max_pending`` (the
  stream trims the oldest entries, undelivered ones too). n/a while no lane is registered;
  `lane_rows` gives them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, TypeVar

import attrs

import middleware as mw
from kernel import tags
from kernel._definitions import App, Resource, Task, tag
from kernel._errors import KernelError
from kernel._graph import Graph, Node, build_graph
from kernel._redaction import Redaction
from kernel._service import Service, as_service
from kernel.observability._audit import log_problems, policy_leaks
from kernel.observability._logging import LogConfig
from kernel.observability._sentry import SENTRY_EXTRA
from kernel.observability._tracing import TracingConfig
from middleware.observability import MetricsRegistry

__all__ = [
    "EXPOSURE_CHECKS",
    "EXPOSURE_TAG",
    "KERNEL_DIR",
    "LANE_CHECKS",
    "LANE_TAG",
    "MAX_BODY_LIMIT",
    "MIN_LANE_MAXLEN",
    "SYMBOLS",
    "Row",
    "Status",
    "diagnose",
    "exposure_rows",
    "installed_from_package",
    "invalid_graph_row",
    "lane_rows",
    "python_row",
    "render_json",
    "render_text",
]

Status: TypeAlias = Literal["pass", "fail", "n/a"]

#: The directory of the ``kernel`` package being run (what ``installed`` looks at).
KERNEL_DIR: Final = Path(__file__).resolve().parent
#: Directories that packages are installed into.
_INSTALL_DIRS: Final = frozenset({"site-packages", "dist-packages"})
#: Resources carrying a tag with this id are HTTP exposures.
EXPOSURE_TAG: Final = tag("kernel.exposure")
#: The largest request body an exposure may accept (10 MiB).
MAX_BODY_LIMIT: Final = 10 * 1024 * 1024
#: Resources carrying a tag with this id are event lanes (`kernel.lanes.lane_tag`).
LANE_TAG: Final = tag("kernel.lanes.lane")
#: The smallest ``maxlen`` a lane should have: below it a burst or a short consumer outage
#: trims entries that were never delivered.
MIN_LANE_MAXLEN: Final = 1000

_ALLOW_LISTS: Final = ("allow_tasks", "allow_events")
_TIMEOUT: Final = "timeout"
_GUARDS: Final = frozenset({"retry", "circuit_breaker"})
_WRAP: Final = "wrap the app in kernel.Service(...)"
_JSON_LOGS: Final = 'pass log=kernel.LogConfig(format="json") to kernel.Service'


@attrs.frozen
class Row:
    """One check: its name, ``status``, what was found, and how to fix a failure."""

    check: str
    status: Status
    detail: str
    remediation: str | None = None


def _pass(check: str, detail: str) -> Row:
    return Row(check, "pass", detail)


def _fail(check: str, detail: str, remediation: str) -> Row:
    return Row(check, "fail", detail, remediation)


def _na(check: str, detail: str) -> Row:
    return Row(check, "n/a", detail)


def diagnose(target: App | Service, *, prod: bool = False) -> list[Row]:
    """Check ``target`` (an App, or a `kernel.Service`) without starting it; one row per check.

    ``prod`` enables the ``installed`` check. An invalid graph gives the single failed row
    ``graph``.
    """
    app = target if isinstance(target, App) else target.app
    try:
        graph = build_graph(app)
    except KernelError as exc:
        return [invalid_graph_row(exc)]
    service = None if isinstance(target, App) else target
    middleware = () if service is None else service.middleware
    return [
        _graph_row(graph),
        python_row(tuple(sys.version_info[:3])),
        _installed_row(prod, KERNEL_DIR),
        _resilience_row(graph, middleware),
        _health_row(graph),
        *_shutdown_rows(as_service(target)),
        *_observability_rows(service),
        _error_tracking_row(prod, service),
        *exposure_rows(graph),
        *lane_rows(graph, prod=prod),
    ]


# --- the app itself -----------------------------------------------------------------------


def invalid_graph_row(error: Exception) -> Row:
    """The ``graph`` row of an app that does not validate."""
    return _fail(
        "graph",
        f"{type(error).__name__}: {error}",
        "fix the definitions; `trio-runner graph TARGET` validates the app alone",
    )


def _graph_row(graph: Graph) -> Row:
    resources = sum(node.kind == "resource" for node in graph.nodes.values())
    return _pass(
        "graph",
        f"app {graph.root.id!r} is valid: {len(graph.tasks())} task(s), {resources} resource(s)",
    )


def python_row(version: tuple[int, ...]) -> Row:
    """The ``python`` row for the interpreter ``version`` (``sys.version_info[:3]``)."""
    shown = "Python " + ".".join(map(str, version))
    if version >= (3, 11):
        return _pass("python", shown)
    return _fail("python", f"{shown}; trio-runner needs 3.11 or newer", "run on Python >= 3.11")


def installed_from_package(kernel_dir: Path) -> bool:
    """Whether ``kernel_dir`` (the ``kernel`` package's directory) is an installed copy.

    It is when a directory above it is named ``site-packages`` or ``dist-packages`` and the
    directory holding the package has no ``pyproject.toml`` (a source checkout has one; an
    editable install imports from the checkout itself).
    """
    root = kernel_dir.parent
    return not _INSTALL_DIRS.isdisjoint(root.parts) and not (root / "pyproject.toml").exists()


def _installed_row(prod: bool, kernel_dir: Path) -> Row:
    if not prod:
        return _na("installed", "checked with --prod")
    if installed_from_package(kernel_dir):
        return _pass("installed", f"kernel is imported from {kernel_dir}")
    return _fail(
        "installed",
        f"kernel is imported from a source checkout: {kernel_dir}",
        "install a built wheel (pip install trio-runner-<version>.whl) and run from it",
    )


# --- external I/O -------------------------------------------------------------------------


D = TypeVar("D")


def _definition(node: Node, kind: type[D]) -> D:
    """``node.definition``, which the graph guarantees to be a ``kind``."""
    definition = node.definition
    assert isinstance(definition, kind), (node.id, node.kind)
    return definition


def _is_external(node: Node) -> bool:
    uses = getattr(node.definition, "tags", ())
    return any(use.tag.id == tags.external_io.id for use in uses)


def _external_deps(task: Node) -> list[str]:
    """The external_io resources ``task`` uses, directly or through resources and Apps."""
    found: dict[str, None] = {}
    seen: set[str] = set()
    stack = [dep for dep in task.deps.values() if dep is not None]
    while stack:
        node = stack.pop()
        if node.id in seen or node.kind not in ("resource", "app"):
            continue
        seen.add(node.id)
        if _is_external(node):
            found[node.id] = None
        stack.extend(dep for dep in node.deps.values() if dep is not None)
    return sorted(found)


def _kinds(middlewares: Iterable[object]) -> set[str]:
    """The adapter kinds among ``middlewares`` (Pipelines spliced in)."""
    kinds: set[str] = set()
    for item in middlewares:
        if isinstance(item, mw.Pipeline):
            kinds |= _kinds(item.middlewares)
        elif isinstance(item, mw.Adapter):
            kinds.add(item.kind)
    return kinds


def _missing(kinds: set[str]) -> list[str]:
    missing = [] if _TIMEOUT in kinds else ["a timeout"]
    if kinds.isdisjoint(_GUARDS):
        missing.append("a retry or circuit breaker")
    return missing


def _resilience_row(graph: Graph, app_middleware: Sequence[object]) -> Row:
    check = "external_io.resilience"
    app_kinds = _kinds(app_middleware)
    using = 0
    problems: list[str] = []
    for node in graph.tasks():
        external = _external_deps(node)
        if not external:
            continue
        using += 1
        missing = _missing(app_kinds | _kinds(_definition(node, Task).pipeline.middlewares))
        if missing:
            problems.append(
                f"{node.id} (uses {', '.join(external)}; missing {' and '.join(missing)})"
            )
    if not using:
        return _na(check, "no task depends on a resource tagged kernel.tags.external_io")
    if not problems:
        return _pass(
            check, f"{using} task(s) using external I/O have a timeout and a retry or breaker"
        )
    return _fail(
        check,
        "; ".join(problems),
        "give these tasks middleware=[mw.timeout(...), mw.retry(...) or "
        "mw.circuit_breaker(...)], or put them in kernel.Service(middleware=...)",
    )


def _health_row(graph: Graph) -> Row:
    check = "external_io.health"
    external = [node for node, _ in graph.find(tags.external_io) if node.kind == "resource"]
    if not external:
        return _na(check, "no resource is tagged kernel.tags.external_io")
    unchecked = [node.id for node in external if _definition(node, Resource).health is None]
    if unchecked:
        return _fail(
            check,
            f"no health check: {', '.join(unchecked)}",
            "declare kernel.resource(..., health=check) on each, check being an async "
            "function of the resource value",
        )
    return _pass(check, f"{len(external)} external_io resource(s) have a health check")


# --- how the service runs -----------------------------------------------------------------


def _shutdown_rows(service: Service) -> list[Row]:
    rows = []
    if service.shutdown_signals:
        rows.append(_pass("shutdown.signals", "SIGTERM and SIGINT start a graceful shutdown"))
    else:
        rows.append(
            _fail(
                "shutdown.signals",
                "shutdown_signals=False: SIGTERM kills the process without draining",
                "set kernel.Service(shutdown_signals=True), or run it with kernel.main(...)",
            )
        )
    if service.drain_timeout > 0:
        rows.append(_pass("shutdown.drain", f"drain_timeout={service.drain_timeout:g} s"))
    else:
        rows.append(
            _fail(
                "shutdown.drain",
                "drain_timeout=0: task calls in flight are cancelled at once on shutdown",
                "set drain_timeout > 0 (e.g. 30 s, under the orchestrator's kill grace period)",
            )
        )
    return rows


def _log_rows(log: LogConfig | None) -> list[Row]:
    if log is None:
        return [
            _fail("logs.json", "no log config: loguru's default text handler", _JSON_LOGS),
            _fail(
                "logs.redaction",
                "no log config: records of your own loggers are not redacted, and loguru's "
                "default handler prints the locals in their tracebacks",
                _JSON_LOGS + " (it redacts by default)",
            ),
        ]
    rows = [
        _pass("logs.json", 'format="json"')
        if log.format == "json"
        else _fail("logs.json", f"format={log.format!r}", 'set LogConfig(format="json")')
    ]
    problems = log_problems(log)
    if not problems:
        rows.append(
            _pass("logs.redaction", "on; kernel tracebacks carry no locals; no handler prints any")
        )
    else:
        rows.append(
            _fail(
                "logs.redaction",
                "; ".join(problem.detail for problem in problems),
                "; ".join(dict.fromkeys(problem.fix for problem in problems)),
            )
        )
    return rows


def _metrics_row(metrics: bool | MetricsRegistry) -> Row:
    if metrics is not False:  # True, or a registry
        return _pass("metrics", "on")
    return _fail("metrics", "off", "pass metrics=True (or a registry) to kernel.Service")


def _tracing_row(tracing: TracingConfig | None) -> Row:
    if tracing is None:
        return _fail(
            "tracing",
            "not configured",
            'pass tracing=kernel.TracingConfig(service_name=..., exporter="otlp")',
        )
    name, exporter = tracing.service_name, tracing.exporter
    if exporter is None:
        return _fail(
            "tracing",
            f"service {name!r}: spans are exported nowhere (exporter=None)",
            'set TracingConfig(exporter="otlp", endpoint=...) or another exporter',
        )
    shown = exporter if isinstance(exporter, str) else type(exporter).__name__
    return _pass("tracing", f"service {name!r}, exporter {shown}")


def _observability_rows(service: Service | None) -> list[Row]:
    if service is None:
        return [
            _fail(check, f"a bare App has no {what}", _WRAP)
            for check, what in (
                ("logs.json", "log config"),
                ("logs.redaction", "log config"),
                ("metrics", "metrics option"),
                ("tracing", "tracing config"),
            )
        ]
    return [
        *_log_rows(service.log),
        _metrics_row(service.metrics),
        _tracing_row(service.tracing),
    ]


def _error_tracking_row(prod: bool, service: Service | None) -> Row:
    check = "error_tracking"
    if not prod:
        return _na(check, "checked with --prod")
    if service is None:
        return _fail(check, "a bare App has no error tracking", _WRAP)
    config = service.sentry
    if config is None:
        return _fail(
            check,
            "not configured: unexpected failures reach no one",
            "pass sentry=kernel.SentryConfig(dsn=..., environment=..., release=...) to "
            "kernel.Service",
        )
    if importlib.util.find_spec("sentry_sdk") is None:
        return _fail(check, "sentry-sdk is not installed", SENTRY_EXTRA)
    policy = config.redact
    if policy is None:  # the logs' policy, as the runtime will use it
        policy = service.log.redact if service.log is not None else Redaction()
    if not policy.enabled:
        return _fail(
            check,
            "redaction off: secrets and card numbers are sent",
            "set SentryConfig(redact=True) or a kernel.Redaction(...)",
        )
    leaked = policy_leaks(policy)
    if leaked:
        return _fail(
            check,
            f"the redaction policy lets {' and '.join(leaked)} through",
            "keep the default keys (extend them with kernel.Redaction(extra_keys=...)) "
            "and cards and url_credentials on",
        )
    environment = "default" if config.environment is None else repr(config.environment)
    release = "default" if config.release is None else repr(config.release)
    return _pass(check, f"Sentry, environment {environment}, release {release}")


# --- HTTP exposure ------------------------------------------------------------------------

_Settings: TypeAlias = "tuple[str, Any]"


def _exposure_auth(check: str, exposures: Sequence[_Settings]) -> Row:
    """Every exposure has ``auth``; one serving the operator console (``console=True``)
    without it is named as such: anyone reaching it could read and act on the app."""
    anonymous = [
        f"{id} (serves the operator console to anyone)"
        if getattr(settings, "console", False)
        else id
        for id, settings in exposures
        if getattr(settings, "auth", None) is None
    ]
    if anonymous:
        return _fail(
            check,
            f"anonymous exposure (no auth): {', '.join(anonymous)}",
            "configure auth= on every exposure; never expose tasks anonymously",
        )
    return _pass(check, f"auth configured: {', '.join(id for id, _ in exposures)}")


def _exposure_allow_lists(check: str, exposures: Sequence[_Settings]) -> Row:
    """Allow-lists deny by default: one list may be empty, not both (the exposure would
    serve nothing: a mistake), and no entry may be a bare ``*`` (everything)."""
    problems = []
    for id, settings in exposures:
        lists = {name: getattr(settings, name, None) or () for name in _ALLOW_LISTS}
        if not any(lists.values()):
            problems.append(f"{id}: allow_tasks and allow_events are both empty")
        problems.extend(
            f"{id}: {name} has a bare '*'" for name, allowed in lists.items() if "*" in allowed
        )
    if problems:
        return _fail(
            check,
            "; ".join(problems),
            "list the task and event ids callable remotely (patterns like 'api.public.*')",
        )
    return _pass(check, "every exposure lists what it serves, without a bare '*'")


def _exposure_body_limit(check: str, exposures: Sequence[_Settings]) -> Row:
    problems = []
    for id, settings in exposures:
        limit = getattr(settings, "body_limit", None)
        if limit is None:
            problems.append(f"{id}: no body_limit")
        elif limit > MAX_BODY_LIMIT:
            problems.append(f"{id}: body_limit={limit} bytes is over 10 MiB")
        elif limit <= 0:
            problems.append(f"{id}: body_limit={limit} bytes is not positive")
    if problems:
        return _fail(
            check,
            "; ".join(problems),
            f"set body_limit between 1 and {MAX_BODY_LIMIT} bytes (10 MiB)",
        )
    return _pass(check, "every exposure has a body limit <= 10 MiB")


#: The checks of registered exposures by row name, in row order; each gets its row name and
#: the ``(id, settings)`` of every exposure.
EXPOSURE_CHECKS: Final[Mapping[str, Callable[[str, Sequence[_Settings]], Row]]] = MappingProxyType(
    {
        "exposure.auth": _exposure_auth,
        "exposure.allow_lists": _exposure_allow_lists,
        "exposure.body_limit": _exposure_body_limit,
    }
)


def exposure_rows(graph: Graph) -> list[Row]:
    """The rows of the HTTP exposures ``graph`` registers: resources tagged ``kernel.exposure``.

    An exposure's settings are the config of its ``kernel.exposure`` tag use, else the
    resource's own config; the checks read ``auth`` (``None``: anonymous), ``allow_tasks``
    and ``allow_events`` (sequences of ids or patterns) and ``body_limit`` (bytes) from
    them. With no exposure registered every row is n/a.
    """
    exposures = [
        (node.id, node.config if config is None else config)
        for node, config in graph.find(EXPOSURE_TAG)
        if node.kind == "resource"
    ]
    if not exposures:
        return [_na(check, "no HTTP exposure registered") for check in EXPOSURE_CHECKS]
    return [run(check, exposures) for check, run in EXPOSURE_CHECKS.items()]


# --- event lanes -------------------------------------------------------------------------


def _lane_secret(lanes: Sequence[tuple[Node, Any]], prod: bool) -> Row:
    check = "lanes.secret"
    crossing = [(node, options) for node, options in lanes if _is_external(node)]
    if not prod:
        return _na(check, "checked with --prod")
    if not crossing:
        return _na(check, "no Redis lane registered")
    unsigned = [node.id for node, options in crossing if options.secret is None]
    if unsigned:
        return _fail(
            check,
            f"unsigned envelopes (no secret): {', '.join(unsigned)}; anyone able to write "
            "to the stream can make their hooks run",
            "give every lane secret=... (at least 16 bytes, the same in producers and "
            "consumers, from a kernel.config.Secret setting)",
        )
    return _pass(check, f"envelopes signed: {', '.join(node.id for node, _ in crossing)}")


def _longest_retry_wait(options: Any) -> float:
    attempts = range(1, int(options.max_attempts))
    return max((float(options.retry_wait(attempt)) for attempt in attempts), default=0.0)


def _lane_claim_idle(lanes: Sequence[tuple[Node, Any]], prod: bool) -> Row:
    check = "lanes.claim_idle"
    consuming = [(node, options) for node, options in lanes if options.consume]
    if not consuming:
        return _na(check, "no lane consumes here")
    problems = [
        f"{node.id}: retries wait up to {wait:g} s, claim_idle={options.claim_idle:g} s"
        for node, options in consuming
        if (wait := _longest_retry_wait(options)) >= options.claim_idle
    ]
    if problems:
        return _fail(
            check,
            "; ".join(problems) + ": another consumer takes the entry before its retry is "
            "due (the delay becomes claim_idle)",
            "keep retry_delay (and max_retry_delay, with retry_backoff) below claim_idle, "
            "or raise claim_idle",
        )
    return _pass(check, "every consuming lane retries within claim_idle")


def _lane_maxlen(lanes: Sequence[tuple[Node, Any]], prod: bool) -> Row:
    check = "lanes.maxlen"
    problems = []
    for node, options in lanes:
        maxlen, max_pending = options.maxlen, options.max_pending
        if maxlen is None:
            problems.append(f"{node.id}: maxlen=None, the stream grows without bound")
        elif maxlen < MIN_LANE_MAXLEN:
            problems.append(
                f"{node.id}: maxlen={maxlen} trims undelivered entries after a short burst"
            )
        elif max_pending is not None and maxlen <= max_pending:
            problems.append(
                f"{node.id}: maxlen={maxlen} <= max_pending={max_pending}, entries are "
                "trimmed before the lane turns degraded"
            )
    if problems:
        return _fail(
            check,
            "; ".join(problems),
            f"set maxlen to at least {MIN_LANE_MAXLEN} and above max_pending: the most "
            "entries a consumer outage may leave in the stream",
        )
    return _pass(check, f"every lane's stream is capped, at >= {MIN_LANE_MAXLEN} entries")


#: The checks of registered lanes by row name, in row order; each gets the ``(node,
#: options)`` of every lane and ``prod``.
LANE_CHECKS: Final[Mapping[str, Callable[[Sequence[tuple[Node, Any]], bool], Row]]] = (
    MappingProxyType(
        {
            "lanes.secret": _lane_secret,
            "lanes.claim_idle": _lane_claim_idle,
            "lanes.maxlen": _lane_maxlen,
        }
    )
)


def lane_rows(graph: Graph, *, prod: bool = False) -> list[Row]:
    """The rows of the event lanes ``graph`` registers (resources tagged
    ``kernel.lanes.lane``, the tag's config their options); all n/a without a lane."""
    lanes = [
        (node, config)
        for node, config in graph.find(LANE_TAG)
        if node.kind == "resource" and config is not None
    ]
    if not lanes:
        return [_na(check, "no event lane registered") for check in LANE_CHECKS]
    return [run(lanes, prod) for run in LANE_CHECKS.values()]


# --- output -------------------------------------------------------------------------------

_SYMBOL_OF: Final[dict[Status, str]] = {
    "pass": "\N{CHECK MARK}",
    "fail": "\N{BALLOT X}",
    "n/a": "\N{EN DASH}",
}
#: The status symbols of `render_text`, which need an encoding beyond ASCII.
SYMBOLS: Final = "".join(_SYMBOL_OF.values())
_ASCII: Final[dict[Status, str]] = {"pass": "ok", "fail": "XX", "n/a": "--"}


def render_text(rows: Sequence[Row], *, ascii: bool = False) -> str:
    """An aligned table: symbol, check, detail, and ``fix: ...`` under each failure; then
    a count by status. ``ascii`` uses ``ok``/``XX``/``--`` for terminals without UTF-8."""
    symbols = _ASCII if ascii else _SYMBOL_OF
    width = max(len(row.check) for row in rows)
    indent = " " * (len(symbols["pass"]) + 2 + width + 2)
    lines = []
    for row in rows:
        lines.append(f"{symbols[row.status]}  {row.check:<{width}}  {row.detail}")
        if row.remediation is not None:
            lines.append(f"{indent}fix: {row.remediation}")
    counts = {status: sum(row.status == status for row in rows) for status in _SYMBOL_OF}
    lines.append(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['n/a']} not applicable"
    )
    return "\n".join(lines)


def render_json(rows: Sequence[Row]) -> str:
    """The rows as a JSON list of ``{check, status, detail, remediation}`` (``null`` when
    there is nothing to fix)."""
    return json.dumps([attrs.asdict(row) for row in rows], indent=2)
