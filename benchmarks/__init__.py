"""starlette-agent's benchmarks: ``python -m benchmarks`` measures and writes the page.

It runs every client (the agent with each HTTP parser, aiohttp, httpx, httpx2, a bare h11 loop
and a raw asyncio floor) in a process of its own against one upstream in another process, times
the pool's bookkeeping as queues and origins grow, counts memory per idle socket and per queued
request, measures the middleware and what trace hooks cost, profiles the agent, and writes
``docs/benchmarks.md``, its charts and ``docs/benchmarks/results.json``. See
``python -m benchmarks --help``.

One module per concept: ``upstream`` (the server), ``clients``, ``h11_loop`` and ``floor`` (the
clients compared), ``worker`` (a client's process), ``matrix`` (the rounds over every client and
configuration), ``pool``, ``memory``, ``middleware``, ``hooks``, ``profiling`` (the other
sections),
``plan`` (how much of everything), ``machine``, ``targets``, ``charts`` and ``page`` (the
output).
"""
