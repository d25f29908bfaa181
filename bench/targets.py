"""The goals, as data: each `Target` compares one scenario's figure with a limit.

A target bounds ``subject``'s figure (``measure``: its overhead over its baseline, or its
whole per-call cost) by ``max_ratio`` times the same figure of ``reference`` and/or by
``max_ns``. A target with neither limit is informational: its ratio is shown, unjudged.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from bench._execute import Measure, Results


@attrs.frozen(kw_only=True)
class Target:
    """One goal; see the module docstring."""

    label: str
    subject: str
    measure: Measure = "overhead"
    reference: str | None = None
    max_ratio: float | None = None
    max_ns: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.max_ratio is not None and self.reference is None:
            raise ValueError(f"Target {self.label!r}: max_ratio needs a reference")


@attrs.frozen(kw_only=True)
class Verdict:
    """A target evaluated on one run: ``passed`` is ``None`` when it cannot be judged
    (a figure is missing, see ``reason``) or the target is informational."""

    target: Target
    value_ns: float | None
    reference_ns: float | None
    ratio: float | None
    passed: bool | None
    reason: str | None = None


TARGETS: tuple[Target, ...] = (
    Target(
        label="retry success-path overhead <= 1/20 of tenacity's",
        subject="retry.ours",
        reference="retry.tenacity",
        max_ratio=1 / 20,
    ),
    Target(
        label="breaker closed-state overhead <= purgatory's",
        subject="circuit.ours",
        reference="circuit.purgatory",
        max_ratio=1.0,
    ),
    Target(
        label="breaker closed-state overhead <= pybreaker's",
        subject="circuit.ours",
        reference="circuit.pybreaker",
        max_ratio=1.0,
    ),
    Target(
        label="cache hit <= 1.5 x hand-written cachetools lookup",
        subject="cache.ours_hit",
        measure="per_call",
        reference="cache.cachetools_hit",
        max_ratio=1.5,
    ),
    Target(
        label="timeout <= 1.15 x trio.move_on_after",
        subject="limits.timeout",
        measure="per_call",
        reference="floor.move_on_after",
        max_ratio=1.15,
    ),
    Target(
        label="bulkhead <= 1.15 x trio.CapacityLimiter",
        subject="limits.bulkhead",
        measure="per_call",
        reference="floor.capacity_limiter",
        max_ratio=1.15,
    ),
    Target(
        label="5 pass-through middleware overhead <= 0.6 us",
        subject="middleware.passthrough5",
        max_ns=600.0,
    ),
    Target(
        label="5 pass-through middleware overhead < Runner's same shape",
        subject="middleware.passthrough5",
        reference="runner_js.passthrough5",
        max_ratio=1.0,
    ),
    Target(
        label="kernel run_task overhead <= 0.4 us",
        subject="kernel.run_task",
        max_ns=400.0,
    ),
    Target(
        label="kernel run_task overhead < Runner's runTask",
        subject="kernel.run_task",
        reference="runner_js.run_task",
        max_ratio=1.0,
    ),
    Target(
        label="kernel run_task with metrics on: growth <= 1 us",
        subject="kernel.run_task_metrics",
        max_ns=1000.0,
    ),
    Target(
        label="kernel emit to one hook overhead <= 1 us",
        subject="kernel.emit_one_hook",
        max_ns=1000.0,
    ),
    Target(
        label="kernel emit to one hook overhead < Runner's",
        subject="kernel.emit_one_hook",
        reference="runner_js.emit_one_hook",
        max_ratio=1.0,
    ),
    Target(
        label="kernel run+dispose of 100 resources <= 3 ms",
        subject="kernel.run_dispose_100",
        measure="per_call",
        max_ns=3_000_000.0,
    ),
    Target(
        label="kernel run+dispose of 100 resources < Runner's",
        subject="kernel.run_dispose_100",
        measure="per_call",
        reference="runner_js.run_dispose_100",
        max_ratio=1.0,
    ),
    Target(
        label="shared limiter acquire <= 1.3 x one coredis PING",
        subject="redis.limiter",
        measure="per_call",
        reference="redis.ping",
        max_ratio=1.3,
    ),
    Target(
        label="lane publish (rt.emit) <= 1.3 x one coredis XADD",
        subject="lanes.publish",
        measure="per_call",
        reference="lanes.xadd",
        max_ratio=1.3,
    ),
    Target(
        label="lane hand-off per event <= streaq's, 1 producer + 2 consumers",
        subject="lanes.handoff",
        measure="per_call",
        reference="lanes.handoff_streaq",
        max_ratio=1.0,
    ),
    Target(
        label="shared cache hit <= 1.3 x one coredis GET",
        subject="redis.cache_hit",
        measure="per_call",
        reference="redis.get",
        max_ratio=1.3,
    ),
    Target(
        label="shared breaker closed-state overhead <= 2 x the in-process breaker's",
        subject="redis.breaker",
        reference="circuit.ours",
        max_ratio=2.0,
    ),
    Target(
        label="shared bulkhead enter+exit <= 2.5 x one coredis PING",
        subject="redis.bulkhead",
        measure="per_call",
        reference="redis.ping",
        max_ratio=2.5,
    ),
    Target(
        label="shared limiter acquire < limits' moving window hit",
        subject="redis.limiter",
        measure="per_call",
        reference="redis_anchor.limits_moving_window",
        max_ratio=1.0,
    ),
    Target(
        label="shared limiter acquire < pyrate-limiter's Redis bucket",
        subject="redis.limiter",
        measure="per_call",
        reference="redis_anchor.pyrate_redis",
        max_ratio=1.0,
    ),
    Target(
        label="(info) cache hit / hand-written cachetools TTLCache lookup",
        subject="cache.ours_hit",
        measure="per_call",
        reference="cache.cachetools_ttl_hit",
    ),
    Target(
        label="(info) cache hit / cache miss, per call",
        subject="cache.ours_hit",
        measure="per_call",
        reference="cache.ours_miss",
    ),
    Target(
        label="(info) retry overhead / tenacity AsyncRetrying's",
        subject="retry.ours",
        reference="retry.tenacity_async_retrying",
    ),
    Target(
        label="(info) retry overhead / stamina's",
        subject="retry.ours",
        reference="retry.stamina",
    ),
    Target(
        label="(info) breaker overhead / aiobreaker's",
        subject="circuit.ours",
        reference="circuit.aiobreaker",
    ),
    Target(
        label="kernel.exposure.http >= 0.9 x the bare hypercorn + Starlette floor (wrk)",
        subject="served.kernel_1",
        measure="per_call",
        reference="served.bare",
        max_ratio=1 / 0.9,
    ),
    Target(
        label="2 workers >= 1.6 x 1 worker (wrk)",
        subject="served.kernel_2",
        measure="per_call",
        reference="served.kernel_1",
        max_ratio=1 / 1.6,
    ),
    Target(
        label="in-process remote hop >= 900 requests/s at 64 in flight",
        subject="http.remote_64",
        measure="per_call",
        max_ns=1e9 / 900,
    ),
)


def _missing(results: Results, scenario_id: str, measure: Measure) -> str:
    m = results.get(scenario_id)
    if m is None:
        return f"{scenario_id} not selected"
    if m.stats is None:
        return f"{scenario_id}: {m.reason}"
    return f"{scenario_id}: no {measure}"


def evaluate(target: Target, results: Results) -> Verdict:
    """Judge ``target`` on ``results``."""
    value = results.value(target.subject, target.measure)
    if value is None:
        reason = _missing(results, target.subject, target.measure)
        return Verdict(
            target=target, value_ns=None, reference_ns=None, ratio=None, passed=None, reason=reason
        )
    reference: float | None = None
    ratio: float | None = None
    checks: list[bool] = []
    if target.reference is not None:
        reference = results.value(target.reference, target.measure)
        if reference is None or reference <= 0:
            reason = (
                _missing(results, target.reference, target.measure)
                if reference is None
                else f"{target.reference}: {target.measure} is not positive ({reference:.1f} ns)"
            )
            return Verdict(
                target=target,
                value_ns=value,
                reference_ns=reference,
                ratio=None,
                passed=None,
                reason=reason,
            )
        ratio = value / reference
        if target.max_ratio is not None:
            checks.append(ratio <= target.max_ratio)
    if target.max_ns is not None:
        checks.append(value <= target.max_ns)
    return Verdict(
        target=target,
        value_ns=value,
        reference_ns=reference,
        ratio=ratio,
        passed=all(checks) if checks else None,
    )


def evaluate_all(targets: Iterable[Target], results: Results) -> list[Verdict]:
    """Judge the targets whose subject was measured or selected in ``results``."""
    return [evaluate(t, results) for t in targets if results.get(t.subject) is not None]
