"""The README's promises: its commands are the ones CI runs, its snippet works, its tables and
links match the code and the docs. (Every Python block also runs in ``test_docs``.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from test_docs import code_blocks, python_blocks

from starlette_agent import AgentNotConfigured
from starlette_agent.testing import MockAgent, override_agent

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FIRST_SCREEN_LINES = 40


def readme_commands() -> list[str]:
    """The commands of the README's first shell block, comments removed."""
    block = next(block for block in code_blocks(README) if block.language == "sh")
    commands = [line.split("#", 1)[0].strip() for line in block.code.splitlines()]
    return [command for command in commands if command]


def script_commands(path: Path) -> list[str]:
    """What a bash script runs: its lines less comments, blanks and the set-up boilerplate."""
    commands = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip() if not line.startswith("#!") else ""
        if line and not line.startswith(("set ", "cd ")):
            commands.append(line)
    return commands


def test_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.read_text().splitlines()[:FIRST_SCREEN_LINES])
    assert "./scripts/example   # set up and run the example app" in first_screen
    assert "./scripts/test      # set up and run the tests (ruff, mypy, pytest)" in first_screen
    assert readme_commands() == ["./scripts/example", "./scripts/test"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = next(c for c in readme_commands() if "test" in c)
    assert script_commands(ROOT / ".ci" / "run") == [test_command]


def test_readme_commands_are_executable_scripts() -> None:
    for command in readme_commands():
        script = ROOT / shlex.split(command)[0]
        assert script.is_file() and os.access(script, os.X_OK), script
    assert "-m example_app" in (ROOT / "scripts" / "example").read_text()


def test_usage_snippet_serves_a_request() -> None:
    [snippet] = [block for block in python_blocks(README) if "AgentMiddleware" in block.code]
    assert len(snippet.code.splitlines()) <= 20
    namespace: dict[str, object] = {}
    exec(compile(snippet.code, snippet.where, "exec"), namespace)
    app = namespace["app"]

    mock = MockAgent()
    mock.intercept("GET", "http://users.internal/users/1").reply(200, json={"name": "Ada"})
    with override_agent(app, mock), TestClient(app) as client:  # type: ignore[arg-type]
        response = client.get("/users/1")
    assert response.json() == {"name": "Ada"}
    mock.assert_no_pending_interceptors()


def test_example_settings_table_lists_every_example_variable() -> None:
    text = README.read_text()
    settings = (ROOT / "example_app" / "settings.py").read_text()
    variables = [*re.findall(r'config\("(EXAMPLE_\w+)"', settings), "EXAMPLE_ENV_FILE"]
    assert variables
    for variable in variables:
        assert f"| `{variable}` |" in text, variable


_SETTING = re.compile(r'^(\w+): \w+ = config\("(EXAMPLE_\w+)"', re.MULTILINE)
# A value for each variable, unlike its default, to see which defaults follow which variables.
_PROBES = {"HOST": "127.0.0.9", "URL": "http://127.0.0.9:9", "PORT": "9"}


def example_settings(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The ``EXAMPLE_*`` settings as ``example_app.settings`` resolves them, by variable."""
    names = dict(
        (variable, name)
        for name, variable in _SETTING.findall((ROOT / "example_app" / "settings.py").read_text())
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXAMPLE_", "AGENT_"))}
    env.update(EXAMPLE_ENV_FILE=str(tmp_path / "absent.env"), **variables)
    script = (
        "import json, example_app.settings as s; "
        f"print(json.dumps({{v: str(getattr(s, n)) for v, n in {names!r}.items()}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    values: dict[str, str] = json.loads(result.stdout)
    return values


def documented_defaults(page: Path) -> dict[str, str]:
    """The default column of a page's ``| `EXAMPLE_X` | default | meaning |`` rows."""
    rows = re.findall(r"^\| `(EXAMPLE_\w+)` \| ([^|]+) \|", page.read_text(), re.MULTILINE)
    return dict(rows)


@pytest.mark.parametrize("page", [README, ROOT / "docs" / "index.md"], ids=lambda p: p.name)
def test_example_defaults_are_the_ones_the_code_uses(page: Path, tmp_path: Path) -> None:
    documented = documented_defaults(page)
    defaults = example_settings(tmp_path)
    assert defaults
    probed = {
        other: example_settings(tmp_path, **{other: _PROBES[other.rsplit("_", 1)[1]]})
        for other in defaults
    }
    for variable, value in defaults.items():
        # The cell opens with the default; a default that follows another variable names it.
        assert documented[variable].startswith(f"`{value}`"), (variable, value)
        for other, values in probed.items():
            if other != variable and values[variable] != value:
                assert f"`{other}`" in documented[variable], (variable, "follows", other)


def test_links_to_docs_exist() -> None:
    for target in re.findall(r"\]\((docs/[^)#]+)", README.read_text()):
        assert (ROOT / target).is_file(), target


def test_usage_snippet_without_the_lifespan_says_what_to_do() -> None:
    # The snippet's likely first failure: a test client used without `with` (or a server run
    # with --lifespan off), so the middleware never opened the agents.
    [snippet] = [block for block in python_blocks(README) if "AgentMiddleware" in block.code]
    namespace: dict[str, object] = {}
    exec(compile(snippet.code, snippet.where, "exec"), namespace)
    client = TestClient(namespace["app"])  # type: ignore[arg-type]
    with pytest.raises(AgentNotConfigured, match="the ASGI lifespan did not run") as caught:
        client.get("/users/1")
    assert "with TestClient(app)" in str(caught.value)
    assert isinstance(caught.value, AttributeError)  # what request.state.agent raises
