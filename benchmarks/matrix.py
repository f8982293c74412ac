"""The client matrix: every client, every configuration, interleaved rounds.

Each client lives in a worker process of its own (``worker.py``) and runs only when told, so
one client measures at a time while the upstream answers from its own process. A round runs
every configuration once for every client; the client order turns by one place from one
configuration and one round to the next, so drift on a shared machine (other work, frequency
changes) falls on every client alike. Reported per configuration and client: the median over
rounds of the CPU per request and of the requests per second, and the median over rounds of the
ratio to each reference client measured in the same round.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from .clients import CLIENTS, package_version
from .plan import Plan, Run
from .upstream import ROOT

#: Ratios are reported to these clients (the page shows the first two in its main tables).
REFERENCES = ("aiohttp", "floor", "httpx2", "h11-loop")

Log = Callable[[str], None]


class WorkerProcess:
    """A client's process (``python -m benchmarks.worker``), asked for one run at a time."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", name, base_url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.unavailable: str | None = None

    def wait_ready(self) -> None:
        hello = self._read()
        self.unavailable = hello.get("unavailable")

    def ask(self, run: Run, url: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        command = {
            "url": url,
            "concurrency": run.concurrency,
            "requests": run.requests,
            "warmup": run.warmup,
            "loop": run.loop,
            "body": run.body_size,
        }
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker exited (code {self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(plan: Plan, base_url: str, log: Log) -> dict[str, Any]:
    runs = plan.runs()
    workers = [WorkerProcess(client.name, base_url) for client in CLIENTS]
    try:
        for worker in workers:  # started together, so their imports overlap
            worker.wait_ready()
        available = [worker for worker in workers if worker.unavailable is None]
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {
            run.id: {worker.name: [] for worker in available} for run in runs
        }
        errors: list[str] = []
        for round_index in range(plan.rounds):
            for run_index, run in enumerate(runs):
                turn = (round_index + run_index) % len(available)
                figures = []
                for worker in available[turn:] + available[:turn]:
                    answer = worker.ask(run, base_url + run.path)
                    if "error" in answer:
                        errors.append(f"{run.id} {worker.name}: {answer['error']}")
                        log(f"  error: {errors[-1]}")
                    else:
                        figures.append(f"{worker.name} {answer['cpu'] / run.requests * 1e6:.0f}")
                    samples[run.id][worker.name].append(answer)
                log(f"  round {round_index + 1}/{plan.rounds} {run.id} (us): {', '.join(figures)}")
    finally:
        for worker in workers:
            worker.close()
    return {
        "rounds": plan.rounds,
        "clients": {
            client.name: {
                "label": client.label,
                "version": package_version(client.package),
                "unavailable": worker.unavailable,
            }
            for client, worker in zip(CLIENTS, workers, strict=True)
        },
        "references": list(REFERENCES),
        "runs": [summarise(run, samples[run.id], workers) for run in runs],
        "errors": errors,
    }


def summarise(
    run: Run, samples: dict[str, list[dict[str, Any]]], workers: list[WorkerProcess]
) -> dict[str, Any]:
    cpu = {
        name: [s["cpu"] / run.requests * 1e6 if "cpu" in s else None for s in rounds]
        for name, rounds in samples.items()
    }
    results: dict[str, Any] = {}
    for worker in workers:
        if worker.unavailable is not None:
            results[worker.name] = {"unavailable": worker.unavailable}
            continue
        rounds = samples[worker.name]
        rps = [run.requests / s["wall"] for s in rounds if "wall" in s]
        ratios = {
            reference: _median(
                [
                    mine / theirs
                    for mine, theirs in zip(cpu[worker.name], cpu.get(reference, []), strict=False)
                    if mine is not None and theirs
                ]
            )
            for reference in REFERENCES
        }
        results[worker.name] = {
            "cpu_us": _median([value for value in cpu[worker.name] if value is not None]),
            "rps": _median(rps),
            "ratios": ratios,
            "cpu_us_rounds": cpu[worker.name],
            "rps_rounds": rps,
        }
    return {
        "id": run.id,
        "mode": run.mode,
        "body": run.body,
        "concurrency": run.concurrency,
        "loop": run.loop,
        "requests": run.requests,
        "warmup": run.warmup,
        "results": results,
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
