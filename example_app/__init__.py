"""The example: one process, one event loop, three servers, and the agents between them.

``python -m example_app`` starts, as three ``uvicorn.Server``s in one asyncio event loop:

* ``upstream`` (``example_app.upstream``): the service the others call. It answers each call
  with the *peer port* of the connection that carried it, so you can see which socket was used.
* ``server1`` and ``server2`` (``example_app.server1``, ``example_app.server2``): two Starlette
  apps whose handlers call the upstream. Both use the registry's ``"default"`` agent, so their
  calls share one pool of sockets; ``server2``'s ``/isolated/...`` routes use the ``"isolated"``
  agent (per-route ``AgentMiddleware(agent="isolated")``), a pool of their own.

server1 and server2 show a live dashboard of their agents at ``/`` (a chart of the last minute
included); the upstream's ``/`` links to what it serves.
"""
