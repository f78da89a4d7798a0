"""The Temporal UI in a real browser: Debian's chromium, driven by Playwright, against the dev server's UI with a worker
and the simulator (the `deployflow dev` stack). A release is started from the UI's start form, read on its page,
paused and resumed from the signal form, and found in the list by its `Deploy*` search attributes.

Screenshots go to a temporary directory, or to DEPLOYFLOW_UI_SCREENSHOTS when set (`docs/ui` refreshes the ones the
documentation shows).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.client import WorkflowExecutionStatus

from deployflow.dev import DevPorts, DevStack
from deployflow.status import DeploymentStatus, Phase

try:
    from playwright.async_api import Locator, Page, async_playwright, expect

    HAVE_PLAYWRIGHT = True
except ImportError:  # the dev extras are not installed: the marker turns the skip into a failure under CI=true
    HAVE_PLAYWRIGHT = False

CHROMIUM = "/usr/bin/chromium"
# A browser that never reaches the network on its own: no updates, sync, QUIC or first-run pages, and no GPU or sandbox
# (the tests may run as root in a container).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NAMESPACE = "shop"
WORKFLOW_ID = f"deploy/sim/{NAMESPACE}/shop"
SUMMARY = "blue-green release of shop 2.0.0 (started from the UI)"
BY_APP = 'DeployApp="shop" AND DeployStrategy="blue-green" AND ExecutionStatus="Running"'
OTHER_APP = 'DeployApp="cart"'
WAIT = 60.0  # bounds a hang while something happens (not a speed assertion)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not HAVE_PLAYWRIGHT or not shutil.which(CHROMIUM),
                       reason=f"needs the playwright package and Debian's chromium at {CHROMIUM}"),
]

SPEC = {
    "strategy": "blue-green",
    "target": {"cluster": "sim", "namespace": NAMESPACE, "app": "shop"},
    "workload": {"image": "registry.example.com/shop/web:2.0.0", "replicas": 2},
    # A manual gate: the release waits there, so there is something running to look at and steer.
    "promotion": {"mode": "manual", "timeout": "30m"},
    "standby": "10m",
}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevStack]:
    """The local stack with its UI on free ports: dev server, simulator at 20x speed and a worker."""
    state = tmp_path_factory.mktemp("ui-stack")
    async with DevStack(ports=DevPorts.free(), state_dir=state, time_factor=20.0, prometheus=False,
                        persistent=False, namespaces=(NAMESPACE,)) as dev:
        yield dev


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DEPLOYFLOW_UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await check():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.2)


async def send_signal(page: Page, name: str, data: dict[str, str] | None = None) -> None:
    """The workflow page's More Actions > Send a Signal form, with the signal picked from the names the worker
    declares. (The UI renders its menus twice, for wide and narrow screens: only the visible one is used.)"""
    await page.get_by_role("button", name="More Actions").filter(visible=True).click()
    await page.get_by_test_id("signal-button").filter(visible=True).click()
    await page.get_by_test_id("signal-select-button").filter(visible=True).click()
    await page.get_by_role("option", name=re.compile(rf"^{name}\b")).filter(visible=True).click()
    dialog = page.get_by_role("dialog").filter(visible=True)
    if data is not None:
        await dialog.locator(".cm-content").click()
        await page.keyboard.insert_text(json.dumps(data))
    await dialog.get_by_role("button", name="Submit").click()
    await expect(dialog).to_be_hidden()


def rendered(page: Page, which: str) -> Locator:
    """The User Metadata tab's markdown, which the UI renders in sandboxed frames: the summary first, the current
    details last."""
    frames = page.locator("main iframe").filter(visible=True)
    return (frames.first if which == "summary" else frames.last).content_frame.locator("body")


async def current_details(page: Page, url: str, text: str) -> None:
    """Loads the workflow's User Metadata tab until its current details say `text`: the page reads them once, from
    the workflow's metadata query, and does not poll."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        await page.goto(url)
        details = rendered(page, "details")
        try:
            await expect(details).to_contain_text(text, timeout=5000)
            return
        except AssertionError:
            assert loop.time() < deadline, f"the UI's current details never said {text!r}"


async def test_release_started_steered_and_found_in_the_ui(stack: DevStack, shots: Path, tmp_path: Path) -> None:
    client = await stack.client()
    ui = f"{stack.ui_url}/namespaces/default/workflows"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 860},
        )
        try:
            page = await browser.new_page()

            # The start form, as the README describes it: id, queue, type, and the spec as the one JSON input.
            await page.goto(f"{ui}/start-workflow")
            await page.get_by_label("Workflow ID").fill(WORKFLOW_ID)
            await page.get_by_label("Task Queue").fill(stack.task_queue)
            await page.get_by_label("Workflow Type").fill("BlueGreenDeployment")
            # The form looks the queue up once it is typed: the worker polls it.
            await expect(page.get_by_text("Task Queue is Active")).to_be_visible(timeout=WAIT * 1000)
            # Summary and Details are markdown editors (the first and second), not plain inputs. They are filled
            # before the input, whose editor reformats the JSON on blur and so moves the button under the pointer.
            await page.get_by_role("button", name="More options").click()
            await page.locator('.cm-content[data-language="markdown"]').first.click()
            await page.keyboard.insert_text(SUMMARY)
            await page.locator('.cm-content[data-language="json"]').first.click()
            await page.keyboard.insert_text(json.dumps(SPEC))
            await page.get_by_role("heading", name="Start Workflow").click()
            await page.screenshot(path=shots / "start-form.png", full_page=True)
            await page.get_by_test_id("start-workflow-button").click()
            await expect(page.get_by_text("Workflow started successfully").first).to_be_visible()

            handle = client.get_workflow_handle(WORKFLOW_ID)

            async def status() -> DeploymentStatus:
                return await handle.query("status", result_type=DeploymentStatus)

            async def waiting() -> bool:
                return (await status()).phase == Phase.WAITING_PROMOTION

            # The worker decoded the UI's input as the spec: the new colour is healthy and waits at the gate.
            await eventually(waiting, "the release waits at its manual gate")
            assert (await status()).version == "2.0.0"

            # Its page: running, with the summary typed in the form and the workflow's own current details.
            run = (await handle.describe()).run_id
            page_url = f"{ui}/{quote(WORKFLOW_ID, safe='')}/{run}"
            await current_details(page, f"{page_url}/user-metadata", "WaitingPromotion")
            await expect(page.locator("main").filter(visible=True)).to_contain_text("Running")
            await expect(rendered(page, "summary")).to_contain_text(SUMMARY)
            await expect(rendered(page, "details")).to_contain_text("2.0.0 is ready on shop-preview")
            await page.screenshot(path=shots / "running-details.png", full_page=True)

            await send_signal(page, "pause", {"reason": "checking dashboards"})

            async def paused() -> bool:
                return (await status()).paused

            await eventually(paused, "the UI's pause signal took effect")
            # At a gate the release is already holding, so the pause is recorded and shown until resume.
            await current_details(page, f"{page_url}/user-metadata", "WaitingPromotion (pause requested)")

            await send_signal(page, "resume")

            async def resumed() -> bool:
                st = await status()
                return not st.paused and st.phase == Phase.WAITING_PROMOTION

            await eventually(resumed, "the UI's resume signal took effect")
            await current_details(page, f"{page_url}/user-metadata", "WaitingPromotion")
            await expect(rendered(page, "details")).not_to_contain_text("pause requested")

            # The Queries tab runs `status`, the same answer `deployflow status --json` prints.
            await page.goto(f"{page_url}/query")
            await page.get_by_test_id("query-select-button").filter(visible=True).click()
            await page.get_by_role("option", name=re.compile(r"^status\b")).filter(visible=True).click()
            await page.get_by_role("button", name=re.compile("(Run|Refresh) Query")).filter(visible=True).click()
            answer = page.locator("main").filter(visible=True)
            await expect(answer).to_contain_text('"phase": "WaitingPromotion"')
            await expect(answer).to_contain_text('"paused": false')

            # The list filtered by the search attributes the workflow sets; another app's filter does not find it.
            await page.goto(f"{ui}?query={quote(BY_APP)}")
            rows = page.locator("main").filter(visible=True)
            await expect(rows.get_by_text(WORKFLOW_ID).first).to_be_visible()
            await expect(rows).to_contain_text("BlueGreenDeployment")
            await page.screenshot(path=shots / "list-by-deployapp.png", full_page=True)
            await page.goto(f"{ui}?query={quote(OTHER_APP)}")
            await expect(page.locator("main").filter(visible=True)).to_contain_text("No Workflows")
            await expect(page.get_by_text(WORKFLOW_ID)).to_have_count(0)
        finally:
            await browser.close()

    await handle.cancel()  # rolls back; the stack goes with the module

    async def ended() -> bool:
        return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

    await eventually(ended, "the cancelled release ended")
