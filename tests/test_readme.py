"""The README's promises: its commands are the ones CI runs, its snippet works, its tables and
links match the code and the docs. (Every Python block also runs in ``test_docs``.)"""

from __future__ import annotations

import os
import re
import shlex
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
