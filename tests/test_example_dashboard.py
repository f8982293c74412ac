"""The example's dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

Playwright's own browser download is never used (``executable_path`` points at the system
Chromium that ``scripts/test`` installs). The test writes ``artifacts/dashboard-queued.png``,
taken while a burst is queued, and ``artifacts/dashboard.png`` after it drained, when the chart
shows the queue that formed and drained.
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


def series(page: Page, agent: str, name: str) -> dict[str, str]:
    """One line of an agent's chart: its SVG points, latest value and peak over the window."""
    line = page.locator(f'[data-agent="{agent}"] svg[data-chart] [data-series="{name}"]')
    return {key: line.get_attribute(key) or "" for key in ("points", "data-last", "data-peak")}


def test_dashboard_shows_a_shared_burst_queue_and_drain(example: Example, page: Page) -> None:
    page.goto(example.urls["server1"] + "/")
    default = page.locator('[data-agent="default"]')
    expect(default).to_contain_text("used by server1, server2")
    expect(default).to_contain_text("max_sockets 5")
    expect(page.locator("#title")).to_have_text("server1")
    # A chart per agent, with a line per series, already drawn from the first polls.
    charts = page.locator("svg[data-chart]")
    expect(charts).to_have_count(len(example.get("server1", "/agents")["agents"]))
    for name in ("active", "idle", "queued"):
        expect(default.locator(f'svg[data-chart] [data-series="{name}"]')).to_have_count(1)
    page.wait_for_function(
        """() => document.querySelector(
            '[data-agent="default"] [data-series="queued"]')?.getAttribute("points")
            ?.split(" ").length > 2"""
    )
    quiet = series(page, "default", "queued")
    assert quiet["data-peak"] == "0" and quiet["data-last"] == "0"

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
            const line = document.querySelector(
                '[data-agent="default"] svg[data-chart] [data-series="queued"]');
            return q && a && c && Number(q.textContent) > 40 && Number(a.textContent) === 5
                && Number(c.textContent) > 0 && seen > 0
                && line && Number(line.getAttribute("data-last")) > 40;
        }""",
        timeout=10_000,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-queued.png"), full_page=True)
    queued = series(page, "default", "queued")
    assert queued["points"] != quiet["points"]
    assert series(page, "default", "active")["data-last"] == "5"
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

    # The chart kept the burst: the queue rose past 50 and came back to 0, with 5 sockets
    # active at most (max_sockets), all of them idle once it drained.
    chart_queued = default.locator('svg[data-chart] [data-series="queued"]')
    expect(chart_queued).to_have_attribute("data-last", "0")
    drained = series(page, "default", "queued")
    assert int(drained["data-peak"]) > 50
    assert drained["points"] != queued["points"]
    assert series(page, "default", "active")["data-peak"] == "5"
    expect(default.locator('svg[data-chart] [data-series="active"]')).to_have_attribute(
        "data-last", "0"
    )
    assert int(series(page, "default", "idle")["data-last"]) >= 1
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


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


def test_dashboard_shows_why_a_burst_was_refused(example: Example, page: Page) -> None:
    page.goto(example.urls["server2"] + "/")
    expect(page.locator('[data-agent="isolated"]')).to_be_visible()
    page.fill("#count", "5000")
    page.click('button[data-burst="isolated"]')
    expect(page.locator("#log")).to_contain_text(
        "refused: n must be an integer from 1 to 1000, got '5000'", timeout=10_000
    )
