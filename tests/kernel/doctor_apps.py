"""Apps and services for the ``trio-runner doctor`` tests: `good` passes every check, `bad`
fails each one it can, the others cover the remaining cases.

Targets for the command line: ``tests.kernel.doctor_apps:good`` and so on.
"""

from __future__ import annotations

from typing import Any

import attrs
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import kernel
import kernel.lanes
import middleware as mw
from kernel import tags
from kernel.observability import LogConfig, TracingConfig
from middleware.observability import MetricsRegistry
from resilience import redis as shared


async def ping(value: object) -> None:
    """A health check that always passes."""


# --- good: every check passes -------------------------------------------------------------


@kernel.resource("db", tags=[tags.external_io, tags.critical], health=ping)
async def db() -> Any:
    yield "db"


@kernel.resource("payments", tags=[tags.external_io], health=ping)
async def payments() -> str:
    return "payments"


@kernel.resource("repo", deps={"db": db})
async def repo(db: str) -> str:
    """Built on db: tasks using it use external I/O too."""
    return f"repo({db})"


@kernel.resource("clock")
async def clock() -> float:
    return 0.0


@kernel.task(
    "orders.place",
    deps={"repo": repo, "db": db},
    middleware=[mw.timeout(5), mw.retry(attempts=3)],
)
async def place(*, repo: str, db: str) -> str:
    """Reaches db twice: directly and through repo."""
    return repo


@kernel.task("orders.charge", deps={"payments": payments}, middleware=[mw.timeout(2)])
async def charge(*, payments: str) -> str:
    """Its breaker comes from the service's app-level middleware."""
    return payments


@kernel.task("orders.report", deps={"place": place})
async def report(*, place: Any) -> Any:
    """Reaches db only through orders.place, whose own pipeline guards that call."""
    return await place()


@kernel.task("time.now", deps={"clock": clock})
async def now(*, clock: float) -> float:
    return clock


good_app = kernel.App("shop", register=[db, payments, repo, clock, place, charge, report, now])
breaker_everywhere = [mw.Pipeline([mw.circuit_breaker(failure_threshold=5)])]
good = kernel.Service(
    app=good_app,
    middleware=breaker_everywhere,
    log=LogConfig(format="json"),
    metrics=True,
    tracing=TracingConfig(service_name="shop", exporter="otlp"),
    sentry=kernel.SentryConfig(
        dsn="https://public@o0.ingest.sentry.io/0", environment="production", release="1.4.2"
    ),
)

# --- bad: every check it can fail fails ---------------------------------------------------


@kernel.resource("till.db", tags=[tags.external_io])
async def till_db() -> str:
    return "till.db"


@kernel.resource("till.api", tags=[tags.external_io], health=ping)
async def till_api() -> str:
    return "till.api"


@kernel.resource("till.legacy", tags=[tags.external_io])
async def legacy() -> str:
    """Never registered: an optional dependency on it resolves to nothing."""
    return "legacy"


@kernel.task("till.charge", deps={"db": till_db}, middleware=[mw.retry()])
async def till_charge(*, db: str) -> str:
    return db


async def passthrough(call: mw.Call, next: mw.Next) -> Any:
    """A middleware that is not a resilience adapter."""
    return await next(call)


@kernel.task("till.refund", deps={"api": till_api}, middleware=[passthrough, mw.timeout(1)])
async def till_refund(*, api: str) -> str:
    return api


@kernel.task("till.status", deps={"db": kernel.optional(till_db)})
async def till_status(*, db: str | None) -> str | None:
    return db


@kernel.task("till.audit", deps={"legacy": kernel.optional(legacy)})
async def till_audit(*, legacy: str | None) -> str | None:
    return legacy


bad_app = kernel.App(
    "till", register=[till_db, till_api, till_charge, till_refund, till_status, till_audit]
)
bad = kernel.Service(
    app=bad_app,
    shutdown_signals=False,
    drain_timeout=0,
    log=LogConfig(format="pretty", redact=False),
    metrics=False,
    tracing=TracingConfig(service_name="till", exporter=None),
)

# --- the rest -----------------------------------------------------------------------------

#: No log config; a metrics registry; spans exported to an exporter instance.
unlogged = kernel.Service(
    app=good_app,
    metrics=MetricsRegistry(),
    tracing=TracingConfig(service_name="shop", exporter=InMemorySpanExporter()),
)
#: A kernel.Service with the defaults: no log config, no metrics, no tracing.
plain = kernel.Service(app=good_app)
#: Error tracking with sentry-sdk's default environment and release, and the logs' policy.
tracked = kernel.Service(
    app=good_app, sentry=kernel.SentryConfig(dsn="https://public@o0.ingest.sentry.io/0")
)
#: Error tracking sending what it is given: redaction off, in the log config it follows.
tracked_unredacted = kernel.Service(
    app=good_app,
    log=LogConfig(redact=False),
    sentry=kernel.SentryConfig(dsn="https://public@o0.ingest.sentry.io/0"),
)
#: Error tracking with a policy of its own that lets card numbers through.
tracked_leaky = kernel.Service(
    app=good_app,
    sentry=kernel.SentryConfig(
        dsn="https://public@o0.ingest.sentry.io/0", redact=kernel.Redaction(cards=False)
    ),
)


@kernel.task("lonely", deps={"clock": clock})
async def lonely(*, clock: float) -> float:
    return clock


#: No external I/O at all.
local_app = kernel.App("local", register=[clock, lonely])


@kernel.task("needs.db", deps={"db": db})
async def needs_db(*, db: str) -> str:
    return db


#: Does not validate: needs.db needs db, which is not registered.
invalid_app = kernel.App("invalid", register=[needs_db])


# --- HTTP exposures (a stand-in until the exposure issue lands) ---------------------------


@attrs.frozen
class ExposureConfig:
    auth: str | None = None
    allow_tasks: tuple[str, ...] | None = None
    allow_events: tuple[str, ...] | None = None
    body_limit: int | None = None


exposure = kernel.tag("kernel.exposure")
configured_exposure = kernel.tag("kernel.exposure", config=ExposureConfig)


@kernel.resource("http", config=ExposureConfig, tags=[exposure])
async def http(config: ExposureConfig) -> ExposureConfig:
    return config


@kernel.resource(
    "gateway",
    tags=[
        configured_exposure.with_config(
            {"auth": "token", "allow_tasks": ["gw.*"], "allow_events": ["gw.*"], "body_limit": 0}
        )
    ],
)
async def gateway() -> str:
    return "gateway"


@kernel.task("api.tagged", tags=[exposure])
async def tagged_task() -> None:
    """A task carrying the tag is no exposure: only resources are."""


#: One exposure, configured by the book (it serves tasks only: allow-lists deny by default).
exposed_app = kernel.App(
    "exposed",
    register=[
        tagged_task,
        http.with_config(
            {
                "auth": "bearer",
                "allow_tasks": ["api.public.*", "api.users.get"],
                "allow_events": [],
                "body_limit": 10 * 1024 * 1024,
            }
        ),
    ],
)
#: Four exposures, each wrong somewhere; gateway's settings come from its tag.
open_app = kernel.App(
    "open",
    register=[
        http.with_config(
            {"allow_tasks": ["*"], "allow_events": [], "body_limit": 10 * 1024 * 1024 + 1}
        ),
        http.fork("admin").with_config({"auth": "mtls", "allow_events": ["admin.*", "*"]}),
        http.fork("idle").with_config({"auth": "mtls", "allow_tasks": [], "body_limit": 1024}),
        gateway,
    ],
)


# --- event lanes ------------------------------------------------------------------------

lane_store = kernel.redis.resource(
    "lanes.redis", shared.Store.from_url("redis://127.0.0.1:1/0", prefix="doctor")
)
lane_event = kernel.event("order.placed")
LANE_SECRET = b"doctor-lane-secret-0123456789"

#: Lanes set up by the book: signed, retries within claim_idle, a capped stream.
signed_lane = kernel.lanes.redis(
    "orders.lane",
    store=lane_store,
    events=lane_event,
    group="billing",
    secret=LANE_SECRET,
    retry_delay=1.0,
    retry_backoff=2.0,
    max_retry_delay=10.0,
    claim_idle=30.0,
    max_pending=5000,
)
#: A producer only: no claim_idle to judge.
audit_entry = kernel.event("audit.entry")
producer_lane = kernel.lanes.redis(
    "audit.lane",
    store=lane_store,
    events=audit_entry,
    group="audit",
    consume=False,
    secret=LANE_SECRET,
    retry_delay=120.0,
    claim_idle=1.0,
)
laned_app = kernel.App(
    "laned", register=[lane_event, audit_entry, lane_store, signed_lane, producer_lane]
)

#: Unsigned, retrying after claim_idle (1, 4 then 16 s, capped at 8 s, against 5 s), and an
#: unbounded stream; its memory twin (in-process: no secret needed) with a tiny maxlen and a
#: max_pending above its maxlen.
unsigned_lane = kernel.lanes.redis(
    "loose.lane",
    store=lane_store,
    events=lane_event,
    group="billing",
    retry_delay=1.0,
    retry_backoff=4.0,
    max_retry_delay=8.0,
    claim_idle=5.0,
    maxlen=None,
)
note_left, note_read = kernel.event("note.left"), kernel.event("note.read")
small_lane = kernel.lanes.memory("small.lane", events=note_left, maxlen=100, retry_delay=30.0)
capped_lane = kernel.lanes.memory("capped.lane", events=note_read, maxlen=2000, max_pending=2000)
loose_app = kernel.App(
    "loose",
    register=[lane_event, note_left, note_read, lane_store, unsigned_lane, small_lane, capped_lane],
)
