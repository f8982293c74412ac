"""``python -m benchmarks``: measure, then write the page, its charts and the raw figures."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import charts, hooks, machine, matrix, memory, middleware, page, pool, profiling
from .plan import PLANS, Plan, with_rounds
from .targets import evaluate
from .upstream import ROOT, running_upstream

SECTIONS = ("clients", "pool", "memory", "middleware", "hooks", "profile")
NEEDS_UPSTREAM = {"clients", "memory", "hooks", "profile"}


def log(line: str) -> None:
    print(line, flush=True)


def run_section(name: str, plan: Plan, base_url: str) -> dict[str, Any]:
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "clients": lambda: matrix.measure(plan, base_url, log),
        "pool": lambda: pool.measure(plan.pool_rounds, plan.pool_seconds, log=log),
        "memory": lambda: memory.measure(
            base_url, plan.memory_sockets, plan.memory_queued, plan.memory_ways, log
        ),
        "middleware": lambda: middleware.measure(
            plan.middleware_requests, plan.middleware_uvicorn_requests, plan.middleware_rounds, log
        ),
        "hooks": lambda: hooks.measure(base_url, plan.hooks_requests, plan.hooks_rounds, log),
        "profile": lambda: profiling.measure(base_url, plan.profile_requests, log),
    }
    before = machine.describe()
    started = time.monotonic()
    section = measures[name]()
    section["meta"] = {
        **before,
        "plan": plan.name,
        "seconds": time.monotonic() - started,
        "load_after": machine.load_average(),
    }
    return section


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure starlette-agent beside other clients; write the benchmark page.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="under a minute, fewer configurations")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="every configuration with tiny counts: checks the harness runs, measures nothing",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated sections to run ({', '.join(SECTIONS)}); the others are kept "
        "from the existing results",
    )
    parser.add_argument("--profile", action="store_true", help="the profiles only (--only profile)")
    parser.add_argument("--rounds", type=int, help="rounds of the client matrix")
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write benchmarks.md and benchmarks/ (default: docs for a full run, "
        "build/benchmarks otherwise)",
    )
    return parser.parse_args(argv)


def chosen_sections(args: argparse.Namespace) -> list[str]:
    if args.profile:
        return ["profile"]
    if not args.only:
        return list(SECTIONS)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return names


def write_outputs(results: dict[str, Any], output: Path) -> list[str]:
    """Write the JSON, the charts and the page; return the chart file names."""
    directory = output / "benchmarks"
    directory.mkdir(parents=True, exist_ok=True)
    ordered = {name: results[name] for name in SECTIONS if name in results}
    (directory / "results.json").write_text(json.dumps(ordered, indent=1) + "\n")
    drawn = charts.draw(ordered, directory)
    (output / "benchmarks.md").write_text(page.render(ordered, drawn), encoding="utf-8")
    return drawn


def summary(results: dict[str, Any]) -> Iterator[str]:
    if "clients" in results:
        yield page.at_a_glance(results)
    checks = evaluate(results)
    if checks:
        yield page.targets(results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = "quick" if args.quick else "smoke" if args.smoke else "full"
    plan = with_rounds(PLANS[name], args.rounds)
    output = args.output or ROOT / ("docs" if name == "full" else "build/benchmarks")
    sections = chosen_sections(args)
    results_path = output / "benchmarks" / "results.json"
    partial = args.only or args.profile
    results: dict[str, Any] = {}
    if partial and results_path.exists():
        results = json.loads(results_path.read_text())
    started = time.monotonic()
    with ExitStack() as stack:
        base_url = ""
        if NEEDS_UPSTREAM.intersection(sections):
            base_url = stack.enter_context(running_upstream())
        for section in sections:
            log(f"{section} ({plan.name} plan)...")
            results[section] = run_section(section, plan, base_url)
            log(f"{section}: {results[section]['meta']['seconds']:.1f} s")
    drawn = write_outputs(results, output)
    for part in summary(results):
        log("\n" + part)
    log(f"\nwrote {output / 'benchmarks.md'}, {results_path} and {len(drawn)} charts")
    log(f"took {time.monotonic() - started:.0f} s")
    errors = results.get("clients", {}).get("errors", [])
    return 1 if errors and "clients" in sections else 0


if __name__ == "__main__":
    sys.exit(main())
