"""``./scripts/example``, the README's first command: what it installs, and what it says.

The script's set-up is run for real in a copy of the project, offline: pip may only look in an
empty directory, so the install fails where it would otherwise download packages. That is
enough to see the steps it announces and how it reports a failed set-up; the successful path is
the one every other example test runs (``python -m example_app`` in the test environment).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "example"


def project_extras() -> tuple[set[str], dict[str, set[str]]]:
    """The project's dependencies and its extras, as canonical distribution names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {canonicalize_name(Requirement(r).name) for r in requirements}

    extras = project["optional-dependencies"]
    return names(project["dependencies"]), {extra: names(reqs) for extra, reqs in extras.items()}


def imported_distributions(package: Path) -> set[str]:
    """The distributions whose modules ``package`` imports (the standard library aside)."""
    modules: set[str] = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    ours = {"example_app", "starlette_agent"}
    by_module = packages_distributions()
    return {
        canonicalize_name(by_module[module][0])
        for module in modules - ours - set(sys.stdlib_module_names)
    }


def test_the_example_extra_is_what_the_example_imports_and_no_more() -> None:
    dependencies, extras = project_extras()
    needed = imported_distributions(ROOT / "example_app") - dependencies
    assert needed, "example_app imports something besides the project's own dependencies"
    assert extras.get("example") == needed
    assert needed <= extras["test"]  # the tests run the example too


def test_the_script_installs_the_example_extra() -> None:
    installs = re.findall(r"-m pip install ([^;\n]*)", SCRIPT.read_text())
    assert installs == ["-q -e '.[example]'"]


def project_copy(tmp_path: Path) -> Path:
    """The project's files (tracked or new, not ignored) in a fresh directory, no .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = tmp_path / "project"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def run_offline(project: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    nowhere = tmp_path / "no-packages"
    nowhere.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(nowhere),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_CACHE_DIR="1",
        VIRTUAL_ENV="",
    )
    return subprocess.run(
        [str(project / "scripts" / "example")],
        cwd=tmp_path,  # the script finds the project from its own path
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def said(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("scripts/example:")]


def test_a_first_run_says_what_it_does_and_a_failed_install_is_done_again(
    tmp_path: Path,
) -> None:
    project = project_copy(tmp_path)
    first = run_offline(project, tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    steps = said(first)
    assert len(steps) == 3, steps
    assert "creating .venv" in steps[0]
    assert "installing" in steps[1] and "'.[example]'" in steps[1]
    assert "the installation failed" in steps[2] and "nothing was started" in steps[2]
    assert "No matching distribution" in first.stderr  # pip's own reason, shown as it was
    assert (project / ".venv" / "bin" / "python").exists()

    # The half-done set-up is not taken for a finished one: the install is tried again, in the
    # .venv already there.
    second = run_offline(project, tmp_path)
    assert second.returncode == 1
    steps = said(second)
    assert not any("creating .venv" in step for step in steps), steps
    assert "installing" in steps[0] and "the installation failed" in steps[-1]
