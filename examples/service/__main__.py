"""The example order service: ``make run`` (or ``python examples/service``).

HTTP on 127.0.0.1:8080 (``PORT`` to change, 0 for any free port), a development token
printed at start (``TOKEN`` to choose one), pretty logs (``LOG_FORMAT=json`` for JSON),
metrics at ``/metrics``, health at ``/health`` and ``/ready``. Order approvals are durable
workflows kept in ``.data/orders.sqlite3`` at the repository's root (``DURABLE_DB`` to choose
another file). The settings are read by `kernel.config.from_env` (``settings.py``); a bad one
stops the service before it starts, naming the variable. Ctrl-C (or SIGTERM) shuts it down
gracefully, phase by phase.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import approval
import settings
import trio
from loguru import logger
from orders import PaymentsConfig, app

import kernel
from kernel.exposure import BearerAuth, http

#: What HTTP callers may run: not ``orders.approval`` itself, which only the engine runs.
TASKS = ("orders.create", "orders.get", "orders.start", "orders.approve", "orders.status")


def service(
    *,
    port: int,
    token: str,
    durable_db: str | os.PathLike[str] | None = None,
    log_format: str = "pretty",
    sink: Any = sys.stderr,
    payments: PaymentsConfig | None = None,
) -> kernel.Service:
    """The order service: the order domain and its approvals (in the SQLite file
    ``durable_db``, in memory when None), exposed over HTTP, with logs and metrics on.
    ``payments`` sets up the simulated payment provider (default: `PaymentsConfig()`)."""
    exposure = http(
        "orders.http",
        host="127.0.0.1",
        port=port,
        auth=BearerAuth(tokens={token: "developer"}),
        allow_tasks=TASKS,
        allow_events=(),
        console=True,  # the operator console at /__runner/console/ (same token)
    )
    orders = [app(payments or PaymentsConfig()), approval.app(durable_db)]
    return kernel.Service(
        app=kernel.App("order-service", register=[*orders, exposure]),
        log=kernel.LogConfig(format=log_format, sink=sink),  # type: ignore[arg-type]
        metrics=True,
        drain_timeout=10.0,
    )


def banner(rt: kernel.Runtime, token: str) -> str:
    exposure = rt.graph.node("orders.http").definition
    assert isinstance(exposure, kernel.Resource)
    url = rt.resource(exposure).url
    store = rt.resource(approval.durable).store
    kept = store.path if isinstance(store, kernel.durable.SqliteStore) else "memory"

    def curl(task: str, value: str) -> str:
        return (
            f'  curl -s -H "authorization: Bearer {token}" -d \'{{"input": {value}}}\' '
            f"{url}/__runner/task/{task}"
        )

    order = '{"item": "tea", "quantity": 2}'
    return "\n".join(
        [
            f"order service on {url}  (Ctrl-C to stop)",
            f"development token: {token}",
            f"operator console: {url}/__runner/console/  (sign in with the token)",
            curl("orders.create", order),
            curl("orders.get", '{"id": 1}'),
            f"  curl -s {url}/health    curl -s {url}/metrics",
            f"order approvals (durable, kept in {kept}): start, approve, follow:",
            curl("orders.start", order),
            curl("orders.approve", '{"execution_id": "<id>", "approved": true}'),
            curl("orders.status", '{"execution_id": "<id>"}'),
        ]
    )


async def announce(rt: kernel.Runtime, token: str) -> None:
    print(banner(rt, token), flush=True)
    await trio.sleep_forever()


def main() -> None:
    try:
        given = settings.from_environment()
    except kernel.ConfigError as exc:
        sys.exit(f"order service: bad settings: {exc}")
    token = given.bearer_token()
    durable_db = given.database()
    durable_db.parent.mkdir(parents=True, exist_ok=True)
    logger.remove()  # loguru's default handler; the service logs through LogConfig instead
    kernel.main(
        service(port=given.port, token=token, durable_db=durable_db, log_format=given.log_format),
        serve=lambda rt: announce(rt, token),
    )


if __name__ == "__main__":
    main()
