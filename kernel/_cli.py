"""The ``trio-runner`` command line.

    trio-runner graph myproject.app:app --format mermaid

Exit codes: 0 done; 1 the app is invalid (the error's class and message on stderr); 2 the
command itself is wrong (bad arguments, a target that cannot be imported or is not an App).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from kernel._definitions import App
from kernel._errors import KernelError
from kernel._graph import build_graph
from kernel._graph_render import FORMATS

__all__ = ["main"]

PROG = "trio-runner"


class _TargetError(Exception):
    """The TARGET argument does not name an importable App."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect and run trio-runner applications."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    graph = commands.add_parser(
        "graph",
        help="validate an app without starting it and print its dependency graph",
        description="Validate an app without starting it and print its dependency graph.",
    )
    graph.add_argument("target", metavar="TARGET", help="the app, as module:attribute")
    graph.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    return parser


def load_app(target: str) -> App:
    """Import ``module:attribute`` (the attribute may be dotted) and check it is an App.

    As with other app runners, the current directory is importable.
    """
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise _TargetError(f"TARGET must be module:attribute, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: object = importlib.import_module(module_name)
    except KernelError:
        raise
    except Exception as exc:
        raise _TargetError(f"cannot import module {module_name!r}: {exc!r}") from exc
    for name in attribute.split("."):
        try:
            value = getattr(value, name)
        except AttributeError:
            raise _TargetError(f"{target!r}: no attribute {name!r}") from None
    if not isinstance(value, App):
        raise _TargetError(f"{target!r} is a {type(value).__name__}, not a kernel.App")
    return value


def _graph(target: str, format: str) -> int:
    try:
        app = load_app(target)
        rendered = build_graph(app).render(format)
    except _TargetError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KernelError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(rendered)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or bad arguments (argparse printed why)
        return int(stop.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return _graph(args.target, args.format)


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    sys.exit(main())
