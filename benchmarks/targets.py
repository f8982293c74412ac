"""The performance targets, checked against a run's results: met, missed, or not measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .plan import KEEP_ALIVE


@dataclass(frozen=True)
class Check:
    target: str
    where: str
    measured: str
    verdict: str  # "met", "missed" or "not measured"


def _verdict(values: list[float | None], limit: float) -> str:
    if not values or any(value is None for value in values):
        return "not measured"
    return "met" if all(value is not None and value <= limit for value in values) else "missed"


def _client_checks(section: dict[str, Any]) -> list[Check]:
    labels = {name: info["label"] for name, info in section["clients"].items()}
    runs = [run for run in section["runs"] if run["mode"] == KEEP_ALIVE and run["body"] == "small"]
    goals = [
        ("agent-httptools", "aiohttp", 0.75, None),
        ("agent-httptools", "floor", 2.5, 10),
        ("agent-h11", "h11-loop", 1.1, None),
        ("agent-h11", "httpx2", 0.3, None),
        ("agent-httptools", "httpx2", 0.3, None),
    ]
    checks = []
    for client, reference, limit, only in goals:
        for concurrency in sorted({run["concurrency"] for run in runs}):
            if only is not None and concurrency != only:
                continue
            chosen = [run for run in runs if run["concurrency"] == concurrency]
            values: list[float | None] = []
            shown = []
            for run in sorted(chosen, key=lambda run: run["loop"]):
                result = run["results"].get(client, {})
                value = result.get("ratios", {}).get(reference)
                values.append(value)
                shown.append(f"{run['loop']} {value:.2f}×" if value is not None else "")
            measured = ", ".join(item for item in shown if item) or "not available"
            checks.append(
                Check(
                    f"{labels[client]} ≤ {limit}× {labels[reference]}",
                    f"keep-alive, small, C={concurrency}",
                    measured,
                    _verdict(values, limit),
                )
            )
    return checks


def _pool_checks(section: dict[str, Any]) -> list[Check]:
    checks = []
    for scenario in section["scenarios"]:
        sizes, ratios = scenario["sizes"], scenario["ratios"]
        if scenario["unit"] == "queued" and 10_000 in sizes and 10 in sizes:
            value = ratios[sizes.index(10_000)] / ratios[sizes.index(10)]
            goal, limit = "10,000 queued ≤ 2× 10 queued", 2.0
        elif scenario["unit"] == "origins" and 1000 in sizes and 1 in sizes:
            value = ratios[sizes.index(1000)] / ratios[sizes.index(1)]
            goal, limit = "1,000 origins ≤ 1.2× 1 origin", 1.2
        else:
            continue
        checks.append(
            Check(f"pool: {goal}", scenario["name"], f"{value:.2f}×", _verdict([value], limit))
        )
    return checks


def _middleware_checks(section: dict[str, Any]) -> list[Check]:
    added = section["asgi"]["added_us"]
    return [
        Check(
            "middleware adds ≤ 0.5 µs per request",
            "in process, through ASGI",
            f"{added:+.2f} µs",
            _verdict([added], 0.5),
        )
    ]


def evaluate(results: dict[str, Any]) -> list[Check]:
    checks = []
    if "clients" in results:
        checks += _client_checks(results["clients"])
    if "pool" in results:
        checks += _pool_checks(results["pool"])
    if "middleware" in results:
        checks += _middleware_checks(results["middleware"])
    return checks
