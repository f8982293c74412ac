"""``Recorder``: trace hooks that keep every event, and the checks made on what they kept."""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette_agent import (
    AgentHooks,
    ConnectionClosedEvent,
    ConnectionCreatedEvent,
    ConnectionCreateStartEvent,
    ConnectionReleasedEvent,
    ConnectionReusedEvent,
    DequeuedEvent,
    QueuedEvent,
    RequestEndEvent,
    RequestErrorEvent,
    RequestStartEvent,
)


class Recorder(AgentHooks):
    """Keeps ``(hook name, event)`` for every hook, in the order they were called; with
    ``fails``, each hook raises after keeping its event. Every hook goes through ``record``,
    which a subclass may extend to act on some hooks."""

    def __init__(self, *, fails: bool = False) -> None:
        self.events: list[tuple[str, Any]] = []
        self.fails = fails

    async def record(self, name: str, event: Any) -> None:
        self.events.append((name, event))
        if self.fails:
            raise ValueError(f"{name} failed on purpose")

    async def request_start(self, event: RequestStartEvent) -> None:
        await self.record("request_start", event)

    async def request_end(self, event: RequestEndEvent) -> None:
        await self.record("request_end", event)

    async def request_error(self, event: RequestErrorEvent) -> None:
        await self.record("request_error", event)

    async def queued(self, event: QueuedEvent) -> None:
        await self.record("queued", event)

    async def dequeued(self, event: DequeuedEvent) -> None:
        await self.record("dequeued", event)

    async def connection_create_start(self, event: ConnectionCreateStartEvent) -> None:
        await self.record("connection_create_start", event)

    async def connection_created(self, event: ConnectionCreatedEvent) -> None:
        await self.record("connection_created", event)

    async def connection_reused(self, event: ConnectionReusedEvent) -> None:
        await self.record("connection_reused", event)

    async def connection_released(self, event: ConnectionReleasedEvent) -> None:
        await self.record("connection_released", event)

    async def connection_closed(self, event: ConnectionClosedEvent) -> None:
        await self.record("connection_closed", event)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[Any]:
        return [event for hook, event in self.events if hook == name]

    def reasons(self) -> list[str]:
        return [event.reason for event in self.of("connection_closed")]


def check_lifecycles(recorder: Recorder) -> dict[str, int]:
    """Check every socket's events follow its life (created, then reused and released in
    turn, closed once, last), and every request's (one end or error after its start); the
    sockets still open, by state, as the events tell it."""
    state: dict[int, str] = {}
    closed: set[int] = set()
    contexts: Counter[int] = Counter()
    for name, event in recorder.events:
        if name == "request_start":
            contexts[id(event.context)] += 1
        elif name in ("request_end", "request_error"):
            contexts[id(event.context)] -= 1
            assert contexts[id(event.context)] == 0, f"{name} without its request_start"
        elif name == "connection_created":
            assert event.connection_id not in state, "created twice"
            state[event.connection_id] = "active"
        elif name == "connection_reused":
            assert state.get(event.connection_id) == "idle", f"reused while not idle: {event}"
            state[event.connection_id] = "active"
        elif name == "connection_released":
            assert state.get(event.connection_id) == "active", f"released while not in use: {event}"
            state[event.connection_id] = "idle"
        elif name == "connection_closed":
            assert event.connection_id in state, f"closed but never created: {event}"
            was = state.pop(event.connection_id)
            assert event.idle == (was == "idle"), (event, was)
            closed.add(event.connection_id)
    assert set(contexts.values()) <= {0}, "a request_start had no request_end or request_error"
    counts = Counter(state.values())
    return {"active": counts["active"], "idle": counts["idle"]}
