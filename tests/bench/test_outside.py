"""The ``served`` rows' reading of ``wrk``'s report, and their place in the registry."""

from __future__ import annotations

from bench.outside import PREFIX, SCENARIOS, parse_wrk
from bench.scenarios import REGISTRY
from bench.targets import TARGETS

CLEAN = """Running 2s test @ http://127.0.0.1:1/__runner/task/bench.ping
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    51.20ms    8.11ms 120.00ms   90.00%
    Req/Sec     1.25k    80.00     1.40k    70.00%
  2514 requests in 2.00s, 433.00KB read
Requests/sec:   1255.73
Transfer/sec:    216.23KB
"""


def test_a_clean_report_gives_its_rate_and_count() -> None:
    assert parse_wrk(CLEAN) == (1255.73, 2514, None)


def test_failed_answers_and_socket_errors_fail_the_row() -> None:
    report = CLEAN.replace(
        "Requests/sec",
        "  Socket errors: connect 0, read 3, write 0, timeout 0\n"
        "  Non-2xx or 3xx responses: 12\nRequests/sec",
    )
    assert parse_wrk(report) == (
        1255.73,
        2514,
        "12 non-2xx answers; socket errors: connect 0, read 3, write 0, timeout 0",
    )


def test_output_without_figures_is_an_error() -> None:
    rate, total, problem = parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")
    assert (rate, total) == (0.0, 0)
    assert problem is not None
    assert "Connection refused" in problem


def test_the_rows_and_their_targets_are_registered() -> None:
    ids = {s.id for s in REGISTRY}
    assert {s.id for s in SCENARIOS} <= ids
    subjects = {t.subject for t in TARGETS} | {t.reference for t in TARGETS}
    assert {PREFIX + "kernel_1", PREFIX + "kernel_2", PREFIX + "bare"} <= subjects


def test_an_outside_row_carries_its_details_into_the_measurement() -> None:
    from bench._execute import _from_anchor
    from bench._timing import summarize
    from bench.anchors.runner import AnchorReport

    (row, *_) = SCENARIOS
    report = AnchorReport(
        status="ok",
        stats={row.id: summarize([1e6, 1.1e6], 2000)},
        details={row.id: "1,000 requests/s (median round); CPU 700 µs per request"},
    )
    measured = _from_anchor(row, report, "unused")
    assert measured.status == "ok"
    assert measured.details == "1,000 requests/s (median round); CPU 700 µs per request"
