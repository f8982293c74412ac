"""The pool's decisions: who gets which socket, who waits, what must close, what expires.

Theory of operation
-------------------
``Pool`` is synchronous and does no I/O, in the way h11 keeps HTTP/1.1 out of the socket code.
The async ``Agent`` asks it for a socket and then carries out the answer:

* ``acquire(key)`` answers with one of three things:

  - an idle connection to reuse (``lifo``: the one freed last; ``fifo``: the one idle longest),
  - a ``Reservation``: permission to open one new connection. It already counts as a socket of
    that origin, so two tasks can never both take the last slot; it must end in ``connected``
    or ``connect_failed``.
  - a ``Waiter``: the request is queued. When a socket or slot frees, the pool sets
    ``waiter.grant`` and calls ``waiter.wake()``. A waiter that stops waiting (cancelled, timed
    out) calls ``cancel(waiter)``, which hands on whatever it had been granted meanwhile.

* ``release(conn, reusable=...)`` takes a connection back after a response: a waiting request
  of the same origin gets it directly; otherwise it becomes idle, unless it is not reusable,
  ``max_free_sockets`` idle sockets are already kept, or another origin is waiting for room under
  ``max_total_sockets`` (an idle socket must never starve another origin's queue).

* Every method that takes a socket out of the pool *returns the connections to close*. The pool
  no longer hands them out, so the caller can close them later (shielded from cancellation)
  without the pool ever being half-updated. Their slots stay taken until the caller reports
  ``close_done(conn)``: as in Node, a new socket replaces an old one only once the old one is shut,
  so a server never sees more than ``max_sockets`` connections from us, even across a churn of
  cancelled requests.

Limits follow Node's ``http.Agent``: ``max_sockets`` counts an origin's active, connecting and
idle sockets; ``max_total_sockets`` counts them over all origins; ``max_free_sockets`` bounds the
idle ones per origin. An idle socket closed to make room for another origin's new one (under
``max_total_sockets``) counts in its own origin until it is shut, while the two share one slot
overall. Queues are FIFO per origin; for room under ``max_total_sockets`` the
longest-waiting request whose origin is under its own limit goes first.

Cost: ``acquire`` and ``release`` are O(1) in the number of origins and sockets. Only
``expire`` (run by the reaper, not by requests) looks at every idle socket, and a grant under
``max_total_sockets`` skips queued requests whose own origin is full.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

__all__ = ["Pool", "PoolClosedError", "PoolMember", "Reservation", "Waiter"]


class PoolMember(Protocol):
    """What the pool needs to know of a connection."""

    pool_key: str
    #: When an idle connection expires (``math.inf`` for never); set before ``release``.
    idle_deadline: float


C = TypeVar("C", bound=PoolMember)


class PoolClosedError(Exception):
    """The pool was closed; raised by ``acquire`` and granted to waiters."""


@dataclass(eq=False, slots=True)
class Reservation(Generic[C]):
    """Permission to open one new connection for ``key``, already counted as its socket.

    ``evicted`` is a connection taken out of the pool to make room for this one (an idle socket
    under ``max_total_sockets``, or the socket a retry must not reuse): the two share one slot.
    The caller closes it, and reports ``close_done``, before connecting. A reservation given up
    before then (``connect_failed``, or ``cancel`` of the waiter it was granted to) hands
    ``evicted`` back for closing; it then holds the slot alone until its ``close_done``.
    """

    key: str
    evicted: C | None = None


class Waiter(Generic[C]):
    """A queued request. ``grant`` is set, and ``wake`` called, when it is served."""

    __slots__ = ("fresh", "grant", "key", "wake")

    def __init__(self, key: str, *, fresh: bool = False) -> None:
        self.key = key
        self.fresh = fresh
        self.grant: C | Reservation[C] | PoolClosedError | None = None
        self.wake: Callable[[], None] | None = None


class _Origin(Generic[C]):
    __slots__ = ("idle", "sockets", "waiters")

    def __init__(self) -> None:
        self.sockets = 0  # active + connecting + idle
        self.idle: OrderedDict[C, None] = OrderedDict()  # oldest freed first
        self.waiters: deque[Waiter[C]] = deque()


class Pool(Generic[C]):
    """Socket accounting for one agent. See the module docstring."""

    def __init__(
        self,
        *,
        max_sockets: int | None = None,
        max_total_sockets: int | None = None,
        max_free_sockets: int = 256,
        scheduling: Literal["lifo", "fifo"] = "lifo",
    ) -> None:
        self._max_sockets = max_sockets if max_sockets is not None else math.inf
        self._max_total = max_total_sockets if max_total_sockets is not None else math.inf
        self._max_free = max_free_sockets
        self._reuse_newest = scheduling == "lifo"
        self._origins: dict[str, _Origin[C]] = {}
        self._sockets = 0
        self._queued = 0
        self._idle_lru: OrderedDict[C, None] = OrderedDict()  # every idle socket, oldest first
        self._connections: set[C] = set()  # every open connection, active or idle
        self._closing: set[C] = set()  # handed to the caller to close; still hold their slots
        # Handed out as ``Reservation.evicted``, not yet reported shut: the key of the reservation
        # each shares its slot with. One evicted for another origin still counts in its own
        # origin (never in the total twice), so that origin never opens a socket over its limit.
        self._evicted: dict[C, str] = {}
        # Requests that may take room freed in *another* origin; only kept when total is bounded.
        # Entries already served stay until they reach the front (lazy removal keeps grants O(1)).
        self._total_waiters: deque[Waiter[C]] = deque()
        self.closed = False

    # -- asking for a socket -------------------------------------------------------------------

    def acquire(self, key: str, *, fresh: bool = False) -> C | Reservation[C] | Waiter[C]:
        """Give a request for ``key`` an idle connection, a reservation, or a place in the queue.

        ``fresh=True`` asks for a new connection (a retry after a reused socket failed).
        """
        if self.closed:
            raise PoolClosedError
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin()
        elif origin.waiters:
            return self._enqueue(origin, key, fresh)  # never jump the queue
        if origin.idle and not fresh:
            conn = origin.idle.popitem(last=self._reuse_newest)[0]
            del self._idle_lru[conn]
            return conn
        if origin.sockets < self._max_sockets:
            if self._sockets < self._max_total:
                return self._reserve(origin, key)
            if self._idle_lru:
                # Full overall, but some origin has a socket sitting idle: close it for us.
                return self._evict_for(next(iter(self._idle_lru)), origin, key)
        elif fresh and origin.idle:
            return self._evict_for(next(iter(origin.idle)), origin, key)
        return self._enqueue(origin, key, fresh)

    def close_done(self, conn: C) -> None:
        """``conn``, returned earlier for closing, is now shut: its slot goes to a waiter.

        A reservation's ``evicted`` connection leaves its slot to the reservation.
        """
        if conn in self._closing:
            self._closing.discard(conn)
            self._release_slot(self._origins[conn.pool_key], conn.pool_key)
        elif conn in self._evicted:
            self._evicted_shut(conn)

    def connected(self, reservation: Reservation[C], conn: C) -> bool:
        """Record that ``reservation`` became ``conn``. False: the pool closed, close ``conn``."""
        if reservation.evicted in self._evicted:
            # The caller was to close it before connecting, as a reservation requires.
            self._evicted_shut(reservation.evicted)
        if self.closed:
            self.connect_failed(reservation)
            return False
        self._connections.add(conn)
        return True

    def connect_failed(self, reservation: Reservation[C]) -> list[C]:
        """Give back the slot of a reservation that did not become a connection.

        Returns its ``evicted`` connection if that is not shut yet: it keeps the slot until its
        ``close_done``, so that no new socket overlaps it.
        """
        key = reservation.key
        origin = self._origins[key]
        victim = reservation.evicted
        if victim is None or victim not in self._evicted:
            self._release_slot(origin, key)
            return []
        del self._evicted[victim]
        victim_key = victim.pool_key
        if self.closed:
            # close() has let go of every slot; only the counts of held reservations remain.
            self._release_slot(origin, key)
            if victim_key != key:
                self._socket_gone(self._origins[victim_key], victim_key)
            return [victim]
        self._closing.add(victim)
        if victim_key != key:
            # The victim, counted in its own origin all along, takes the slot overall alone;
            # this origin has its own room back.
            self._socket_gone(origin, key)
        return [victim]

    def cancel(self, waiter: Waiter[C]) -> list[C]:
        """A queued request stopped waiting; hand on whatever it was granted meanwhile."""
        grant, waiter.grant = waiter.grant, PoolClosedError()
        if grant is None:
            origin = self._origins[waiter.key]
            origin.waiters.remove(waiter)
            self._queued -= 1
            self._forget_origin_if_unused(origin, waiter.key)
            return []
        if isinstance(grant, Reservation):
            return self.connect_failed(grant)
        if isinstance(grant, PoolClosedError):
            return []
        return self.release(grant, reusable=True)

    # -- giving a socket back ------------------------------------------------------------------

    def release(self, conn: C, *, reusable: bool) -> list[C]:
        """Take ``conn`` back after its response; return what to close."""
        if conn not in self._connections:
            return [conn]  # already forgotten, e.g. by close(): closing it again is harmless
        key = conn.pool_key
        origin = self._origins[key]
        if not reusable or self.closed:
            return self._drop(conn, origin, key)
        if origin.waiters:
            return self._hand_over(origin.waiters.popleft(), conn)
        if self._total_waiters and self._sockets >= self._max_total and self._total_waiter_can_go():
            # Another origin waits for room under max_total_sockets: close this socket, whose
            # slot then goes to that waiter, rather than keep it idle for nobody.
            return self._drop(conn, origin, key)
        if len(origin.idle) >= self._max_free:
            return self._drop(conn, origin, key)
        origin.idle[conn] = None
        self._idle_lru[conn] = None
        return []

    def discard(self, conn: C) -> list[C]:
        """Forget a broken or doubtful connection; return what to close (``conn`` included)."""
        if conn not in self._connections:
            return [conn]
        key = conn.pool_key
        origin = self._origins[key]
        if conn in origin.idle:
            del origin.idle[conn]
            del self._idle_lru[conn]
        return self._drop(conn, origin, key)

    # -- expiry and shutdown ------------------------------------------------------------------

    def expire(self, now: float) -> list[C]:
        """Take out every idle connection whose deadline has passed; return them to close."""
        expired = [conn for conn in self._idle_lru if conn.idle_deadline <= now]
        for conn in expired:
            self._take_out_idle(conn)
            self._closing.add(conn)
        return expired

    def next_deadline(self) -> float | None:
        """The earliest idle deadline, or None when nothing is idle."""
        if not self._idle_lru:
            return None
        return min(conn.idle_deadline for conn in self._idle_lru)

    def close(self) -> list[C]:
        """Refuse new requests, fail queued ones, and return every connection to close."""
        self.closed = True
        for origin in self._origins.values():
            while origin.waiters:
                self._grant(origin.waiters.popleft(), PoolClosedError())
        self._total_waiters.clear()
        conns = list(self._connections)
        for conn in self._closing:
            self._origins[conn.pool_key].sockets -= 1
            self._sockets -= 1
        self._closing.clear()
        for conn in conns:
            origin = self._origins[conn.pool_key]
            origin.idle.pop(conn, None)
            self._idle_lru.pop(conn, None)
            self._connections.discard(conn)
            origin.sockets -= 1
            self._sockets -= 1
        for key in [k for k, o in self._origins.items() if not o.sockets and not o.waiters]:
            del self._origins[key]
        return conns

    # -- what the pool holds -------------------------------------------------------------------

    def origin_counts(self) -> dict[str, tuple[int, int, int]]:
        """Per pool key: (active, idle, queued). Active includes sockets still connecting."""
        return {
            key: (o.sockets - len(o.idle), len(o.idle), len(o.waiters))
            for key, o in self._origins.items()
        }

    @property
    def sockets(self) -> int:
        return self._sockets

    @property
    def idle(self) -> int:
        return len(self._idle_lru)

    @property
    def queued(self) -> int:
        return self._queued

    # -- internals -----------------------------------------------------------------------------

    def _reserve(self, origin: _Origin[C], key: str) -> Reservation[C]:
        origin.sockets += 1
        self._sockets += 1
        return Reservation(key)

    def _enqueue(self, origin: _Origin[C], key: str, fresh: bool) -> Waiter[C]:
        waiter: Waiter[C] = Waiter(key, fresh=fresh)
        origin.waiters.append(waiter)
        self._queued += 1
        if self._max_total != math.inf:
            queue = self._total_waiters
            if len(queue) > 2 * self._queued + 16:
                # Drop entries served through their own origin, so the queue stays O(waiting).
                self._total_waiters = queue = deque(w for w in queue if w.grant is None)
            queue.append(waiter)
        return waiter

    def _grant(self, waiter: Waiter[C], grant: C | Reservation[C] | PoolClosedError) -> None:
        waiter.grant = grant
        self._queued -= 1
        if waiter.wake is not None:
            waiter.wake()

    def _hand_over(self, waiter: Waiter[C], conn: C) -> list[C]:
        if not waiter.fresh:
            self._grant(waiter, conn)
            return []
        # A retry wants a new socket: this one's slot becomes its reservation, and the
        # retrying task closes it before connecting, as with any eviction.
        self._connections.discard(conn)
        self._evicted[conn] = waiter.key
        self._grant(waiter, Reservation(waiter.key, evicted=conn))
        return []

    def _evict_for(self, victim: C, origin: _Origin[C], key: str) -> Reservation[C]:
        """Close an idle socket to make room: its slot passes straight to a new reservation,
        whose task closes it before connecting."""
        self._take_out_idle(victim)
        self._evicted[victim] = key
        if victim.pool_key != key:
            # It stays counted in its own origin until it is shut; overall, the two share a slot.
            origin.sockets += 1
        return Reservation(key, victim)

    def _evicted_shut(self, victim: C) -> None:
        """A reservation's evicted connection is shut: the reservation has their slot alone."""
        key = self._evicted.pop(victim)
        if victim.pool_key != key:
            self._socket_gone(self._origins[victim.pool_key], victim.pool_key)

    def _socket_gone(self, origin: _Origin[C], key: str) -> None:
        """``origin`` has one socket less, while the total is unchanged: a waiter may now go."""
        origin.sockets -= 1
        if not self.closed and origin.waiters and origin.sockets < self._max_sockets:
            if self._sockets < self._max_total:
                self._grant(origin.waiters.popleft(), self._reserve(origin, key))
            elif self._idle_lru:
                # Full overall, but some origin has a socket sitting idle: close it for us.
                victim = next(iter(self._idle_lru))
                self._grant(origin.waiters.popleft(), self._evict_for(victim, origin, key))
        self._forget_origin_if_unused(origin, key)

    def _take_out_idle(self, idle_conn: C) -> None:
        """Remove an idle connection from the pool's books, except for its slot."""
        del self._origins[idle_conn.pool_key].idle[idle_conn]
        del self._idle_lru[idle_conn]
        self._connections.discard(idle_conn)

    def _drop(self, conn: C, origin: _Origin[C], key: str) -> list[C]:
        """Hand ``conn`` to the caller to close; its slot frees at ``close_done``."""
        self._connections.discard(conn)
        self._closing.add(conn)
        return [conn]

    def _release_slot(self, origin: _Origin[C], key: str) -> None:
        """One socket of ``origin`` is gone: give its room to whoever waits for it."""
        origin.sockets -= 1
        self._sockets -= 1
        if self.closed:
            self._forget_origin_if_unused(origin, key)
            return
        if origin.waiters and origin.sockets < self._max_sockets:
            self._grant(origin.waiters.popleft(), self._reserve(origin, key))
        elif self._total_waiters and self._sockets < self._max_total:
            waiter = self._next_total_waiter()
            if waiter is not None:
                self._grant(waiter, self._reserve(self._origins[waiter.key], waiter.key))
        self._forget_origin_if_unused(origin, key)

    def _total_waiter_can_go(self) -> bool:
        """Whether some request queued for room overall has room in its own origin."""
        return any(
            waiter.grant is None and self._origins[waiter.key].sockets < self._max_sockets
            for waiter in self._total_waiters
        )

    def _next_total_waiter(self) -> Waiter[C] | None:
        """Take the longest-waiting request whose own origin is under ``max_sockets``."""
        queue = self._total_waiters
        while queue and queue[0].grant is not None:
            queue.popleft()
        for index, waiter in enumerate(queue):
            if waiter.grant is not None:
                continue
            origin = self._origins[waiter.key]
            if origin.sockets < self._max_sockets:
                del queue[index]
                # Per-origin queues are FIFO too, so this waiter heads its origin's queue.
                origin.waiters.remove(waiter)
                return waiter
        return None

    def _forget_origin_if_unused(self, origin: _Origin[C], key: str) -> None:
        if not origin.sockets and not origin.waiters and self._origins.get(key) is origin:
            del self._origins[key]
