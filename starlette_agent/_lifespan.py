"""Joining an app's ASGI lifespan: open something before the app starts, close it after it stops.

``join_lifespan`` sits between the server and the app on the ``lifespan`` scope. At
``lifespan.startup`` it calls ``start()`` *before* the app's own startup, so the app's lifespan
may already use what was opened. It then forwards the startup to the app and watches what the
app sends back: when the app reports ``lifespan.shutdown.complete`` (or a failure), the app's own
shutdown is over, and only then does it await ``stop()``, before the message goes on to the
server. uvicorn turns SIGINT and SIGTERM into exactly this shutdown, so signals run ``stop()``
too, before the process exits.

An app without lifespan support (it raises or returns on the lifespan scope) is covered: the
protocol is then answered here, alone. ``stop()`` runs exactly once, whichever exit leads to it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["join_lifespan"]

logger = logging.getLogger("starlette_agent")

_APP_FINISHED = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)


async def join_lifespan(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    start: Callable[[], None],
    stop: Callable[[], Awaitable[str | None]],
    who: str,
) -> None:
    """Run ``app``'s lifespan between ``start()`` and ``stop()``.

    ``start`` raising fails the startup (after ``stop()`` gives back what it opened) with a
    message naming ``who``; ``stop`` answers an error message when a close failed, which turns
    ``lifespan.shutdown.complete`` into ``lifespan.shutdown.failed``.
    """
    stop = _once(stop)
    message = await receive()
    if message["type"] != "lifespan.startup":  # pragma: no cover - server broke the protocol
        raise RuntimeError(f"expected lifespan.startup, got {message['type']!r}")
    try:
        start()
    except Exception as exc:
        await stop()
        failure = f"{who} could not start: {type(exc).__name__}: {exc}"
        await send({"type": "lifespan.startup.failed", "message": failure})
        raise

    replay: list[Message] = [message]
    app_answered = False

    async def app_receive() -> Message:
        if replay:
            return replay.pop()
        return await receive()

    async def app_send(message: Message) -> None:
        nonlocal app_answered
        kind = message["type"]
        if kind.startswith("lifespan.startup."):
            app_answered = True
        if kind in _APP_FINISHED:
            # The app's own shutdown (or failed startup) is over: now stop, before the server
            # hears of it and the process may exit.
            error = await stop()
            if error is not None and kind == "lifespan.shutdown.complete":
                message = {"type": "lifespan.shutdown.failed", "message": error}
        await send(message)

    try:
        await app(scope, app_receive, app_send)
    except Exception:
        if app_answered:
            raise
        logger.debug("the app does not support lifespan; %s answers it alone", who)
        await _answer_alone(app_receive, send, stop)
    else:
        if not app_answered:
            await _answer_alone(app_receive, send, stop)
    finally:
        await stop()  # a no-op if it ran already; here for an app that failed or was cancelled


def _once(stop: Callable[[], Awaitable[str | None]]) -> Callable[[], Awaitable[str | None]]:
    done = False

    async def stop_once() -> str | None:
        nonlocal done
        if done:
            return None
        done = True
        return await stop()

    return stop_once


async def _answer_alone(
    receive: Receive, send: Send, stop: Callable[[], Awaitable[str | None]]
) -> None:
    """Speak the lifespan protocol for an app that does not: startup done, wait, shut down."""
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    while message["type"] != "lifespan.shutdown":  # pragma: no cover - defensive
        message = await receive()
    error = await stop()
    if error is None:
        await send({"type": "lifespan.shutdown.complete"})
    else:
        await send({"type": "lifespan.shutdown.failed", "message": error})
