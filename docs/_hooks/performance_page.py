"""MkDocs hook: the performance page shows the committed benchmark run as it is.

``bench/results/latest.png`` (the chart) is published as ``assets/bench.png``, and the
markers ``<!-- bench:machine -->``, ``<!-- bench:table -->`` and ``<!-- bench:targets -->``
in a page are replaced by what ``bench/results/latest.json`` holds, so the page cannot drift
from the numbers that were measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
CHART = "assets/bench.png"


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, CHART, abs_src_path=str(RESULTS / "latest.png")))
    return files


def _micros(ns: float | None) -> str:
    return "—" if ns is None else f"{ns / 1000:,.3f} µs"


def _machine(run: dict[str, Any]) -> str:
    machine, versions = run["machine"], run["versions"]
    node = versions.get("node")
    return (
        f"Run of {run['created'][:10]} ({run['mode']} mode): {machine['cores']}-core "
        f"{machine['cpu_model']}, {machine['python_implementation']} {machine['python']}, "
        f"trio {versions['trio']}" + (f", Node {node}" if node else "") + ". "
        f"{run['method']['statistic'].capitalize()}, {run['method']['reps']} repetitions; "
        f"overhead: {run['method']['overhead']}."
    )


def _table(run: dict[str, Any]) -> str:
    lines = ["| group | scenario | per call | overhead |", "|---|---|---:|---:|"]
    for row in run["scenarios"]:
        if row["status"] != "ok":
            what = f"{row['status']}: {row['reason']}"
            lines.append(f"| {row['group']} | {row['label']} | {what} | |")
            continue
        lines.append(
            f"| {row['group']} | {row['label']} | {_micros(row['median_ns'])} "
            f"| {_micros(row['overhead_ns'])} |"
        )
    return "\n".join(lines)


def _targets(run: dict[str, Any]) -> str:
    met = sum(bool(target["passed"]) for target in run["targets"])
    lines = [
        f"{met} of {len(run['targets'])} targets met.",
        "",
        "| target | measured | ratio | met |",
        "|---|---:|---:|:---:|",
    ]
    for target in run["targets"]:
        ratio = "—" if target["ratio"] is None else f"{target['ratio']:.2f}"
        mark = "yes" if target["passed"] else "**no**"
        lines.append(f"| {target['label']} | {_micros(target['value_ns'])} | {ratio} | {mark} |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if "<!-- bench:" not in markdown:
        return markdown
    run = json.loads((RESULTS / "latest.json").read_text())
    for marker, render in (
        ("machine", _machine),
        ("table", _table),
        ("targets", _targets),
    ):
        markdown = markdown.replace(f"<!-- bench:{marker} -->", render(run))
    return markdown
