"""``trio-runner lanes``: look at a Redis lane's stream, and replay its dead letters, from a
shell (no app is started: the command talks to Redis alone).

    trio-runner lanes orders.lane --url redis://localhost:6379/0 --group billing
    trio-runner lanes orders.lane --url ... --group billing --dead 20 --format json
    trio-runner lanes orders.lane --url ... --group billing --replay 1700000000000-0

``--prefix`` is the store's (default ``trio-runner``), ``--stream`` the lane's ``stream=``
when it set one. Exit codes: 0 done; 1 Redis could not be reached, or no dead letter has
that id; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio

from kernel.lanes._lane import dead_letter_of
from kernel.lanes._redis import RedisBroker
from resilience import StoreUnavailable
from resilience.redis import Store

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The ``lanes`` subcommand, on the ``trio-runner`` parser's subparsers."""
    lanes = commands.add_parser(
        "lanes",
        help="show a Redis lane's pending entries and dead letters, or replay one",
        description="Show a Redis event lane's pending entries and dead letters, or replay "
        "one dead letter (talks to Redis only; no app is started).",
    )
    lanes.add_argument("lane", metavar="LANE", help="the lane's resource id")
    lanes.add_argument("--url", required=True, help="the Redis URL (redis://host:port/db)")
    lanes.add_argument("--group", required=True, help="the lane's consumer group")
    lanes.add_argument("--prefix", default="trio-runner", help="the store's key prefix")
    lanes.add_argument("--stream", default=None, help="the lane's stream key, if it set one")
    lanes.add_argument("--dead", type=int, default=10, metavar="N", help="dead letters to show")
    lanes.add_argument("--replay", metavar="MESSAGE_ID", help="replay this dead letter")
    lanes.add_argument("--format", choices=("text", "json"), default="text")


async def _inspect(args: argparse.Namespace) -> dict[str, Any]:
    store = Store.from_url(args.url, prefix=args.prefix, op_timeout=2.0)
    async with store:
        stream = args.stream or store.key("lane", args.lane, "stream")
        broker = RedisBroker(store, stream, args.group)
        report: dict[str, Any] = {"lane": args.lane, "stream": stream, "group": args.group}
        if args.replay is not None:
            report["replayed"] = {
                "message_id": args.replay,
                "new_id": await broker.replay(args.replay),
            }
        report["pending"] = await broker.pending()
        report["oldest_pending_age"] = await broker.oldest_pending_age()
        letters = []
        for raw in await broker.dead_letters(max(args.dead, 1)):
            try:
                letters.append(dead_letter_of(raw).to_dict())
            except (KeyError, ValueError) as exc:
                letters.append({"unreadable": f"{type(exc).__name__}: {exc}"})
        report["dead_letters"] = letters
        return report


def _text(report: dict[str, Any]) -> str:
    age = report["oldest_pending_age"]
    lines = [
        f"lane {report['lane']} (stream {report['stream']}, group {report['group']})",
        f"pending: {report['pending']}" + ("" if age is None else f", the oldest for {age:.1f} s"),
    ]
    replayed = report.get("replayed")
    if replayed is not None:
        lines.append(f"replayed {replayed['message_id']} as {replayed['new_id']}")
    lines.append(f"dead letters (oldest first, at most {len(report['dead_letters'])} shown):")
    for letter in report["dead_letters"]:
        if "unreadable" in letter:
            lines.append(f"  (unreadable record: {letter['unreadable']})")
            continue
        lines.append(
            f"  {letter['message_id']}  {letter['event_id']}  attempts {letter['attempts']}"
            f"  {letter['error']}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``trio-runner lanes``; the exit code."""
    try:
        report = trio.run(_inspect, args)
    except StoreUnavailable as exc:
        print(f"trio-runner lanes: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.format == "json" else _text(report))
    replayed = report.get("replayed")
    if replayed is not None and replayed["new_id"] is None:
        print(
            f"trio-runner lanes: no dead letter with message id {replayed['message_id']!r}",
            file=sys.stderr,
        )
        return 1
    return 0
