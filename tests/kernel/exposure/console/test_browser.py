"""The console in a real browser: Debian's Chromium, headless, driven by Playwright, against
the example order service (examples/service, as ``make run`` serves it) plus one health
check the test can break. One server and one browser for the module; each state is
screenshotted into the test's artefact directory (printed by ``-s``, kept by pytest).

Nothing is downloaded: Playwright runs the ``chromium`` on PATH. Without it the tests
skip, except under ``CI=true`` where they fail (``.ci/run`` installs the package).
"""

from __future__ import annotations

import io
import os
import queue
import runpy
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

import kernel
from kernel.metrics import MetricsRegistry
from tests.examples.conftest import EXAMPLES

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.slow  # a real browser, in real time

TOKEN = "console-test-token"
#: Where a copy of the 1280 px screenshot goes when set (docs/img/console.png is made so).
COPY_TO = os.environ.get("CONSOLE_SCREENSHOT_TO")
CHROMIUM = shutil.which("chromium")


@attrs.define
class Switch:
    broken: bool = False


async def _feed_answers(switch: Switch) -> None:
    if switch.broken:
        raise ConnectionError("the inventory feed does not answer")


@kernel.resource("inventory.feed", health=_feed_answers)
async def feed() -> Switch:
    return Switch()


@attrs.define
class Live:
    url: str
    switch: Switch
    execution_id: str
    shots: Path

    @property
    def console(self) -> str:
        return f"{self.url}/__runner/console/?refresh=1"


def _service() -> kernel.Service:
    sys.path.insert(0, str(EXAMPLES / "service"))
    try:
        example = runpy.run_path(str(EXAMPLES / "service" / "__main__.py"), run_name="service")
    finally:
        sys.path.remove(str(EXAMPLES / "service"))
    payments = example["PaymentsConfig"](seed=0, latency=0.0)
    service: kernel.Service = example["service"](
        port=0, token=TOKEN, log_format="json", sink=io.StringIO(), payments=payments
    )
    app = kernel.App("order-service-under-test", register=[service.app, feed])
    # In a thread: no signal handlers; its own registry, so the figures are this run's.
    return attrs.evolve(service, app=app, shutdown_signals=False, metrics=MetricsRegistry())


def _serve(service: kernel.Service, handed: queue.Queue[Any]) -> None:
    async def main() -> None:
        async with service.run() as rt:
            url = rt.resource(rt.graph.node("orders.http").definition).url
            stop = trio.Event()
            handed.put((url, rt.resource(feed), trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    try:
        trio.run(main)
    except BaseException as exc:  # handed to the test, which raises it
        handed.put(exc)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs the Debian package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    handed: queue.Queue[Any] = queue.Queue()
    thread = threading.Thread(target=_serve, args=(_service(), handed), daemon=True)
    thread.start()
    got = handed.get(timeout=20)
    if isinstance(got, BaseException):
        raise got
    url, switch, token, stop = got
    try:
        with httpx.Client(
            base_url=f"{url}/__runner/task",
            headers={"authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ) as client:
            for quantity in (1, 2, 3):  # some figures for the task table
                created = client.post(
                    "/orders.create", json={"input": {"item": "tea", "quantity": quantity}}
                )
                assert created.status_code == 200, created.text
            started = client.post("/orders.start", json={"input": {"item": "tea", "quantity": 2}})
            assert started.status_code == 200, started.text
        shots = tmp_path_factory.mktemp("console-screenshots")
        print(f"\nconsole screenshots in {shots}")
        yield Live(url, switch, started.json()["result"]["execution_id"], shots)
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        # Root in a container: Chromium's sandbox needs user namespaces it may not get, and
        # /dev/shm may be too small for it.
        launched = driver.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(8000)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert not errors, errors


def _sign_in(page: Any, live: Live, token: str = TOKEN) -> None:
    page.goto(live.console)
    page.get_by_label("Bearer token of this service").fill(token)
    page.get_by_role("button", name="Open the console").click()


def test_without_a_token_only_the_form_shows_and_the_api_answers_401(page: Any, live: Live) -> None:
    page.goto(live.console)
    expect = playwright.expect
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0
    status = page.evaluate("async () => (await fetch('api/tasks')).status")
    assert status == 401
    _sign_in(page, live, token="not-the-token")
    expect(page.locator("#login-error")).to_have_text("The token was refused.")
    expect(page.locator("#console")).to_be_hidden()
    page.screenshot(path=live.shots / "1-token-form.png", full_page=True)


def test_with_the_token_tasks_health_a_circuit_and_an_execution_appear(
    page: Any, live: Live
) -> None:
    expect = playwright.expect
    _sign_in(page, live)
    expect(page.locator("#console")).to_be_visible()
    tasks = page.locator("#task-table tbody")
    for task in ("orders.create", "orders.get", "orders.start", "orders.approve", "orders.status"):
        expect(tasks.get_by_text(task, exact=True)).to_be_visible()
    expect(page.locator("#health-status")).to_have_text("✓ healthy")
    circuit = page.locator("#circuits tbody tr").filter(has_text="orders.create")
    expect(circuit).to_contain_text("closed")
    row = page.locator("#executions tbody tr").filter(has_text=live.execution_id)
    expect(row).to_contain_text("orders.approval")
    expect(row).to_contain_text("waiting")
    expect(page.locator("#graph-drawing svg g.node")).not_to_have_count(0)
    expect(page.locator("#lanes")).to_be_hidden()  # the example has no lane
    assert page.evaluate("() => document.cookie") == ""
    page.screenshot(path=live.shots / "2-console-1280.png", full_page=True)
    if COPY_TO:
        shutil.copyfile(live.shots / "2-console-1280.png", COPY_TO)
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("heading", name="Durable workflows")).to_be_visible()
    page.screenshot(path=live.shots / "3-console-phone.png", full_page=True)


def test_an_execution_shows_its_audit_and_a_signal_from_the_page_completes_it(
    page: Any, live: Live
) -> None:
    expect = playwright.expect
    _sign_in(page, live)
    page.get_by_role("button", name=f"Open execution {live.execution_id}").click()
    detail = page.locator("#execution")
    expect(detail).to_be_visible()
    expect(page.locator("#audit li.audit-entry").first).to_be_visible()
    expect(page.locator("#audit")).to_contain_text("signal_waiting")
    expect(page.get_by_label("Signal", exact=True)).to_have_value("orders.decided")
    page.get_by_label("Payload (JSON)").fill("true")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Send signal").click()
    expect(page.locator("#execution-status")).to_have_text("completed", timeout=10000)
    expect(page.locator("#audit")).to_contain_text("signal_delivered")
    expect(detail).to_contain_text('"outcome": "approved"')
    page.screenshot(path=live.shots / "4-execution-completed.png", full_page=True)


def test_a_broken_check_turns_the_status_degraded_on_the_next_refresh(
    page: Any, live: Live
) -> None:
    expect = playwright.expect
    _sign_in(page, live)
    expect(page.locator("#health-status")).to_have_text("✓ healthy")
    live.switch.broken = True
    try:
        expect(page.locator("#health-status")).to_have_text("! degraded")
        checks = page.locator("#health-checks tbody tr").filter(has_text="inventory.feed")
        expect(checks).to_contain_text("unhealthy")
        expect(checks).to_contain_text("the inventory feed does not answer")
        page.screenshot(path=live.shots / "5-degraded.png", full_page=True)
    finally:
        live.switch.broken = False
