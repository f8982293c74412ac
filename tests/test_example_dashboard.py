"""The example's dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

Playwright's own browser download is never used (``executable_path`` points at the system
Chromium that ``scripts/test`` installs). The test writes ``artifacts/dashboard.png``, taken
while a burst is queued, and ``artifacts/dashboard-drained.png`` after it drained.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from test_example import ROOT, Example, run_example

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "artifacts"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"no Chromium at {CHROMIUM}: scripts/test installs Debian's chromium")
    pytest.skip(f"no Chromium at {CHROMIUM} (scripts/test installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    with run_example(tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture
def page(example: Example) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            yield context.new_page()
        finally:
            browser.close()


def number(page: Page, agent: str, field: str) -> int:
    cell = page.locator(f'[data-agent="{agent}"] [data-field="{field}"]')
    return int(cell.inner_text())


def test_dashboard_shows_a_shared_burst_queue_and_drain(example: Example, page: Page) -> None:
    page.goto(example.urls["server1"] + "/")
    default = page.locator('[data-agent="default"]')
    expect(default).to_contain_text("used by server1, server2")
    expect(default).to_contain_text("max_sockets 5")
    expect(page.locator("#title")).to_have_text("server1")

    page.fill("#count", "50")
    page.fill("#delay", "0.1")
    # Both servers fire 50 calls each through the one shared agent: 100 calls, 5 sockets.
    page.click('button[data-burst="both"]')

    page.wait_for_function(
        """() => {
            const q = document.querySelector('[data-agent="default"] [data-field="queued"]');
            const a = document.querySelector('[data-agent="default"] [data-field="active"]');
            const c = document.querySelector(
                '[data-agent="default"] [data-field="connections_created"]');
            const seen = document.querySelectorAll('#upstream tbody tr').length;
            return q && a && c && Number(q.textContent) > 40 && Number(a.textContent) === 5
                && Number(c.textContent) > 0 && seen > 0;
        }""",
        timeout=10_000,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert "queued" in default.locator(".queue").inner_text()
    assert len(default.locator(".sock.active").all()) == 5

    # Drained: nothing active or queued, both bursts reported, no more than 5 connections.
    expect(default.locator('[data-field="queued"]')).to_have_text("0", timeout=15_000)
    expect(default.locator('[data-field="active"]')).to_have_text("0")
    log = page.locator("#log")
    expect(log).to_contain_text("server1 → 'default' agent: 50 calls through agent 'default'")
    expect(log).to_contain_text("server2 → 'default' agent: 50 calls through agent 'default'")
    assert number(page, "default", "peak") > 50
    assert 1 <= number(page, "default", "connections_created") <= 5
    assert number(page, "default", "requests") >= 100
    assert number(page, "default", "errors") == 0

    # The upstream saw server1's and server2's calls on the same sockets.
    upstream = page.locator("#upstream tbody")
    expect(upstream).to_contain_text("server1 (default agent)")
    shared_rows = upstream.locator("tr", has_text="server1 (default agent)").filter(
        has_text="server2 (default agent)"
    )
    expect(shared_rows.first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "dashboard-drained.png"), full_page=True)


def test_dashboard_of_server2_bursts_through_the_isolated_agent(
    example: Example, page: Page
) -> None:
    page.goto(example.urls["server2"] + "/")
    isolated = page.locator('[data-agent="isolated"]')
    expect(isolated).to_contain_text("used by server2")
    before = int(example.get("server2", "/agents")["agents"][0]["requests"])
    page.fill("#count", "10")
    page.fill("#delay", "0.05")
    page.click('button[data-burst="isolated"]')
    expect(page.locator("#log")).to_contain_text(
        "10 calls through agent 'isolated'", timeout=10_000
    )
    expect(isolated.locator('[data-field="queued"]')).to_have_text("0")
    assert number(page, "isolated", "connections_created") <= 2  # its max_sockets
    # The shared agent did not carry these calls.
    assert int(example.get("server2", "/agents")["agents"][0]["requests"]) == before
