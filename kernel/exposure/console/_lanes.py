"""The console's view of lanes (events that travel between processes), read through a
small protocol rather than the lanes' own classes: any started resource whose value has
``pending()``, ``dead_letters(limit=)`` and ``replay(message_id)`` (the lane value of
API.md) is shown; ``lag()`` and ``oldest_pending_age()``, when a lane has them, too, and
otherwise what its ``status()`` says (a `kernel.lanes` lane: its lag is its pending count,
its oldest pending age is in its status). An app without such a resource has no lanes
section.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from kernel.exposure._limits import Refusal
from kernel.exposure.console._views import plain, started_values

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kernel._host import Host

__all__ = ["DEAD_LETTERS", "LaneView", "Lanes"]

#: How many dead letters of each lane the console lists.
DEAD_LETTERS: Final = 50
_OPTIONAL: Final = ("lag", "oldest_pending_age")
_RECORD: Final = ("message_id", "event_id", "payload", "error", "attempts")


@runtime_checkable
class LaneView(Protocol):
    """What the console needs of a lane."""

    async def pending(self) -> int:
        """Entries the lane's group has not acknowledged."""

    async def dead_letters(self, limit: int = 100) -> Sequence[Any]:
        """Dead-lettered records (``message_id``, ``event_id``, ``payload``, ``error``,
        ``attempts``)."""

    async def replay(self, message_id: str) -> Any:
        """Re-queue one dead letter."""


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Lanes:
    """The lanes of a runtime."""

    def __init__(self, runtime: Host) -> None:
        self._runtime = runtime

    def lanes(self) -> dict[str, LaneView]:
        """The started resources whose value is a `LaneView`, by id."""
        return {
            id: value
            for id, value in started_values(self._runtime).items()
            if isinstance(value, LaneView) and not isinstance(value, type)
        }

    async def view(self) -> dict[str, Any]:
        """Each lane's pending count, lag and oldest pending age (where it tells them)
        and its dead letters; a lane whose store fails shows the error instead."""
        rows = []
        for id, lane in self.lanes().items():
            row: dict[str, Any] = {"id": id}
            try:
                row["pending"] = plain(await lane.pending())
                for name in _OPTIONAL:
                    method = getattr(lane, name, None)
                    row[name] = plain(await _maybe(method())) if callable(method) else None
                status = getattr(lane, "status", None)
                if callable(status) and row["oldest_pending_age"] is None:
                    snapshot = await _maybe(status())
                    row["oldest_pending_age"] = plain(getattr(snapshot, "oldest_pending_age", None))
                if row["lag"] is None:  # a lane's lag is what its group has not acknowledged
                    row["lag"] = row["pending"]
                records = await lane.dead_letters(limit=DEAD_LETTERS)
                row["dead_letters"] = [
                    {field: plain(getattr(record, field, None)) for field in _RECORD}
                    for record in records
                ]
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:200]
            rows.append(row)
        return {"lanes": rows}

    async def replay(self, lane_id: str, body: Any) -> dict[str, Any]:
        """Replay the dead letter ``body["message_id"]`` of the lane ``lane_id``."""
        lane = self.lanes().get(lane_id)
        if lane is None:
            raise Refusal(404, "not_found", "no such lane")
        if not isinstance(body, dict) or set(body) != {"message_id"}:
            raise Refusal(400, "bad_request", 'the body must be {"message_id": "<id>"}')
        message_id = body["message_id"]
        if not isinstance(message_id, str) or not message_id:
            raise Refusal(400, "bad_request", "message_id must be a non-empty string")
        await lane.replay(message_id)
        return {"ok": True}
