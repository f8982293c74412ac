"""The page's charts, drawn with matplotlib from the results alone (no measuring here)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .plan import BODY_LABELS, KEEP_ALIVE, NEW_CONNECTION

# One colour per client, kept across charts; the agent's are the strong ones.
COLOURS = {
    "agent-h11": "#1f5fbf",
    "agent-httptools": "#0fa3b1",
    "aiohttp": "#e07a1f",
    "httpx": "#b04a4a",
    "httpx2": "#d9a0a0",
    "h11-loop": "#7f7f7f",
    "floor": "#c7c7c7",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.dpi": 100})
    return plt


def _log_axis(axis: Any, values: list[float]) -> None:
    """A log scale labelled in plain numbers at 1-2-5 steps, which reads better than 10^n,
    from the power of ten below the smallest bar, so that no bar looks like nothing."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_yscale("log")
    positive = [value for value in values if value > 0]
    if positive:
        axis.set_ylim(bottom=10 ** math.floor(math.log10(min(positive))))
    axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.yaxis.set_minor_locator(LogLocator(base=10, subs=()))
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axis.grid(axis="y", which="major", alpha=0.3)


def _grouped_bars(
    axis: Any, section: dict[str, Any], names: list[str], runs: list[dict[str, Any]], key: str
) -> list[float]:
    """One group of bars per concurrency, one bar per client; returns the values drawn."""
    runs = sorted(runs, key=lambda run: run["concurrency"])
    width = 0.8 / len(names)
    drawn: list[float] = []
    for index, name in enumerate(names):
        values = [run["results"][name].get(key) or 0 for run in runs]
        offsets = [group + (index - (len(names) - 1) / 2) * width for group in range(len(runs))]
        label = section["clients"][name]["label"]
        axis.bar(offsets, values, width, label=label, color=COLOURS.get(name))
        drawn += values
    axis.set_xticks(range(len(runs)), [f"C={run['concurrency']}" for run in runs])
    return drawn


def _available(section: dict[str, Any]) -> list[str]:
    return [name for name, info in section["clients"].items() if not info["unavailable"]]


def client_runs(results: dict[str, Any], loop: str, path: Path) -> bool:
    """CPU per request by client and concurrency, one panel per connection mode and body."""
    section = results["clients"]
    runs = [run for run in section["runs"] if run["loop"] == loop]
    if not runs:
        return False
    names = _available(section)
    panels = [
        (mode, body)
        for mode in (KEEP_ALIVE, NEW_CONNECTION)
        for body in ("small", "large")
        if any(run["mode"] == mode and run["body"] == body for run in runs)
    ]
    plt = _pyplot()
    columns = 2 if len(panels) > 1 else 1
    rows = (len(panels) + 1) // 2
    figure, axes = plt.subplots(
        rows, columns, figsize=(10, 3.6 * rows + 0.6), squeeze=False, layout="constrained"
    )
    for axis, (mode, body) in zip(axes.flat, panels, strict=False):
        chosen = [run for run in runs if run["mode"] == mode and run["body"] == body]
        drawn = _grouped_bars(axis, section, names, chosen, "cpu_us")
        axis.set_title(f"{loop}: {mode}, {BODY_LABELS[body]}")
        axis.set_ylabel("client CPU µs per request (log)")
        _log_axis(axis, drawn)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncols=len(names), frameon=False)
    figure.savefig(path)
    plt.close(figure)
    return True


def requests_per_second(results: dict[str, Any], path: Path) -> bool:
    """Requests per second on small keep-alive GETs, by client, concurrency and event loop."""
    section = results["clients"]
    runs = [run for run in section["runs"] if run["mode"] == KEEP_ALIVE and run["body"] == "small"]
    if not runs:
        return False
    loops = sorted({run["loop"] for run in runs}, key=["asyncio", "uvloop"].index)
    names = _available(section)
    plt = _pyplot()
    figure, axes = plt.subplots(
        1, len(loops), figsize=(10, 3.8), squeeze=False, layout="constrained", sharey=True
    )
    drawn: list[float] = []
    for axis, loop in zip(axes.flat, loops, strict=True):
        chosen = [run for run in runs if run["loop"] == loop]
        drawn += _grouped_bars(axis, section, names, chosen, "rps")
        axis.set_title(f"{loop}: keep-alive, {BODY_LABELS['small']}")
        axis.set_ylabel("requests per second (log)")
    for axis in axes.flat:
        _log_axis(axis, drawn)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncols=len(names), frameon=False)
    figure.savefig(path)
    plt.close(figure)
    return True


def pool_scaling(results: dict[str, Any], path: Path) -> bool:
    """The pool's time per operation as queues and origins grow: flat lines are the goal."""
    scenarios = results["pool"]["scenarios"]
    if not scenarios:
        return False
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    panels = [
        (axes[0], ("queued", "idle"), "requests queued (or sockets idle)"),
        (axes[1], ("origins",), "origins, each with 4 idle sockets"),
    ]
    for axis, units, xlabel in panels:
        for scenario in scenarios:
            if scenario["unit"] in units:
                axis.plot(scenario["sizes"], scenario["us"], marker="o", label=scenario["name"])
        axis.set_xscale("log")
        axis.set_xlabel(xlabel)
        axis.set_ylabel("µs per cycle (median)")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(frameon=False)
    axes[0].set_title("As queues grow")
    axes[1].set_title("As origins grow")
    figure.savefig(path)
    plt.close(figure)
    return True


def draw(results: dict[str, Any], directory: Path) -> list[str]:
    """Draw every chart the results allow into ``directory``; return the file names drawn."""
    directory.mkdir(parents=True, exist_ok=True)
    drawn: list[str] = []

    def keep(name: str, made: bool) -> None:
        if made:
            drawn.append(name)

    if "clients" in results:
        for loop in ("asyncio", "uvloop"):
            name = f"clients-{loop}.png"
            keep(name, client_runs(results, loop, directory / name))
        name = "requests-per-second.png"
        keep(name, requests_per_second(results, directory / name))
    if "pool" in results:
        keep("pool-scaling.png", pool_scaling(results, directory / "pool-scaling.png"))
    return drawn
