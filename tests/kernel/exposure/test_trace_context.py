"""A caller's traceparent continues across the hop: the served task's span joins its trace."""

from __future__ import annotations

import httpx
import trio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import kernel
from kernel.exposure import http
from tests.kernel.exposure.servers import AUTH, DEADLINE, HEADERS

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def test_the_served_task_span_is_a_child_of_the_callers_span() -> None:
    @kernel.task("api.echo")
    async def echo(x: int) -> int:
        return x

    exposure = http("exposure", auth=AUTH, allow_tasks=("api.*",))
    exporter = InMemorySpanExporter()
    tracing = kernel.TracingConfig(service_name="server", exporter=exporter)
    app = kernel.App("app", register=[echo, exposure])
    with trio.fail_after(DEADLINE):
        async with kernel.run(app, tracing=tracing) as rt:
            base_url = rt.resource(exposure).base_url
            async with httpx.AsyncClient(base_url=base_url) as client:
                headers = {**HEADERS, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
                reply = await client.post("/task/api.echo", json={"input": [7]}, headers=headers)
                assert reply.json() == {"ok": True, "result": 7}
                untraced = await client.post("/task/api.echo", json={"input": [8]}, headers=HEADERS)
                assert untraced.json()["result"] == 8
    first, second = (s for s in exporter.get_finished_spans() if s.name == "task api.echo")
    assert format(first.context.trace_id, "032x") == TRACE_ID
    assert format(first.parent.span_id, "016x") == PARENT_ID
    assert second.parent is None
    assert format(second.context.trace_id, "032x") != TRACE_ID
