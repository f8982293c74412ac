"""``server2``: the shared ``"default"`` agent, and ``/isolated/...`` routes on an agent of their
own (per-route ``AgentMiddleware(agent="isolated")``).

Runs co-hosted (``python -m example_app``) or alone:
``uvicorn example_app.server2:app --port 8002``.
"""

from .apps import create_app

app = create_app("server2", isolated_route=True)
