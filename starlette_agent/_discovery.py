"""Finding what lies below an ASGI app: middleware of one kind, and the agent names routes ask for.

Starlette runs the lifespan of the outermost app only, so the app-level ``AgentMiddleware`` must
find, at startup, every ``AgentMiddleware`` below it (on a route, a mount, in a mounted app) and
every ``agent_dependency`` name in FastAPI routes, to open and check them. ``find`` walks the
app's object graph the way its requests will, duck-typed (neither Starlette nor FastAPI is
imported), following:

* ``middleware_stack``, else ``app``: the next layer (a middleware's app, a route's or mount's
  wrapped app, a mounted app). An app not yet called (``middleware_stack`` still None, as in a
  mounted Starlette or FastAPI app) gets its stack built now, as its first request would;
* ``routes``, for a router reached through its bound ``app`` method or without a stack;
* FastAPI's included routers (``effective_candidates()``): their routes as FastAPI serves them,
  with the dependencies of the router and of ``include_router``;
* ``dependant``: a FastAPI route's dependency tree, for the names it asks for.

Anything else is a dead end: an app kept under another attribute name is not seen. The
middleware beyond one finds out at its first request, and fails loudly then.

Each find comes with where it sits (``"route /v2 > /pay"``, for error messages) and its
*owner*, the nearest enclosing middleware of the kind searched for (None: the root).
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._dependency import dependency_agent_name

__all__ = ["MiddlewareFound", "NameFound", "find"]

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class MiddlewareFound(Generic[M]):
    where: str
    middleware: M
    owner: M | None


@dataclass(frozen=True, slots=True)
class NameFound(Generic[M]):
    where: str
    name: str
    owner: M | None


def find(app: object, kind: type[M]) -> Iterator[MiddlewareFound[M] | NameFound[M]]:
    """Every ``kind`` instance and every agent name asked for below ``app``, outermost first."""
    seen: dict[int, object] = {}  # holding each node, so that no id is reused during the walk
    stack: list[tuple[str, object, M | None]] = [("app", app, None)]
    while stack:
        where, node, owner = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        where = _where(where, node)
        if isinstance(node, kind):
            yield MiddlewareFound(where, node, owner)
            owner = node
        for name in _names_asked_for(getattr(node, "dependant", None)):
            yield NameFound(where, name, owner)
        stack.extend((where, child, owner) for child in reversed(_children(node)))


def _where(where: str, node: object) -> str:
    path = getattr(node, "path", None)
    if not isinstance(path, str) or not path:
        return where
    return f"route {path}" if where == "app" else f"{where} > {path}"


def _children(node: object) -> list[object]:
    if isinstance(node, types.MethodType):
        # A router's ``app`` method, the innermost layer of its stack: its routes come next.
        routes = getattr(node.__self__, "routes", None)
        return list(routes) if isinstance(routes, list) else []
    build = getattr(node, "build_middleware_stack", None)
    if callable(build) and getattr(node, "middleware_stack", ...) is None:
        node.middleware_stack = build()  # type: ignore[attr-defined]
    children: list[object] = []
    for attribute in ("middleware_stack", "app", "starlette_route"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, str | bytes | int | float):
            children.append(child)
            if attribute == "middleware_stack":
                break  # the stack ends in the node's own app: reached through it, in order
    if not children:
        routes = getattr(node, "routes", None)
        if isinstance(routes, list):
            children.extend(routes)
    for method in ("effective_candidates", "effective_low_priority_routes"):
        included = getattr(node, method, None)
        if callable(included):
            children.extend(included())
    return children


def _names_asked_for(dependant: object) -> Iterator[str]:
    """Names asked for by ``agent_dependency`` in a FastAPI route's dependency tree."""
    stack = [dependant] if dependant is not None else []
    while stack:
        node = stack.pop()
        name = dependency_agent_name(getattr(node, "call", None))
        if name is not None:
            yield name
        children = getattr(node, "dependencies", None)
        if isinstance(children, list):
            stack.extend(children)
