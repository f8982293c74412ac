"""The example app, run as a reader runs it: ``python -m example_app`` in a child process.

Every server listens on 127.0.0.1 on a free port (``EXAMPLE_*_PORT=0``); the ports are read
from what the process prints. ``run_example`` is shared with the browser test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
_URL_LINE = re.compile(r"^(upstream|server1|server2)\s+(http://127\.0\.0\.1:\d+)$", re.MULTILINE)


@dataclass
class Example:
    process: subprocess.Popen[bytes]
    output: Path
    urls: dict[str, str]

    @property
    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def get(self, server: str, path: str, **kwargs: Any) -> Any:
        response = httpx.get(self.urls[server] + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def post(self, server: str, path: str, **kwargs: Any) -> Any:
        response = httpx.post(self.urls[server] + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def interrupt(self, timeout: float = 15) -> int:
        """Ctrl-C, as a reader would; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)


def example_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a run: free ports, no ``.env`` and no ``AGENT_*`` from outside."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENT_")}
    env.update(
        EXAMPLE_HOST="127.0.0.1",
        EXAMPLE_UPSTREAM_PORT="0",
        EXAMPLE_SERVER1_PORT="0",
        EXAMPLE_SERVER2_PORT="0",
        EXAMPLE_ENV_FILE=str(tmp_path / "absent.env"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start(command: list[str], tmp_path: Path, env: dict[str, str]) -> tuple[Any, Path]:
    # Output goes to a file, not a pipe: nothing has to drain it while the test runs.
    output = tmp_path / f"output-{time.monotonic_ns()}.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    return process, output


@contextlib.contextmanager
def run_example(tmp_path: Path, **env: str) -> Iterator[Example]:
    """``python -m example_app`` on free ports; stopped (SIGINT, then kill) at the end."""
    process, output = start(
        [sys.executable, "-m", "example_app"], tmp_path, example_env(tmp_path, **env)
    )
    try:
        deadline = time.monotonic() + 20
        urls: dict[str, str] = {}
        while len(urls) < 3:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"example_app did not start:\n{output.read_text()}")
            time.sleep(0.05)
            urls = dict(_URL_LINE.findall(output.read_text()))
        example = Example(process, output, urls)
        _wait_serving(example)
        yield example
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_serving(example: Example) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            example.get("server1", "/agents")
            example.get("server2", "/agents")
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    with run_example(tmp_path_factory.mktemp("example")) as running:
        yield running


def agent_info(answer: dict[str, Any], name: str) -> dict[str, Any]:
    return next(agent for agent in answer["agents"] if agent["name"] == name)


# --------------------------------------------------------------------------- one process


def test_prints_three_urls_on_real_ports(example: Example) -> None:
    ports = {int(url.rsplit(":", 1)[1]) for url in example.urls.values()}
    assert len(ports) == 3 and 0 not in ports
    assert example.get("server1", "/agents")["upstream"] == example.urls["upstream"]


def test_both_servers_call_through_the_same_agent_and_sockets(example: Example) -> None:
    first = example.get("server1", "/call")
    second = example.get("server2", "/call")
    # One pool: server2's call reuses the socket server1's call left idle (lifo).
    assert second["peer_port"] == first["peer_port"]
    assert second["reused_socket"] is True

    one = agent_info(example.get("server1", "/agents"), "default")
    two = agent_info(example.get("server2", "/agents"), "default")
    assert one["id"] == two["id"]
    assert one["used_by"] == ["server1", "server2"]


def test_isolated_route_uses_sockets_of_its_own(example: Example) -> None:
    shared = {example.get("server1", "/call")["peer_port"] for _ in range(3)}
    before = agent_info(example.get("server2", "/agents"), "isolated")
    isolated = example.get("server2", "/isolated/call")
    assert isolated["agent"] == "isolated"
    assert isolated["peer_port"] not in shared

    answer = example.get("server2", "/agents")
    assert agent_info(answer, "isolated")["requests"] == before["requests"] + 1
    assert agent_info(answer, "isolated")["id"] != agent_info(answer, "default")["id"]
    assert agent_info(answer, "isolated")["used_by"] == ["server2"]
    callers = {
        entry["peer_port"]: set(entry["callers"])
        for entry in example.get("upstream", "/sockets")["sockets"]
    }
    assert callers[isolated["peer_port"]] == {"server2 (isolated agent)"}


def test_a_burst_queues_past_max_sockets_and_drains(example: Example) -> None:
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(agent_info(example.get("server1", "/agents"), "default"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = example.post("server1", "/burst", params={"n": 50, "delay": 0.05})
    finally:
        done.set()
        watcher.join()

    assert result["calls"] == 50 and result["errors"] == {}
    assert 1 <= len(result["peer_ports"]) <= 5  # max_sockets=5
    assert sum(result["peer_ports"].values()) == 50
    assert max(s["queued"] for s in seen) > 0
    assert max(s["active"] for s in seen) <= 5
    after = agent_info(example.get("server1", "/agents"), "default")
    assert after["queued"] == 0 and after["active"] == 0
    assert after["connections_created"] <= 5 + after["connections_closed"]


def test_metrics_show_the_agents_to_prometheus(example: Example) -> None:
    example.get("server1", "/call")
    page = httpx.get(example.urls["server2"] + "/metrics", timeout=10)
    answer = example.get("server2", "/agents")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain; version=")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page.text)
        for sample in family.samples
    }
    for name in ("default", "isolated"):
        info = agent_info(answer, name)
        for counter in ("requests", "connections_created", "connections_reused", "errors"):
            key = (f"starlette_agent_{counter}_total", (("agent", name),))
            assert samples[key] == info[counter], (name, counter)
        for origin, held in info["origins"].items():
            for state in ("active", "idle"):
                labels = (("agent", name), ("origin", origin), ("state", state))
                assert samples[("starlette_agent_sockets", labels)] == held[state]
    # server1's call went to the upstream through the shared default agent: one idle socket.
    origin = example.urls["upstream"]
    labels = (("agent", "default"), ("origin", origin), ("state", "idle"))
    assert samples[("starlette_agent_sockets", labels)] >= 1


@pytest.mark.parametrize(
    ("query", "parameter", "message"),
    [
        ("n=lots", "n", "must be an integer from 1 to 1000, got 'lots'"),
        ("n=0", "n", "must be an integer from 1 to 1000, got '0'"),
        ("n=1001", "n", "must be an integer from 1 to 1000, got '1001'"),
        ("n=2.5", "n", "must be an integer from 1 to 1000, got '2.5'"),
        ("n=", "n", "must be an integer from 1 to 1000, got ''"),
        ("delay=-1", "delay", "must be a number of seconds from 0 to 5, got '-1'"),
        ("delay=5.5", "delay", "must be a number of seconds from 0 to 5, got '5.5'"),
        ("delay=nan", "delay", "must be a number of seconds from 0 to 5, got 'nan'"),
        ("delay=soon", "delay", "must be a number of seconds from 0 to 5, got 'soon'"),
        ("n=5&n=6", "n", "is given more than once"),
        ("count=5", "count", "is not a parameter here; known: n, delay"),
    ],
)
def test_a_burst_with_a_bad_parameter_is_refused_naming_it(
    example: Example, query: str, parameter: str, message: str
) -> None:
    before = agent_info(example.get("server2", "/agents"), "isolated")["requests"]
    response = httpx.post(example.urls["server2"] + "/isolated/burst?" + query, timeout=10)
    assert response.status_code == 422, response.text
    assert response.json()["parameters"] == {parameter: message}
    assert f"{parameter} {message}" in response.json()["error"]
    # Nothing was sent: a refused burst is not a smaller or a slower one.
    assert agent_info(example.get("server2", "/agents"), "isolated")["requests"] == before


def test_every_bad_parameter_is_named_at_once(example: Example) -> None:
    response = httpx.post(example.urls["server1"] + "/burst?n=0&delay=9&x=1", timeout=10)
    assert response.status_code == 422
    assert set(response.json()["parameters"]) == {"n", "delay", "x"}


@pytest.mark.parametrize(("server", "path"), [("server1", "/call"), ("upstream", "/work")])
def test_a_call_with_a_bad_delay_is_refused_naming_it(
    example: Example, server: str, path: str
) -> None:
    response = httpx.get(example.urls[server] + path + "?delay=-0.5", timeout=10)
    assert response.status_code == 422, response.text
    assert response.json()["parameters"] == {
        "delay": "must be a number of seconds from 0 to 5, got '-0.5'"
    }


def test_a_burst_with_the_limits_as_values_runs(example: Example) -> None:
    result = example.post("server2", "/isolated/burst", params={"n": 1, "delay": 0})
    assert result["calls"] == 1 and result["errors"] == {}
    result = example.post("server2", "/isolated/burst", params={"n": 3, "delay": "0.01"})
    assert result["calls"] == 3 and len(result["peer_ports"]) <= 2  # its max_sockets


# --------------------------------------------------------------------------- the upstream


def test_the_upstream_home_page_links_to_its_sockets(example: Example) -> None:
    home = httpx.get(example.urls["upstream"] + "/", timeout=10)
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    links = re.findall(r'href="([^"]+)"', home.text)
    assert "/sockets" in links
    # Every link on it leads somewhere: the upstream's own pages, and the co-hosted dashboards.
    for link in links:
        target = link if link.startswith("http") else example.urls["upstream"] + link
        assert httpx.get(target, timeout=10).status_code == 200, link
    assert {example.urls["server1"] + "/", example.urls["server2"] + "/"} <= set(links)
    assert "requests" in httpx.get(example.urls["upstream"] + "/sockets", timeout=10).json()


# --------------------------------------------------------------------------- lifecycle


def test_ctrl_c_stops_all_three_and_closes_every_agent(tmp_path: Path) -> None:
    with run_example(tmp_path) as example:
        example.get("server1", "/call")
        example.get("server2", "/isolated/call")
        assert example.interrupt() == 0
        log = example.log
    assert "SIGINT: stopping server1 and server2, then the upstream" in log
    assert re.search(r"server\d stopped: agent 'default' closed \(2 requests", log) is None
    assert re.search(r"server\d stopped: agent 'default' closed \(1 requests", log)
    assert re.search(r"server2 stopped: agent 'isolated' closed \(1 requests", log)
    assert log.count("' closed (") == 2  # each agent closed once, by the last app using it
    assert "all servers stopped" in log
    assert "Traceback" not in log


def test_agent_settings_come_from_the_env_file_and_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text("AGENT_MAX_SOCKETS=3\nAGENT_ISOLATED_IDLE_TIMEOUT=1.5\n")
    with run_example(
        tmp_path, EXAMPLE_ENV_FILE=str(env_file), AGENT_ISOLATED_MAX_SOCKETS="1"
    ) as example:
        answer = example.get("server2", "/agents")
        result = example.post("server1", "/burst", params={"n": 12, "delay": 0.02})
    assert agent_info(answer, "default")["limits"]["max_sockets"] == 3
    assert agent_info(answer, "isolated")["limits"]["max_sockets"] == 1
    assert agent_info(answer, "isolated")["limits"]["idle_timeout"] == 1.5
    assert len(result["peer_ports"]) <= 3


def test_a_bad_agent_setting_stops_startup_naming_the_variable(tmp_path: Path) -> None:
    env = example_env(tmp_path, AGENT_MAX_SOCKETS="ten")
    process, output = start([sys.executable, "-m", "example_app"], tmp_path, env)
    assert process.wait(20) != 0
    assert "AGENT_MAX_SOCKETS='ten'" in output.read_text()


def test_a_busy_port_is_named_with_the_variable_to_change(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = example_env(tmp_path, EXAMPLE_SERVER1_PORT=str(port))
        process, output = start([sys.executable, "-m", "example_app"], tmp_path, env)
        assert process.wait(20) != 0
    assert f"server1 cannot listen on 127.0.0.1:{port}" in output.read_text()
    assert "EXAMPLE_SERVER1_PORT" in output.read_text()


def test_server1_runs_under_uvicorn_with_two_workers(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "example_app.server1:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    process, output = start(command, tmp_path, example_env(tmp_path))
    try:
        deadline = time.monotonic() + 20
        pids: set[int] = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            try:
                # A new connection each time, so the kernel may hand it to either worker.
                answer = httpx.get(f"http://127.0.0.1:{port}/agents", timeout=5).json()
                pids.add(answer["pid"])
            except httpx.HTTPError:
                time.sleep(0.1)
        assert pids and process.pid not in pids  # the workers answer, not the supervisor
        assert agent_info(answer, "default")["used_by"] == ["server1"]
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = output.read_text()
    # Each worker opened its own agents in its own lifespan and closed them at shutdown.
    assert log.count("server1 stopped: agent 'default' closed") == 2, log
