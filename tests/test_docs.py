"""The docs cannot rot: every Python block in README.md and docs/ runs, and the site builds.

A page's ```python blocks run in order in one namespace, as a reader follows the page (a block
may use what an earlier one defined). A block preceded by the line ``<!-- fragment -->`` is a
piece of a larger program: it is only compiled. Blocks run in a temporary directory with no
``AGENT_*`` variables in the environment; the ones that need a server start their own on
127.0.0.1, or answer with a ``MockAgent``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import pytest

from starlette_agent import AgentOptions
from starlette_agent._connection import Timeouts
from starlette_agent._hooks import HOOK_NAMES, CloseReason
from starlette_agent._option_table import OPTION_TABLE

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FRAGMENT_MARKER = "<!-- fragment -->"
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` (top level, not indented), with their fragment marks."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].rstrip() != "```":
            body.append(lines[index])
            index += 1
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        blocks.append(
            Block(
                page=page,
                line=start + 1,
                language=opening.group(1),
                code="\n".join(body) + "\n",
                fragment=previous.strip() == FRAGMENT_MARKER,
            )
        )
        index += 1
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [block for block in code_blocks(page) if block.language in ("python", "py")]


@pytest.fixture
def docs_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("AGENT_"):
            monkeypatch.delenv(key)
    return tmp_path


@pytest.mark.parametrize(
    "page", [page for page in PAGES if python_blocks(page)], ids=lambda page: page.name
)
def test_python_blocks_run(page: Path, docs_environment: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for block in python_blocks(page):
        code = compile(block.code, block.where, "exec")
        if block.fragment:
            continue
        try:
            exec(code, namespace)
        except BaseException as exc:
            raise AssertionError(f"the block at {block.where} failed: {exc!r}") from exc
    # A reader runs these in a project of their own: its files (a .env above all) are not ours.
    left = sorted(path.name for path in docs_environment.iterdir())
    assert left == [], f"the blocks of {page.name} wrote {left} into the working directory"


def test_every_page_with_code_runs_some_of_it() -> None:
    for page in PAGES:
        blocks = python_blocks(page)
        if blocks:
            assert any(not block.fragment for block in blocks), page


def test_fragment_markers_sit_on_python_blocks() -> None:
    """A marker that no python block follows would silently not do what its author meant."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        marked = sum(block.fragment for block in code_blocks(page))
        assert text.count(FRAGMENT_MARKER) == marked, page
        assert all(b.language in ("python", "py") for b in code_blocks(page) if b.fragment)


def test_configuration_page_lists_every_option_and_variable() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for option in AgentOptions.names():
        assert f"`{option}`" in text, option
        if OPTION_TABLE[option].parse is not None:
            assert f"`AGENT_{OPTION_TABLE[option].variable}`" in text, option


def section(page: Path, title: str) -> str:
    """The text of a page from the heading ``title`` to the next heading of any level."""
    text = page.read_text(encoding="utf-8")
    start = text.index(f" {title}\n")
    end = re.search(r"^#", text[start:], re.MULTILINE)
    return text[start : start + end.start()] if end else text[start:]


def test_the_per_request_timeout_is_documented_as_the_agent_applies_it() -> None:
    """``timeout=N`` replaces every timeout ``Timeouts`` carries; ``timeout=None`` none."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    [paragraph] = [p for p in text.split("\n\n") if "agent.get(url, timeout=" in p]
    replaced = {f"{field}_timeout" for field in Timeouts.__dataclass_fields__}
    assert set(re.findall(r"`(\w+_timeout)`", paragraph)) == replaced
    assert "`timeout=None`" in paragraph


def test_url_credentials_are_documented_where_requests_are() -> None:
    page = ROOT / "docs" / "concepts.md"
    path = section(page, "A request's path through an agent")
    assert "`user:password@`" in path and "`Authorization: Basic`" in path
    # ... and shown against a real server by a block that runs (test_python_blocks_run).
    assert any("ada:s%40cret@" in b.code for b in python_blocks(page) if not b.fragment)


def test_the_deployment_page_covers_each_concern_and_each_client() -> None:
    page = ROOT / "docs" / "deployment.md"
    hooks = section(page, "Tracing: hooks")
    for name in HOOK_NAMES:
        assert f"`{name}`" in hooks, name
    for reason in get_args(CloseReason):
        assert f"`{reason}`" in hooks, reason
    sizing = section(page, "Sizing limits against an upstream's budget")
    assert all(word in sizing for word in ("replicas", "workers", "rolling update", "≤  budget"))
    for option in ("max_sockets", "max_total_sockets", "max_free_sockets"):
        assert f"`{option}`" in sizing, option
    table = section(page, "Who offers what")
    header = next(line for line in table.splitlines() if line.startswith("|"))
    assert all(client in header for client in ("Node", "undici", "aiohttp", "httpx"))
    for concern in ("Proxy", "Trace hooks", "OpenTelemetry", "Prometheus", "Total limit"):
        assert f"| {concern}" in table, concern
    assert "OpenTelemetry" in section(page, "Tracing: OpenTelemetry")
    assert "AgentCollector" in section(page, "Metrics: Prometheus")


def test_mkdocs_builds_the_site_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "concepts" / "index.html").exists()
    reference = (tmp_path / "reference" / "index.html").read_text(encoding="utf-8")
    assert "max_sockets" in reference
