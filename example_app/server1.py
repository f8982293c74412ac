"""``server1``: calls the upstream through the shared ``"default"`` agent.

Runs co-hosted (``python -m example_app``) or alone, even with several worker processes, each
with agents of its own: ``uvicorn example_app.server1:app --port 8001 --workers 2``.
"""

from .apps import create_app

app = create_app("server1")
