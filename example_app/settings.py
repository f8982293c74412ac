"""The example's settings: where each server listens, and its agents, from the environment.

Values come from the process environment, then from a ``.env`` file in the working directory
(``EXAMPLE_ENV_FILE`` names another). ``AGENT_*`` variables configure the agents (see
``starlette_agent``'s settings); ``EXAMPLE_*`` variables belong to this example only.
A port of 0 picks a free one; the real ports are printed at startup.
"""

from __future__ import annotations

import os

from starlette.config import Config

from starlette_agent import AgentRegistry, AgentSettings

_env_file = os.environ.get("EXAMPLE_ENV_FILE", ".env")
config = Config(_env_file if os.path.isfile(_env_file) else None)

HOST: str = config("EXAMPLE_HOST", default="127.0.0.1")
UPSTREAM_PORT: int = config("EXAMPLE_UPSTREAM_PORT", cast=int, default=8000)
SERVER1_PORT: int = config("EXAMPLE_SERVER1_PORT", cast=int, default=8001)
SERVER2_PORT: int = config("EXAMPLE_SERVER2_PORT", cast=int, default=8002)
#: Where server1 and server2 send their calls. ``python -m example_app`` sets it to the upstream
#: it started; under ``uvicorn example_app.server1:app`` it is this value.
UPSTREAM_URL: str = config("EXAMPLE_UPSTREAM_URL", default=f"http://127.0.0.1:{UPSTREAM_PORT}")

#: The agents of server1 and server2, shared by both: one registry, opened by each app's
#: lifespan and closed by the last one to stop. Small limits, so a burst of 50 calls queues.
#: ``AGENT_MAX_SOCKETS=10`` or ``AGENT_ISOLATED_MAX_SOCKETS=1`` override them, option by option.
#: Building it creates no agent: each process (each ``--workers`` worker) opens its own.
registry = AgentRegistry.from_settings(
    config,
    agents={
        "default": AgentSettings(max_sockets=5),
        "isolated": AgentSettings(max_sockets=2),
    },
)
