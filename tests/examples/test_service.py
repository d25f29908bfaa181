"""examples/service — the order service behind `make run` — served for real on loopback."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import kernel
from tests.examples.conftest import EXAMPLES

SERVICE = EXAMPLES / "service"
AUTH = {"authorization": "Bearer t0k"}


@pytest.fixture
def service_module(monkeypatch: pytest.MonkeyPatch, load_example: Any) -> dict[str, Any]:
    monkeypatch.syspath_prepend(str(SERVICE))
    return load_example("service/__main__")


async def test_orders_over_http_with_health_metrics_and_json_logs(service_module) -> None:
    logs = io.StringIO()
    # A seeded provider: unseeded, its 30 % declines defeat all four attempts now and then.
    payments = service_module["PaymentsConfig"](seed=0)
    service = service_module["service"](
        port=0, token="t0k", log_format="json", sink=logs, payments=payments
    )
    auth = {"authorization": "Bearer t0k"}
    with trio.fail_after(20):
        async with service.run() as rt, httpx.AsyncClient() as client:
            url = rt.resource(rt.graph.node("orders.http").definition).url
            assert "development token: t0k" in service_module["banner"](rt, "t0k")
            created = await client.post(
                f"{url}/__runner/task/orders.create",
                json={"input": {"item": "tea", "quantity": 2}},
                headers=auth,
            )
            assert created.status_code == 200
            order = created.json()["result"]
            assert order["item"] == "tea"
            assert order["status"] == "paid"
            fetched = await client.post(
                f"{url}/__runner/task/orders.get", json={"input": {"id": order["id"]}}, headers=auth
            )
            assert fetched.json() == {"ok": True, "result": order}
            missing = await client.post(
                f"{url}/__runner/task/orders.get", json={"input": {"id": 999}}, headers=auth
            )
            assert (missing.status_code, missing.json()["code"]) == (404, "order_not_found")
            refused = await client.post(f"{url}/__runner/task/orders.get", json={"input": {}})
            assert refused.status_code == 401
            assert (await client.get(f"{url}/health")).json()["status"] == "healthy"
            metrics = (await client.get(f"{url}/metrics")).text
            assert 'trio_runner_task_calls_total{outcome="success",task="orders.create"} 1.0' in (
                metrics
            )
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert any(line["source"] == "orders.confirm" for line in lines)
    assert any(line["source"] == "kernel.exposure" for line in lines)


def test_doctor_passes_the_exposure_rows(service_module) -> None:
    from kernel._doctor import diagnose

    rows = {row.check: row for row in diagnose(service_module["service"](port=0, token="x"))}
    for check in ("exposure.auth", "exposure.allow_lists", "exposure.body_limit"):
        assert rows[check].status == "pass", rows[check]


async def call(client: httpx.AsyncClient, url: str, task: str, value: Any) -> httpx.Response:
    return await client.post(f"{url}/__runner/task/{task}", json={"input": value}, headers=AUTH)


async def status_when(
    client: httpx.AsyncClient, url: str, execution_id: str, status: str
) -> dict[str, Any]:
    """Poll ``orders.status`` until the approval reaches ``status`` (callers bound the wait)."""
    while True:
        reply = await call(client, url, "orders.status", {"execution_id": execution_id})
        assert reply.status_code == 200, reply.text
        found: dict[str, Any] = reply.json()["result"]
        if found["status"] == status:
            return found
        assert found["status"] in ("pending", "running", "waiting"), found


def url_of(rt: Any) -> str:
    return str(rt.resource(rt.graph.node("orders.http").definition).url)


async def test_order_approvals_over_http_on_sqlite(service_module, tmp_path: Path) -> None:
    db = tmp_path / "orders.sqlite3"
    service = service_module["service"](port=0, token="t0k", durable_db=db, sink=io.StringIO())
    with trio.fail_after(20):
        async with service.run() as rt, httpx.AsyncClient() as client:
            url = url_of(rt)
            banner = service_module["banner"](rt, "t0k")
            assert f"kept in {db}" in banner
            for task in ("orders.start", "orders.approve", "orders.status"):
                assert f"{url}/__runner/task/{task}" in banner

            started = await call(client, url, "orders.start", {"item": "tea", "quantity": 2})
            assert started.status_code == 200, started.text
            approved_id = started.json()["result"]["execution_id"]
            rejected_id = (
                await call(client, url, "orders.start", {"item": "jam", "quantity": 1})
            ).json()["result"]["execution_id"]
            waiting = await status_when(client, url, approved_id, "waiting")
            assert (waiting["result"], waiting["error"]) == (None, None)

            decision = {"execution_id": approved_id, "approved": True}
            sent = await call(client, url, "orders.approve", decision)
            assert sent.json() == {"ok": True, "result": decision}
            done = await status_when(client, url, approved_id, "completed")
            assert done["result"]["outcome"] == "approved"
            order = done["result"]["order"]
            assert (order["item"], order["quantity"], order["status"]) == ("tea", 2, "confirmed")
            fetched = await call(client, url, "orders.get", {"id": order["id"]})
            assert fetched.json()["result"] == order

            await call(
                client, url, "orders.approve", {"execution_id": rejected_id, "approved": False}
            )
            done = await status_when(client, url, rejected_id, "completed")
            assert done["result"]["outcome"] == "rejected"
            released = done["result"]["order"]
            assert (released["item"], released["status"]) == ("jam", "released")
            fetched = await call(client, url, "orders.get", {"id": released["id"]})
            assert fetched.json()["result"]["status"] == "released"

            again = await call(client, url, "orders.approve", decision)
            assert (again.status_code, again.json()["code"]) == (409, "approval_closed")
            assert "has ended (completed)" in again.json()["message"]
    assert db.exists()


async def test_approval_errors_over_http(service_module) -> None:
    service = service_module["service"](port=0, token="t0k", sink=io.StringIO())
    with trio.fail_after(20):
        async with service.run() as rt, httpx.AsyncClient() as client:
            url = url_of(rt)
            for task, value in [
                ("orders.status", {"execution_id": "nope"}),
                ("orders.approve", {"execution_id": "nope", "approved": True}),
            ]:
                missing = await call(client, url, task, value)
                assert (missing.status_code, missing.json()["code"]) == (404, "order_not_found")
                assert missing.json()["message"] == "no order approval 'nope'"
            for task, value, field in [
                ("orders.start", {"item": "tea", "quantity": 0}, "quantity"),
                ("orders.start", {"item": "", "quantity": 1}, "item"),
                ("orders.status", {}, "execution_id"),
                # A string is not a decision, whatever it says ("false" must not approve).
                ("orders.approve", {"execution_id": "x", "approved": "false"}, "approved"),
            ]:
                refused = await call(client, url, task, value)
                assert (refused.status_code, refused.json()["code"]) == (422, "invalid_input")
                assert field in refused.json()["details"][0], refused.json()
            envelope = await client.post(
                f"{url}/__runner/task/orders.start", json={"order": {}}, headers=AUTH
            )
            assert (envelope.status_code, envelope.json()["code"]) == (400, "bad_request")
            # The workflow itself only runs under the engine: it is not exposed.
            direct = await call(client, url, "orders.approval", {"item": "tea", "quantity": 2})
            assert (direct.status_code, direct.json()["code"]) == (404, "not_found")
            unauthenticated = await client.post(f"{url}/__runner/task/orders.start", json={})
            assert unauthenticated.status_code == 401


async def test_a_waiting_approval_survives_a_restart(service_module, tmp_path: Path) -> None:
    db = tmp_path / "orders.sqlite3"

    def make() -> Any:
        return service_module["service"](port=0, token="t0k", durable_db=db, sink=io.StringIO())

    with trio.fail_after(20):
        async with make().run() as rt, httpx.AsyncClient() as client:
            url = url_of(rt)
            started = await call(client, url, "orders.start", {"item": "tea", "quantity": 3})
            execution_id = started.json()["result"]["execution_id"]
            await status_when(client, url, execution_id, "waiting")
        async with make().run() as rt, httpx.AsyncClient() as client:
            url = url_of(rt)
            assert (await status_when(client, url, execution_id, "waiting"))["result"] is None
            decision = {"execution_id": execution_id, "approved": True}
            assert (await call(client, url, "orders.approve", decision)).status_code == 200
            done = await status_when(client, url, execution_id, "completed")
    order = done["result"]["order"]
    assert (done["result"]["outcome"], order["quantity"], order["status"]) == (
        "approved",
        3,
        "confirmed",
    )


async def test_an_undecided_order_is_released_after_a_day(service_module, autojump_clock) -> None:
    approval = service_module["approval"]
    orders = kernel.App(
        "t", register=[service_module["app"](service_module["PaymentsConfig"]()), approval.app()]
    )
    async with kernel.run(orders) as rt:
        engine = rt.resource(approval.durable)
        started = await rt.run_task(approval.start_approval, {"item": "tea", "quantity": 1})
        result = await engine.wait(started.execution_id)
        assert trio.current_time() >= approval.APPROVAL_WINDOW == 86400
        assert result.outcome == "expired"
        assert result.order.status == "released"
        assert rt.resource(approval.store)[result.order.id] == result.order
        steps = await engine.store.list_step_results(started.execution_id)
        assert [step.step_id for step in steps if step.position is not None] == [
            "reserve",
            "__signal:orders.decided:1",
            "rollback:reserve",
        ]
        with pytest.raises(approval.ApprovalClosed, match=r"has ended \(completed\)"):
            await rt.run_task(
                approval.approve, {"execution_id": started.execution_id, "approved": True}
            )


@pytest.mark.slow
def test_make_run_serves_and_stops_gracefully_on_ctrl_c(tmp_path: Path) -> None:
    db = tmp_path / "data" / "orders.sqlite3"  # its directory is created at start
    process = subprocess.Popen(
        [sys.executable, str(SERVICE)],
        env={**os.environ, "PORT": "0", "TOKEN": "dev", "DURABLE_DB": str(db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("order service on http://127.0.0.1:")
    assert process.stdout.readline() == "development token: dev\n"
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    for phase in ("shutdown: SIGINT received", "shutdown: disposing resources"):
        assert phase in err
    assert "closing the store with 0 order(s)" in err
    assert db.exists()
