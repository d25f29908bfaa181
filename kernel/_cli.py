"""The ``trio-runner`` command line.

    trio-runner graph myproject.app:app --format mermaid
    trio-runner doctor myproject.app:service --prod --strict --format json
    trio-runner lanes orders.lane --url redis://localhost:6379/0 --group billing
    trio-runner serve myproject.app:service --workers 4

Exit codes: 0 done (``serve``: after a clean shutdown); 1 the app is invalid (``graph``: the
error's class and message on stderr; ``doctor``: a failed ``graph`` row), ``doctor --strict``
found a failed check, or ``serve`` stopped on an error (a worker kept crashing); 2
the command itself is wrong (bad arguments, a target that cannot be imported or is not an
App — for ``doctor``, an App or a `kernel.Service`). ``lanes``: see `kernel.lanes._cli`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from kernel import _doctor
from kernel._definitions import App
from kernel._errors import KernelError
from kernel._graph import build_graph
from kernel._graph_render import FORMATS
from kernel._service import Service
from kernel.lanes import _cli as lanes_cli

__all__ = ["load_app", "load_target", "main"]

PROG = "trio-runner"


class _TargetError(Exception):
    """The TARGET argument does not name an importable App."""


#: What a declaration raises when it is invalid: a `KernelError`, or the ``ValueError`` /
#: ``TypeError`` of an option out of range or of the wrong type (``Service(drain_timeout=-1)``).
_INVALID = (KernelError, TypeError, ValueError)


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
    doctor = commands.add_parser(
        "doctor",
        help="check an app or service against the production checklist without starting it",
        description="Check an app or kernel.Service against the production checklist without "
        "starting it: one row per check, pass / fail (with a fix) / not applicable.",
    )
    doctor.add_argument(
        "target", metavar="TARGET", help="the App or kernel.Service, as module:attribute"
    )
    doctor.add_argument(
        "--prod", action="store_true", help="also check that trio-runner runs from an install"
    )
    doctor.add_argument(
        "--strict", action="store_true", help="exit 1 when any check fails (for CI)"
    )
    doctor.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    lanes_cli.add_parser(commands)
    serve = commands.add_parser(
        "serve",
        help="run an app or service until SIGTERM/SIGINT, in one or more worker processes",
        description="Run an App or kernel.Service as kernel.main does, until SIGTERM/SIGINT; "
        "with --workers N, N processes sharing the HTTP exposures' ports.",
    )
    serve.add_argument(
        "target", metavar="TARGET", help="the App or kernel.Service, as module:attribute"
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="worker processes (default: the Service's workers, 1 for an App)",
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _serve(target: str, workers: int | None) -> int:
    from kernel._main import run_main

    try:
        loaded = load_target(target)
    except _TargetError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        run_main(loaded, workers=workers, where=target)
    except KernelError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _import(target: str) -> object:
    """Import ``module:attribute`` (the attribute may be dotted); the current directory is
    importable, as with other app runners."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise _TargetError(f"TARGET must be module:attribute, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: object = importlib.import_module(module_name)
    except _INVALID:
        raise
    except Exception as exc:
        raise _TargetError(f"cannot import module {module_name!r}: {exc!r}") from exc
    for name in attribute.split("."):
        try:
            value = getattr(value, name)
        except AttributeError:
            raise _TargetError(f"{target!r}: no attribute {name!r}") from None
    return value


def load_app(target: str) -> App:
    """Import ``module:attribute`` (the attribute may be dotted) and check it is an App."""
    value = _import(target)
    if not isinstance(value, App):
        raise _TargetError(f"{target!r} is a {type(value).__name__}, not a kernel.App")
    return value


def load_target(target: str) -> App | Service:
    """Import ``module:attribute`` and check it is an App or a `kernel.Service`."""
    value = _import(target)
    if not isinstance(value, App | Service):
        raise _TargetError(
            f"{target!r} is a {type(value).__name__}, not a kernel.App or kernel.Service"
        )
    return value


def _graph(target: str, format: str) -> int:
    try:
        app = load_app(target)
        rendered = build_graph(app).render(format)
    except _TargetError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except _INVALID as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(rendered)
    return 0


def _encodes(text: str) -> bool:
    """Whether stdout can print ``text`` (the status symbols need UTF-8 or similar)."""
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except UnicodeEncodeError:
        return False
    return True


def _doctor_command(target: str, *, prod: bool, strict: bool, format: str) -> int:
    try:
        rows = _doctor.diagnose(load_target(target), prod=prod)
    except _TargetError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except _INVALID as exc:  # raised while importing the target: the app is invalid
        rows = [_doctor.invalid_graph_row(exc)]
    if format == "json":
        print(_doctor.render_json(rows))
    else:
        print(_doctor.render_text(rows, ascii=not _encodes(_doctor.SYMBOLS)))
    failed = [row.check for row in rows if row.status == "fail"]
    return 1 if "graph" in failed or (strict and failed) else 0


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
    if args.command == "lanes":
        return lanes_cli.run(args)
    if args.command == "serve":
        return _serve(args.target, args.workers)
    if args.command == "doctor":
        return _doctor_command(args.target, prod=args.prod, strict=args.strict, format=args.format)
    return _graph(args.target, args.format)


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    sys.exit(main())
