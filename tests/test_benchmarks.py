"""The benchmark harness cannot rot: ``python -m benchmarks --smoke`` runs every client in every
configuration with tiny counts, and writes the page, the raw figures and the charts.

Nothing here is timed, and no figure is compared with another: a smoke run's figures mean
nothing. What is checked is that every part ran and reported, and that the page shows charts
that exist.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = {"agent-h11", "agent-httptools", "aiohttp", "httpx", "httpx2", "h11-loop", "floor"}
# Only the agent's optional parser may be missing from a machine the tests run on.
MAY_BE_MISSING = {"agent-httptools"}
CONFIGURATIONS = {
    f"{mode}-{body}-c{concurrency}-{loop}"
    for mode in ("keepalive", "newconn")
    for body in ("small", "large")
    for concurrency in (1, 10, 100)
    for loop in ("asyncio", "uvloop")
}
CHARTS = {
    "clients-asyncio.png",
    "clients-uvloop.png",
    "requests-per-second.png",
    "pool-scaling.png",
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    output = tmp_path_factory.mktemp("benchmarks")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # a hang, not a speed limit: the run takes well under a minute
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads((output / "benchmarks" / "results.json").read_text())
    return output, results


def test_every_client_ran_every_configuration(smoke_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke_run
    section = results["clients"]
    assert set(section["clients"]) == CLIENTS
    missing = {name for name, info in section["clients"].items() if info["unavailable"]}
    assert missing <= MAY_BE_MISSING
    assert section["errors"] == []
    assert {run["id"] for run in section["runs"]} == CONFIGURATIONS
    for run in section["runs"]:
        assert set(run["results"]) == CLIENTS, run["id"]
        for name, result in run["results"].items():
            if name in missing:
                assert result["unavailable"], (run["id"], name)
                continue
            assert result["cpu_us"] > 0 and result["rps"] > 0, (run["id"], name)
            assert set(result["ratios"]) == {"aiohttp", "floor", "httpx2", "h11-loop"}
            assert all(value > 0 for value in result["ratios"].values()), (run["id"], name)


def test_the_other_sections_reported(smoke_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke_run
    assert set(results) == {"clients", "pool", "memory", "middleware", "hooks", "profile"}
    for scenario in results["pool"]["scenarios"]:
        assert len(scenario["us"]) == len(scenario["sizes"]) > 1, scenario["name"]
    agent = results["memory"]["clients"]["agent-h11"]["tracemalloc"]
    # The smoke plan opens 4 idle sockets and queues 4 requests: the agent really held them.
    assert agent["sockets_opened"] == 4 and agent["queued_seen"] == 4
    assert agent["per_idle_socket"] > 0 and agent["per_queued_request"] > 0
    assert {"asgi", "uvicorn"} <= set(results["middleware"])
    profile = results["profile"]["clients"]["agent-h11"]
    assert len(profile["functions"]) == 15
    assert any("h11/" in row["function"] for row in profile["functions"])


def test_hooks_section_measured_every_configuration(
    smoke_run: tuple[Path, dict[str, Any]],
) -> None:
    _, results = smoke_run
    section = results["hooks"]
    assert list(section["configs"]) == ["none", "noop", "otel-api", "otel-sdk"]
    for name, figures in section["configs"].items():
        assert "unavailable" not in figures, name
        assert figures["cpu_us"] > 0 and figures["ratio"] > 0, name
        assert len(figures["cpu_us_rounds"]) == section["rounds"], name
    assert section["configs"]["none"]["ratio"] == 1.0
    # The SDK really traced: a span exported for every request, warm-up included.
    expected = section["rounds"] * (section["warmup"] + section["requests"])
    assert section["configs"]["otel-sdk"]["spans_exported"] == expected


def test_page_shows_every_chart_it_links(smoke_run: tuple[Path, dict[str, Any]]) -> None:
    output, _ = smoke_run
    page = (output / "benchmarks.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert {Path(image).name for image in images} == CHARTS
    for image in images:
        assert (output / image).read_bytes().startswith(b"\x89PNG"), image
    for heading in ("## At a glance", "## Targets", "## The pool's scaling curves", "## Memory"):
        assert heading in page
    assert "## What the middleware costs" in page and "## Where the time goes" in page
    assert "## What trace hooks cost" in page and "| OpenTelemetryHooks on the SDK |" in page
