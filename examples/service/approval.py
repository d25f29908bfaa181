"""Order approval, a durable workflow: reserve the order, wait up to a day for a decision,
then confirm it, or release it when it is rejected or nobody decides in time.

The workflow's progress lives in the engine's store (a SQLite file in the service), so a
restart in the middle of the wait loses nothing: the decision is applied when it comes.
"""

from __future__ import annotations

import os
from typing import Literal

import attrs
from orders import NewOrder, Order, OrderNotFound, next_order_id, store

import kernel
from kernel.durable import Engine, MemoryStore, SqliteStore, UnknownExecutionError

#: How long an order waits for its decision before it is released.
APPROVAL_WINDOW = 24 * 3600.0


@attrs.frozen
class ApprovalId:
    """The execution id of an order approval (returned by ``orders.start``)."""

    execution_id: str


@attrs.frozen
class Decision:
    """A decision on an order approval."""

    execution_id: str
    approved: bool


@attrs.frozen
class Approval:
    """How an approval ended: the order as it now stands, and why."""

    order: Order
    outcome: Literal["approved", "rejected", "expired"]


@attrs.frozen
class ApprovalStatus:
    """Where an approval stands: its execution's status, and its result once completed."""

    execution_id: str
    status: str
    result: Approval | None = None
    error: str | None = None


class ApprovalClosed(kernel.PublicError):
    """The approval has ended already (decided, or expired): a 409 for HTTP callers."""

    http_status = 409
    code = "approval_closed"


#: The decision, sent by ``orders.approve``; its payload is True or False.
decided: kernel.durable.Signal[bool] = kernel.durable.signal("orders.decided")

#: The engine the workflow runs on. Declared in memory; `app` gives it its real store.
durable = kernel.durable.engine("orders.durable", store=MemoryStore())


def _settle(orders: dict[int, Order], order: Order, status: str) -> Order:
    settled = attrs.evolve(order, status=status)
    orders[settled.id] = settled
    return settled


@kernel.task(
    "orders.approval",
    input=NewOrder,
    result=Approval,
    deps={"durable": durable, "store": store},
    tags=[kernel.durable.workflow(category="orders")],
)
async def approval(order: NewOrder, *, durable: Engine, store: dict[int, Order]) -> Approval:
    """Reserve the order, wait for a decision, then confirm it or roll the reservation back."""
    ctx = durable.context()

    async def reserve() -> Order:
        reserved = Order(next_order_id(), order.item, order.quantity, "reserved")
        store[reserved.id] = reserved
        return reserved

    async def confirm(reserved: Order) -> Order:
        return _settle(store, reserved, "confirmed")

    async def release(reserved: Order) -> None:
        _settle(store, reserved, "released")

    reserved = await ctx.step("reserve").up(reserve).down(release)
    answer = await ctx.wait_for_signal(decided, timeout=APPROVAL_WINDOW)
    if answer.kind == "signal" and answer.payload is True:
        return Approval(await ctx.step("confirm", confirm, reserved), "approved")
    await ctx.rollback()
    outcome: Literal["rejected", "expired"] = "rejected" if answer.kind == "signal" else "expired"
    return Approval(attrs.evolve(reserved, status="released"), outcome)


async def _execution(engine: Engine, execution_id: str) -> kernel.durable.Execution:
    try:
        return await engine.get_execution(execution_id)
    except UnknownExecutionError:
        raise OrderNotFound(f"no order approval {execution_id!r}") from None


@kernel.task("orders.start", input=NewOrder, result=ApprovalId, deps={"durable": durable})
async def start_approval(order: NewOrder, *, durable: Engine) -> ApprovalId:
    """Start an approval for the order; answers at once with its execution id."""
    return ApprovalId(await durable.start(approval, order))


@kernel.task("orders.approve", input=Decision, result=Decision, deps={"durable": durable})
async def approve(decision: Decision, *, durable: Engine) -> Decision:
    """Send the decision to a waiting approval (404 unknown, 409 ended); echoes it."""
    execution = await _execution(durable, decision.execution_id)
    if execution.terminal:
        raise ApprovalClosed(
            f"order approval {decision.execution_id!r} has ended ({execution.status})"
        )
    await durable.signal(execution.id, decided, decision.approved)
    return decision


@kernel.task("orders.status", input=ApprovalId, result=ApprovalStatus, deps={"durable": durable})
async def approval_status(ask: ApprovalId, *, durable: Engine) -> ApprovalStatus:
    """Where the approval stands; its result once completed (404 for an unknown id)."""
    execution = await _execution(durable, ask.execution_id)
    result = durable.result_of(execution) if execution.status == "completed" else None
    return ApprovalStatus(execution.id, execution.status, result, execution.error)


def app(durable_db: str | os.PathLike[str] | None = None) -> kernel.App:
    """The approval workflow and its tasks, kept in the SQLite file ``durable_db`` (its
    directory must exist), or in memory when it is None. Register it beside the orders
    App, whose store it reserves orders in."""
    kept = MemoryStore() if durable_db is None else SqliteStore(durable_db)
    return kernel.App(
        "orders.approvals",
        register=[durable, approval, start_approval, approve, approval_status],
        overrides=[kernel.override(durable, kernel.durable.engine("orders.durable", store=kept))],
    )
