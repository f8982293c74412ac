"""A misspelt request argument is a type error: every verb takes one typed set of arguments
(``RequestArgs``), so mypy reports the typo a caller makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MISSPELT = """
from starlette_agent import Agent, request


async def main(agent: Agent) -> None:
    await agent.get("http://example.test/", parms={"q": "1"})
    await agent.post("http://example.test/", json={}, follow_redirect=True)
    async with agent.stream("GET", "http://example.test/", timeout="5"):
        pass
    await request("GET", "http://example.test/", hedaers={})
    await agent.get("http://example.test/", params={"q": "1"}, follow_redirects=True)
"""


def test_mypy_reports_a_misspelt_argument(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(MISSPELT)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(snippet),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    assert [line.split(":")[1] for line in errors] == ["6", "7", "8", "10"], result.stdout
    assert 'Unexpected keyword argument "parms"' in errors[0]
    assert 'Unexpected keyword argument "follow_redirect"' in errors[1]
    assert '"timeout"' in errors[2]
    assert 'Unexpected keyword argument "hedaers"' in errors[3]
