"""``python -m bench``: measure, print the table, write ``latest.json`` and ``latest.png``.

    python -m bench                 # the full run (about a minute)
    python -m bench --quick         # every scenario briefly (a few seconds)
    python -m bench --only retry    # a glob on ids, or a substring of an id or label
    python -m bench --no-anchor     # skip the anchors: BlueLibs Runner (Node) and DBOS,
                                    # and the served rows (servers driven by wrk)
    python -m bench --only 'd*'     # the durable rows and the DBOS anchor
    python -m bench --out DIR       # write DIR/latest.json and DIR/latest.png

Exits 1 when a scenario that must work raised (its row says why), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bench._execute import execute, select
from bench._timing import FULL, QUICK
from bench.chart import draw
from bench.machine import machine_info, package_versions
from bench.report import document, render
from bench.scenarios import REGISTRY
from bench.targets import TARGETS, evaluate_all

RESULTS_DIR = Path(__file__).parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Per-call overhead of trio-runner beside its peers."
    )
    parser.add_argument("--quick", action="store_true", help="run every scenario briefly")
    parser.add_argument("--only", metavar="PATTERN", help="only scenarios matching PATTERN")
    parser.add_argument(
        "--no-anchor",
        action="store_true",
        help="skip the rows other processes measure (BlueLibs Runner, DBOS, served by wrk)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help=f"output directory (default {RESULTS_DIR})"
    )
    return parser.parse_args(argv)


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; return the exit status."""
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    scenarios = select(REGISTRY, args.only)
    if not scenarios:
        _log(f"no scenario matches {args.only!r}; ids: {', '.join(s.id for s in REGISTRY)}")
        return 2
    machine = machine_info()
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results = execute(scenarios, settings, anchor=not args.no_anchor, log=_log)
    verdicts = evaluate_all(TARGETS, results)
    versions = package_versions()
    title = (
        f"trio-runner benchmarks, {mode} run {created}: {machine['cpu_model']}, "
        f"{machine['cores']} cores, Python {machine['python']}, trio {versions['trio']}"
    )
    print(render(results, verdicts, settings, title=title))
    args.out.mkdir(parents=True, exist_ok=True)
    data = document(
        results,
        verdicts,
        settings,
        mode=mode,
        anchor_enabled=not args.no_anchor,
        machine=machine,
        versions=versions,
        created=created,
    )
    _write_json(args.out / "latest.json", data)
    draw(results, args.out / "latest.png", title=title.replace(": ", ":\n", 1))
    _log(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.png'}")
    fatal = results.fatal()
    for m in fatal:
        _log(f"error: {m.scenario.id}: {m.reason}")
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main())
