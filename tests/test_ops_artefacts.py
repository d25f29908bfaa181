"""The operations artefacts are real: the alert rules load in Prometheus and fire on synthetic
series (promtool), use only metrics we export, and point at runbooks that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "docs" / "ops" / "prometheus-alerts.yml"
RULE_TESTS = ROOT / "docs" / "ops" / "prometheus-alerts.test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"

#: The metric families trio-runner exports (kernel/observability/_metrics.py), by type; a
#: histogram family also gives ``_bucket``, ``_sum`` and ``_count`` series.
EXPORTED = {
    "trio_runner_task_calls_total": "counter",
    "trio_runner_task_duration_seconds": "histogram",
    "trio_runner_task_duration_quantile_seconds": "gauge",
    "trio_runner_task_in_flight": "gauge",
    "trio_runner_circuit_state": "gauge",
    "trio_runner_circuit_transitions_total": "counter",
    "trio_runner_retries_total": "counter",
    "trio_runner_retry_gave_up_total": "counter",
    "trio_runner_ratelimit_rejections_total": "counter",
    "trio_runner_bulkhead_rejections_total": "counter",
    "trio_runner_timeouts_total": "counter",
    "trio_runner_fallbacks_total": "counter",
    "trio_runner_cache_requests_total": "counter",
    # kernel.durable.metrics(engine)
    "trio_runner_durable_executions": "gauge",
    "trio_runner_durable_backlog": "gauge",
    "trio_runner_durable_oldest_due_age_seconds": "gauge",
    "trio_runner_durable_step_duration_seconds": "histogram",
    "trio_runner_durable_stats_age_seconds": "gauge",
    # kernel.lanes (kernel/lanes/_metrics.py)
    "trio_runner_lane_published_total": "counter",
    "trio_runner_lane_delivered_total": "counter",
    "trio_runner_lane_retried_total": "counter",
    "trio_runner_lane_dead_lettered_total": "counter",
    "trio_runner_lane_rejected_total": "counter",
    "trio_runner_lane_in_flight": "gauge",
    "trio_runner_lane_delivery_latency_seconds": "gauge",
    "trio_runner_lane_pending": "gauge",
    "trio_runner_lane_oldest_pending_age_seconds": "gauge",
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
ALERTS = {
    "TrioRunnerTaskErrorRateHigh",
    "TrioRunnerTaskLatencyP95High",
    "TrioRunnerAvailabilityLow",
    "TrioRunnerCircuitOpen",
    "TrioRunnerLaneDeadLettersGrowing",
    "TrioRunnerLaneOldestPendingTooOld",
    "TrioRunnerLaneLagHigh",
    "TrioRunnerLaneNotDelivering",
}

_ALERT = re.compile(r"^ {6}- alert: (\S+)$", re.MULTILINE)
_METRIC = re.compile(r"\btrio_runner_[a-z0-9_]+")


def promtool() -> str:
    """The promtool binary; a skip without it, a failure without it in CI."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing; .ci/run installs it (Debian package prometheus)")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def alerts() -> dict[str, str]:
    """Each alert rule's text, by alert name (the rules file is ours: one rule per
    ``- alert:`` entry, in one group)."""
    text = RULES.read_text()
    starts = [(match.start(), match.group(1)) for match in _ALERT.finditer(text)]
    ends = [start for start, _ in starts[1:]] + [len(text)]
    return {name: text[start:end] for (start, name), end in zip(starts, ends, strict=True)}


def test_the_rules_load_in_prometheus() -> None:
    done = run(promtool(), "check", "rules", str(RULES.relative_to(ROOT)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_the_alerts_fire_on_synthetic_series_and_only_there() -> None:
    done = run(promtool(), "test", "rules", str(RULE_TESTS.relative_to(ROOT)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_unit_tested() -> None:
    assert set(alerts()) == ALERTS
    tested = set(re.findall(r"alertname: (\S+)", RULE_TESTS.read_text()))
    assert tested == ALERTS


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_each_alert_has_severity_annotations_and_a_runbook(name: str) -> None:
    rule = alerts()[name]
    assert re.search(r"^ {10}severity: (critical|warning)$", rule, re.MULTILINE)
    for annotation in ("summary", "description", "runbook_url"):
        assert re.search(rf"^ {{10}}{annotation}: \S", rule, re.MULTILINE), annotation


def test_every_runbook_url_points_at_an_existing_runbook() -> None:
    urls = re.findall(r"runbook_url: (\S+)", RULES.read_text() + RULE_TESTS.read_text())
    assert urls
    for url in urls:
        path, _, anchor = url.partition("#")
        runbook = ROOT / path
        assert runbook.parent == RUNBOOKS, url
        assert runbook.is_file(), url
        if anchor:
            headings = re.findall(r"^#+ (.+)$", runbook.read_text(), re.MULTILINE)
            slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
            assert anchor in slugs, url


def family(series: str) -> str:
    """The exported family a series name belongs to (fails for anything we do not export)."""
    for suffix in HISTOGRAM_SERIES:
        base = series.removesuffix(suffix)
        if base != series and EXPORTED.get(base) == "histogram":
            return base
    assert series in EXPORTED, f"{series} is not a metric trio-runner exports"
    return series


def test_the_rules_use_only_metrics_we_export() -> None:
    used = {family(series) for series in _METRIC.findall(RULES.read_text())}
    assert used >= {
        "trio_runner_task_calls_total",
        "trio_runner_task_duration_seconds",
        "trio_runner_circuit_state",
        "trio_runner_lane_dead_lettered_total",
        "trio_runner_lane_delivered_total",
        "trio_runner_lane_pending",
        "trio_runner_lane_oldest_pending_age_seconds",
    }


def test_family() -> None:
    assert family("trio_runner_task_duration_seconds_bucket") == (
        "trio_runner_task_duration_seconds"
    )
    assert family("trio_runner_circuit_state") == "trio_runner_circuit_state"
    with pytest.raises(AssertionError, match="trio_runner_circuit_state_bucket is not"):
        family("trio_runner_circuit_state_bucket")
    with pytest.raises(AssertionError, match="trio_runner_requests_total is not"):
        family("trio_runner_requests_total")


@pytest.mark.parametrize(
    "name",
    [
        "high-error-rate",
        "circuit-open",
        "shutdown-stuck",
        "durable-backlog",
        "lane-dead-letters",
        "lane-backlog",
    ],
)
def test_each_runbook_has_its_sections_and_names_only_real_metrics(name: str) -> None:
    text = (RUNBOOKS / f"{name}.md").read_text()
    for section in ("Symptoms", "Triage", "Mitigation", "Rollback"):
        assert re.search(rf"^## {section}\b", text, re.MULTILINE), section
    for series in _METRIC.findall(text):
        family(series)
