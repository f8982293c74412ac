"""docs/benchmarks.md, written from the results alone (no measuring here).

Each section of the page renders one section of the results, or says how to measure it when
the results lack it; the prose around the figures lives here, beside the tables it explains.
"""

from __future__ import annotations

from typing import Any

from .plan import BODY_LABELS, KEEP_ALIVE, NEW_CONNECTION
from .targets import evaluate

AGENTS = ("agent-h11", "agent-httptools")
COMMAND = "python -m benchmarks"


# -- formatting ------------------------------------------------------------------------------------


def us(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def per_second(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def size(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1024:.1f} KiB" if abs(value) >= 1024 else f"{value:,.0f} B"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def measured(section: dict[str, Any]) -> str:
    meta = section["meta"]
    load = f"load average {meta['load_average']} before, {meta['load_after']} after"
    return f"*Measured {meta['date']} ({meta['plan']} plan, {meta['seconds']:.0f} s, {load}).*"


def missing(name: str) -> str:
    return f"Not measured yet: `{COMMAND} --only {name}`."


# -- sections ----------------------------------------------------------------------------------


def introduction(results: dict[str, Any]) -> str:
    meta = next(iter(results.values()))["meta"]
    return f"""# Benchmarks

<!-- Written by `{COMMAND}` (benchmarks/page.py): edit that, not this file. -->

What starlette-agent costs, measured in one run on one machine beside aiohttp, httpx and httpx2,
a bare h11 loop (what pure-Python HTTP parsing costs with nothing around it) and a raw asyncio
floor (the least any asyncio client can spend): client CPU per request and requests per second;
the pool's own cost as queues and origins grow; memory per idle socket and per queued request;
what the middleware adds to requests that do not use the agent; and what trace hooks and
OpenTelemetry add to the agent's requests.

!!! note "Read the ratios"
    Measured on {meta["cpu"]}, {meta["cores"]} cores, {meta["system"]}, {meta["python"]},
    a machine shared with other work: absolute figures there are noisy and only ratios
    measured in the same run mean much. Each figure is a median over interleaved rounds."""


def at_a_glance(results: dict[str, Any]) -> str:
    section = results.get("clients")
    if section is None:
        return "## At a glance\n\n" + missing("clients")
    names = section["clients"]
    rows = []
    for agent in AGENTS:
        if names[agent]["unavailable"]:
            rows.append([names[agent]["label"], f"not available: {names[agent]['unavailable']}"])
            rows[-1] += [""] * 4
    for run in _runs(section, KEEP_ALIVE, "small"):
        for agent in AGENTS:
            result = run["results"][agent]
            if "unavailable" in result:
                continue
            label = f"{names[agent]['label']}, {run['loop']}, C={run['concurrency']}"
            ratios = result["ratios"]
            rows.append(
                [
                    label,
                    us(result["cpu_us"]),
                    ratio(ratios["aiohttp"]),
                    ratio(ratios["floor"]),
                    ratio(ratios["httpx2"]),
                    ratio(ratios["h11-loop"]),
                ]
            )
    rows.sort(key=lambda row: row[0].split(",")[0])  # the h11 rows first, then httptools
    header = ["agent, loop, concurrency", "µs", "× aiohttp", "× floor", "× httpx2", "× bare h11"]
    sentences = " ".join(
        _spread(section, agent) for agent in AGENTS if not names[agent]["unavailable"]
    )
    return f"""## At a glance

Small keep-alive GETs: the agent's client CPU per request, and its ratio to each reference
client measured in the same rounds (below 1.00× is cheaper than that client).

{sentences}

{table(header, rows)}"""


def _spread(section: dict[str, Any], agent: str) -> str:
    """One sentence: the range of the agent's ratios to each reference over C and loops."""
    runs = _runs(section, KEEP_ALIVE, "small")
    references = {"aiohttp": "aiohttp's", "httpx2": "httpx2's", "h11-loop": "the bare h11 loop's"}
    references["floor"] = "the floor's"
    parts = []
    for reference, owner in references.items():
        values = [run["results"][agent]["ratios"][reference] for run in runs]
        values = [value for value in values if value is not None]
        if values:
            parts.append(f"{min(values):.2f}–{max(values):.2f}× {owner}")
    label = section["clients"][agent]["label"]
    concurrency = sorted({run["concurrency"] for run in runs})
    loops = " and ".join(sorted({run["loop"] for run in runs}))
    where = f"C = {', '.join(map(str, concurrency))}, on {loops}"
    return f"The {label} spends {', '.join(parts[:-1])} and {parts[-1]} CPU per request ({where})."


def targets(results: dict[str, Any]) -> str:
    rows = [
        [check.target, check.where, check.measured, check.verdict] for check in evaluate(results)
    ]
    if not rows:
        return ""
    return f"""## Targets

The performance goals, checked against this run. Client ratios are on small keep-alive GETs,
on both event loops (a target is met when it holds on both).

{table(["target", "measured on", "measured", "met"], rows)}"""


def clients(results: dict[str, Any], charts: list[str]) -> str:
    section = results.get("clients")
    if section is None:
        return "## Client CPU per request\n\n" + missing("clients")
    info = section["clients"]
    parts = [
        "## Client CPU per request",
        measured(section),
        _clients_method(section),
        _availability(info),
    ]
    for loop in ("asyncio", "uvloop"):
        runs = [run for run in section["runs"] if run["loop"] == loop]
        if not runs:
            continue
        parts.append(f"### On {loop}")
        if f"clients-{loop}.png" in charts:
            parts.append(f"![Client CPU per request on {loop}](benchmarks/clients-{loop}.png)")
        for mode in (KEEP_ALIVE, NEW_CONNECTION):
            for body in ("small", "large"):
                chosen = _runs(section, mode, body, loop)
                if chosen:
                    parts.append(f"**{loop}, {mode}, {BODY_LABELS[body]}**")
                    parts.append(_client_table(info, chosen))
    if "requests-per-second.png" in charts:
        parts.append("### Requests per second")
        parts.append(
            "Wall-clock throughput of the same runs: the client and the upstream share the "
            "machine's cores with each other and with whatever else runs, so these move with "
            "the machine's load more than the CPU figures do.\n\n"
            "![Requests per second, small keep-alive GETs](benchmarks/requests-per-second.png)"
        )
    if section.get("errors"):
        parts.append("Errors during the run:\n\n" + "\n".join(f"- {e}" for e in section["errors"]))
    return "\n\n".join(parts)


def _clients_method(section: dict[str, Any]) -> str:
    rounds = section["rounds"]
    listed = "; ".join(
        f"{mode}, {BODY_LABELS[body]}: {_counts(_runs(section, mode, body))}"
        for mode in (KEEP_ALIVE, NEW_CONNECTION)
        for body in ("small", "large")
        if _runs(section, mode, body)
    )
    return f"""Each client runs in a process of its own against one upstream in another process: a
bare asyncio server answering fixed responses, a 2-byte or a 1 MiB body, keeping connections
alive or closing each after its response (so every request opens a new connection). Only one
client runs at a time. In a round every client runs every configuration once, after a warm-up
that opens its connections; the client order turns from one configuration and round to the
next. {rounds} round{"s" if rounds != 1 else ""}; timed requests per client and round:
{listed}.

- **µs**: the client process's CPU time (user + system, `time.process_time()`) over the timed
  requests, divided by their number: the client's own work and the kernel's work on its
  sockets, not the upstream's. Median over the rounds.
- **req/s**: timed requests divided by the wall-clock time they took. Median over the rounds.
- **× aiohttp**, **× floor**: the client's CPU per request divided by aiohttp's, or by the
  floor's, in the same round; the median of those ratios.
- **C**: requests in flight at once. Clients keep their defaults, except httpx and httpx2,
  told to keep as many idle connections as requests in flight (their default keeps 20).

The 1 MiB figures move more from round to round than the small ones: what a megabyte costs a
client depends on how many pieces it arrives in, and that depends on how fast the upstream
writes and the client reads on a machine busy with other work."""


def _counts(runs: list[dict[str, Any]]) -> str:
    """Request counts by concurrency, as "200 (500 at C=100)" when one differs."""
    by_concurrency = {run["concurrency"]: run["requests"] for run in runs}
    usual = min(by_concurrency.values())
    others = [f"{n:,} at C={c}" for c, n in sorted(by_concurrency.items()) if n != usual]
    return f"{usual:,}" + (f" ({', '.join(others)})" if others else "")


def _availability(info: dict[str, Any]) -> str:
    rows = []
    for name, client in info.items():
        state = (
            f"not available: {client['unavailable']}"
            if client["unavailable"]
            else (client["version"] or "this checkout")
        )
        rows.append([client["label"], f"`{name}`", state])
    return table(["client", "key in results.json", "version"], rows)


def _runs(
    section: dict[str, Any], mode: str, body: str, loop: str | None = None
) -> list[dict[str, Any]]:
    return [
        run
        for run in section["runs"]
        if run["mode"] == mode and run["body"] == body and (loop is None or run["loop"] == loop)
    ]


def _client_table(info: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    runs = sorted(runs, key=lambda run: run["concurrency"])
    header = ["client"]
    for run in runs:
        c = run["concurrency"]
        header += [f"C={c} µs", f"C={c} req/s", f"C={c} × aiohttp / floor"]
    rows = []
    for name, client in info.items():
        row = [client["label"]]
        for run in runs:
            result = run["results"][name]
            if "unavailable" in result:
                row += ["n/a", "n/a", "n/a"]
                continue
            ratios = result["ratios"]
            row += [
                us(result["cpu_us"]),
                per_second(result["rps"]),
                f"{ratio(ratios['aiohttp'])} / {ratio(ratios['floor'])}",
            ]
        rows.append(row)
    return table(header, rows)


def pool(results: dict[str, Any], charts: list[str]) -> str:
    section = results.get("pool")
    if section is None:
        return "## The pool's scaling curves\n\n" + missing("pool")
    parts = [
        "## The pool's scaling curves",
        measured(section),
        """The pool's bookkeeping (`starlette_agent/_pool.py`) is synchronous and does no I/O,
so it is timed alone, with stand-in connections: no sockets, no event loop. Each scenario
puts a pool in a steady state and times a cycle of pool calls that leaves it as it was; sizes
take turns within a round. A flat curve means the cost of a request does not grow with what
else the pool holds.

- **idle reuse, others queued**: `max_total_sockets` is full and requests wait for 100 other
  origins; an origin nobody waits for releases its socket and acquires it again.
- **grant across origins**: as above, but the socket is closed; its slot goes to the one
  request whose origin has room, queued behind all the others.
- **one waiter per origin**: each of the queued origins has one request waiting for room
  overall; a released socket's slot goes to the oldest.
- **idle sockets**: each origin keeps 4 idle sockets; a request takes one from the next
  origin, round robin, and gives it back (without limits, and with limits that do not bind).
- **reaper wake, nothing due**: what the idle reaper asks on waking, with that many idle.""",
    ]
    if "pool-scaling.png" in charts:
        parts.append(
            "![The pool's cost per cycle as queues and origins grow](benchmarks/pool-scaling.png)"
        )
    rows = []
    for scenario in section["scenarios"]:
        for index, (count, value) in enumerate(zip(scenario["sizes"], scenario["us"], strict=True)):
            rows.append(
                [
                    scenario["name"] if index == 0 else "",
                    f"{count:,} {_unit(scenario['unit'], count)}",
                    us(value),
                    ratio(scenario["ratios"][index]),
                ]
            )
    parts.append(table(["scenario", "size", "µs per cycle", "× smallest size"], rows))
    return "\n\n".join(parts)


def _unit(unit: str, count: int) -> str:
    return unit.removesuffix("s") if count == 1 else unit


def memory(results: dict[str, Any]) -> str:
    section = results.get("memory")
    if section is None:
        return "## Memory\n\n" + missing("memory")
    ways = section["ways"]
    labels = {"tracemalloc": "tracemalloc", "rss": "RSS"}
    header = ["client"]
    header += [f"per idle socket ({labels[way]})" for way in ways]
    header += [f"per queued request ({labels[way]})" for way in ways]
    rows = []
    for name, figures in section["clients"].items():
        label = {"agent-h11": "agent (h11)", "agent-httptools": "agent (httptools)"}.get(name, name)
        if "unavailable" in figures:
            rows.append([label] + ["n/a"] * (2 * len(ways)))
            continue
        rows.append(
            [label]
            + [size(figures[way]["per_idle_socket"]) for way in ways]
            + [size(figures[way]["per_queued_request"]) for way in ways]
        )
    bare = section["bare_task"]
    rows.append(
        ["a bare task waiting on an event"] + ["–"] * len(ways) + [size(bare[w]) for w in ways]
    )
    return f"""## Memory

{measured(section)}

Memory a client holds for each idle pooled socket, and for each request queued behind a limit,
each measured in a fresh process. Idle sockets: {section["sockets"]:,} requests at once open as
many sockets, which stay idle in the pool once the requests are done. Queued requests: with one
socket allowed (`max_sockets=1`; aiohttp: `limit=1`) and held by a response whose body is left
unread, {section["queued"]:,} requests are started, each in a task of its own, and wait; the
bare-task row is what such a task costs with no client in it. **tracemalloc** counts Python
allocations exactly; **RSS** is the growth of the resident set, C structures included, in
4 KiB pages. The kernel's own memory for a socket is in neither.

{table(header, rows)}"""


def middleware(results: dict[str, Any]) -> str:
    section = results.get("middleware")
    if section is None:
        return "## What the middleware costs\n\n" + missing("middleware")
    rows = []
    modes = {
        "asgi": "in process, through ASGI (the app's own CPU)",
        "uvicorn": "under uvicorn (the server process's CPU)",
    }
    for mode, label in modes.items():
        figures = section.get(mode)
        if figures is None:
            continue
        rows.append(
            [
                label,
                f"{figures['requests']:,}",
                us(figures["without_us"]),
                us(figures["with_us"]),
                f"{figures['added_us']:+.2f}",
                f"{(figures['ratio'] - 1) * 100:+.1f}%",
                f"{_range(figures['without_us_rounds'])} / {_range(figures['with_us_rounds'])}",
            ]
        )
    header = ["measured", "requests/round", "µs without", "µs with", "µs added", "change"]
    header.append("rounds' range, without / with")
    return f"""## What the middleware costs

{measured(section)}

Two identical Starlette apps, one with `AgentMiddleware` (a started registry) and one without,
serve a handler that never touches the agent; rounds alternate between them
({section["rounds"]} rounds, medians). In process, with no network, the difference is the
middleware's own cost: the target is at most 0.5 µs per request. Under uvicorn a request costs
the server a hundred microseconds or more, and on a shared machine that moves by tens of
microseconds from round to round: a change there smaller than the rounds' range is noise.
What the agent's trace hooks and OpenTelemetry add to its own requests is in the next section.

{table(header, rows)}"""


def _range(values: list[float]) -> str:
    return f"{us(min(values))}–{us(max(values))}"


def hooks(results: dict[str, Any]) -> str:
    section = results.get("hooks")
    if section is None:
        return "## What trace hooks cost\n\n" + missing("hooks")
    configs = section["configs"]
    base = configs["none"]["cpu_us"]
    rows = []
    for figures in configs.values():
        if "unavailable" in figures:
            rows.append([figures["label"], f"not available: {figures['unavailable']}", "", "", ""])
            continue
        rows.append(
            [
                figures["label"],
                us(figures["cpu_us"]),
                ratio(figures["ratio"]),
                f"{figures['cpu_us'] - base:+.1f}",
                _range(figures["cpu_us_rounds"]),
            ]
        )
    header = ["agent", "µs per request", "× no hooks", "µs added", "rounds' range"]
    rounds = section["rounds"]
    rounds_word = "round" if rounds == 1 else "rounds"
    return f"""## What trace hooks cost

{measured(section)}

The agent's client CPU per request on small keep-alive GETs, one at a time on {section["loop"]}:
{section["requests"]:,} timed requests per configuration and round, {rounds} {rounds_word} with
the configurations taking turns; medians, and **× no hooks** is the median of each round's
ratio to the agent without hooks. Without hooks the agent holds no hook runner and tests for one
once per step of a request: that row is the agent the client tables above measure. **Hooks
that do nothing** implement all ten hooks with an immediate return: what building the events
and awaiting the hooks costs. **OpenTelemetryHooks** make a span per request, inject its
`traceparent` and record the two client metrics, on the API alone (no SDK configured, as when
a library ships the instrumentation to an application that does not trace) and on the SDK,
with every span sampled and batched to an exporter that drops it and the metrics aggregated in
memory; the SDK's export thread runs in the same process and its CPU counts. Exporting over a
network costs more again, in the exporter.

{table(header, rows)}"""


def profile(results: dict[str, Any]) -> str:
    section = results.get("profile")
    if section is None:
        return "## Where the time goes\n\n" + missing("profile") + f" (or `{COMMAND} --profile`)"
    parts = [
        "## Where the time goes",
        measured(section),
        """cProfile over small keep-alive GETs, one at a time on asyncio, with CPU time as its
clock: the 15 functions with the most time of their own, per request, for the agent with each
parser. The profiler slows every call several times over, so its totals are far above the
timed runs': read the shares, and the calls per request.""",
    ]
    for name, result in section["clients"].items():
        label = {"agent-h11": "agent (h11)", "agent-httptools": "agent (httptools)"}[name]
        parts.append(f"### {label}")
        if "unavailable" in result:
            parts.append(f"Not available: {result['unavailable']}.")
            continue
        shares = ", ".join(
            f"{package} {share:.0%}" for package, share in result["packages"].items()
        )
        parts.append(
            f"{result['requests']:,} requests, {us(result['total_us'])} µs per request under "
            f"the profiler. Own time by package: {shares}."
        )
        rows = [
            [
                f"`{row['function']}`",
                f"{row['calls']:.1f}",
                us(row["own_us"]),
                f"{row['share']:.1%}",
                us(row["cumulative_us"]),
            ]
            for row in section["clients"][name]["functions"]
        ]
        parts.append(
            table(["function", "calls/request", "own µs", "own share", "cumulative µs"], rows)
        )
    return "\n\n".join(parts)


def machine(results: dict[str, Any]) -> str:
    rows = []
    for name, section in results.items():
        meta = section["meta"]
        rows.append(
            [
                name,
                meta["date"],
                meta["plan"],
                f"{meta['seconds']:.0f} s",
                f"{meta['load_average']} → {meta['load_after']}",
                f"`{meta['commit']}`" if meta["commit"] else "–",
            ]
        )
    meta = next(iter(results.values()))["meta"]
    versions = ", ".join(
        f"{package} {version}" for package, version in meta["versions"].items() if version
    )
    return f"""## Machine and versions

{meta["cpu"]}, {meta["cores"]} cores, {meta["system"]}, {meta["python"]}. Packages: {versions}.

{table(["section", "measured", "plan", "took", "load average", "commit"], rows)}"""


def reproduce() -> str:
    return f"""## Reproduce

Install the benchmark extra (`pip install -e '.[bench]'`) and run from the checkout's root:

```sh
{COMMAND}                       # everything; rewrites this page, its charts and the JSON
{COMMAND} --quick               # under a minute: small keep-alive GETs on asyncio, fewer rounds
{COMMAND} --only pool,memory    # some sections, merged into the existing results
{COMMAND} --only hooks          # what trace hooks and OpenTelemetry cost, alone
{COMMAND} --profile             # the profiles only
{COMMAND} --rounds 3            # the full plan with fewer rounds
```

`--quick` and `--smoke` (every configuration with tiny counts, which the test suite runs) write
under `build/benchmarks/` unless given `--output DIR`; the full run writes `docs/`. Every figure
on this page, and every round behind it, is in
[benchmarks/results.json](benchmarks/results.json)."""


def render(results: dict[str, Any], charts: list[str]) -> str:
    sections = [
        introduction(results),
        at_a_glance(results),
        targets(results),
        clients(results, charts),
        pool(results, charts),
        memory(results),
        middleware(results),
        hooks(results),
        profile(results),
        machine(results),
        reproduce(),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"
