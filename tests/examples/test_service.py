"""examples/service — the order service behind `make run` — served for real on loopback."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
import trio

from tests.examples.conftest import EXAMPLES

SERVICE = EXAMPLES / "service"


@pytest.fixture
def service_module(monkeypatch: pytest.MonkeyPatch, load_example: Any) -> dict[str, Any]:
    monkeypatch.syspath_prepend(str(SERVICE))
    return load_example("service/__main__")


async def test_orders_over_http_with_health_metrics_and_json_logs(service_module) -> None:
    logs = io.StringIO()
    service = service_module["service"](port=0, token="t0k", log_format="json", sink=logs)
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


@pytest.mark.slow
def test_make_run_serves_and_stops_gracefully_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, str(SERVICE)],
        env={**os.environ, "PORT": "0", "TOKEN": "dev"},
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
