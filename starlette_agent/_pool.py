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
overall. Queues are FIFO per origin. A slot freed in an origin goes to that origin's queue
first; room freed under ``max_total_sockets`` otherwise goes to the longest-waiting request whose
origin is under its own limit.

Cost: each call a request makes (``acquire``, ``release``, ``discard``, ``cancel``,
``connected``, ``connect_failed``, ``close_done``) is O(1), amortised, in the number of origins,
sockets and queued requests. Under ``max_total_sockets`` the pool keeps the queued requests whose
origin is under ``max_sockets`` in one list, oldest first, so whether another origin waits for
room and who gets a freed slot are read off its front. A request joins that list when it queues
and leaves it once: served, cancelled, or because its origin reached ``max_sockets`` (from then
on, each socket that origin frees goes to its own queue). One rare step costs O(queued): an origin
with requests waiting that gets room back while the total stays full, and no socket is idle
(a socket evicted from it for another origin is shut, or its reservation that evicted one is
given up), merges them into the list by arrival. The reaper's calls, ``expire`` and
``next_deadline``, take O(expired) and O(1) while idle deadlines follow the order sockets were
freed in (one keep-alive time for all), and look at every idle socket otherwise.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import takewhile
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

    __slots__ = ("arrival", "fresh", "grant", "key", "wake")

    def __init__(self, key: str, *, fresh: bool = False, arrival: int = 0) -> None:
        self.key = key
        self.fresh = fresh
        self.arrival = arrival  # place in the order of all queued requests
        self.grant: C | Reservation[C] | PoolClosedError | None = None
        self.wake: Callable[[], None] | None = None


class _Origin(Generic[C]):
    __slots__ = ("idle", "sockets", "waiters")

    def __init__(self) -> None:
        self.sockets = 0  # active + connecting + idle
        self.idle: OrderedDict[C, None] = OrderedDict()  # oldest freed first
        self.waiters: OrderedDict[Waiter[C], None] = OrderedDict()  # oldest first


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
        # Whether idle deadlines never decrease along _idle_lru, as when every response is kept
        # as long: then the reaper's questions are answered from its front.
        self._idle_in_deadline_order = True
        self._latest_idle_deadline = -math.inf
        self._connections: set[C] = set()  # every open connection, active or idle
        self._closing: set[C] = set()  # handed to the caller to close; still hold their slots
        # Handed out as ``Reservation.evicted``, not yet reported shut, and the reservation each
        # shares its slot with (both ways: the caller may clear ``evicted`` once it has it). One
        # evicted for another origin still counts in its own origin (never in the total twice),
        # so that origin never opens a socket over its limit.
        self._evicted: dict[C, Reservation[C]] = {}
        self._victims: dict[Reservation[C], C] = {}
        self._arrivals = 0  # numbers queued requests in the order they came
        # Requests ready for room freed in *another* origin: every queued request whose origin is
        # under max_sockets, oldest first. Only kept when max_total_sockets is set.
        self._ready: OrderedDict[Waiter[C], None] = OrderedDict()
        self._track_ready = self._max_total != math.inf
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
        victim = self._victims.get(reservation)
        if victim is not None:
            # The caller was to close it before connecting, as a reservation requires.
            self._evicted_shut(victim)
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
        victim = self._victims.pop(reservation, None)
        if victim is None:
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
            del origin.waiters[waiter]
            self._ready.pop(waiter, None)
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
            return self._hand_over(self._next_waiter(origin), conn)
        if self._ready and self._sockets >= self._max_total:
            # Another origin waits for room under max_total_sockets: close this socket, whose
            # slot then goes to that waiter, rather than keep it idle for nobody.
            return self._drop(conn, origin, key)
        if len(origin.idle) >= self._max_free:
            return self._drop(conn, origin, key)
        origin.idle[conn] = None
        self._idle_lru[conn] = None
        if conn.idle_deadline >= self._latest_idle_deadline:
            self._latest_idle_deadline = conn.idle_deadline
        else:
            self._idle_in_deadline_order = False
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
        if self._idle_in_deadline_order:
            expired = list(takewhile(lambda conn: conn.idle_deadline <= now, self._idle_lru))
        else:
            expired = [conn for conn in self._idle_lru if conn.idle_deadline <= now]
        for conn in expired:
            self._take_out_idle(conn)
            self._closing.add(conn)
        return expired

    def next_deadline(self) -> float | None:
        """The earliest idle deadline, or None when nothing is idle.

        O(1) while idle deadlines follow the order sockets were freed in (one keep-alive time
        for all); otherwise this looks at every idle socket, and notes if they are in order again.
        """
        idle = self._idle_lru
        if not idle:
            self._idle_in_deadline_order, self._latest_idle_deadline = True, -math.inf
            return None
        if self._idle_in_deadline_order:
            return next(iter(idle)).idle_deadline
        deadlines = [conn.idle_deadline for conn in idle]
        self._latest_idle_deadline = deadlines[-1]
        self._idle_in_deadline_order = all(map(operator.le, deadlines, deadlines[1:]))
        return min(deadlines)

    def close(self) -> list[C]:
        """Refuse new requests, fail queued ones, and return every connection to close."""
        self.closed = True
        for origin in self._origins.values():
            while origin.waiters:
                self._grant(origin.waiters.popitem(last=False)[0], PoolClosedError())
        self._ready.clear()
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
        waiter: Waiter[C] = Waiter(key, fresh=fresh, arrival=self._arrivals)
        self._arrivals += 1
        origin.waiters[waiter] = None
        self._queued += 1
        if self._track_ready and origin.sockets < self._max_sockets:
            self._ready[waiter] = None
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
        self._grant(waiter, self._carrying(Reservation(waiter.key), conn))
        return []

    def _evict_for(self, victim: C, origin: _Origin[C], key: str) -> Reservation[C]:
        """Close an idle socket to make room: its slot passes straight to a new reservation,
        whose task closes it before connecting."""
        self._take_out_idle(victim)
        if victim.pool_key != key:
            # It stays counted in its own origin until it is shut; overall, the two share a slot.
            origin.sockets += 1
        return self._carrying(Reservation(key), victim)

    def _carrying(self, reservation: Reservation[C], victim: C) -> Reservation[C]:
        reservation.evicted = victim
        self._evicted[victim] = reservation
        self._victims[reservation] = victim
        return reservation

    def _evicted_shut(self, victim: C) -> None:
        """A reservation's evicted connection is shut: the reservation has their slot alone."""
        reservation = self._evicted.pop(victim)
        del self._victims[reservation]
        if victim.pool_key != reservation.key:
            self._socket_gone(self._origins[victim.pool_key], victim.pool_key)

    def _socket_gone(self, origin: _Origin[C], key: str) -> None:
        """``origin`` has one socket less, while the total is unchanged: a waiter may now go."""
        origin.sockets -= 1
        if not self.closed and origin.waiters and origin.sockets < self._max_sockets:
            if self._sockets < self._max_total:
                self._grant(self._next_waiter(origin), self._reserve(origin, key))
            elif self._idle_lru:
                # Full overall, but some origin has a socket sitting idle: close it for us.
                victim = next(iter(self._idle_lru))
                self._grant(self._next_waiter(origin), self._evict_for(victim, origin, key))
            elif self._track_ready and origin.sockets + 1 >= self._max_sockets:
                self._list_ready(origin)  # it was full: its requests may now take room overall
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
            self._grant(self._next_waiter(origin), self._reserve(origin, key))
        elif self._ready and self._sockets < self._max_total:
            # The longest-waiting request whose origin is under its own limit takes the room.
            # Queues are FIFO per origin, so it heads its origin's queue.
            waiter = next(iter(self._ready))
            taker = self._origins[waiter.key]
            self._grant(self._next_waiter(taker), self._reserve(taker, waiter.key))
            if taker.sockets >= self._max_sockets:
                self._unlist_ready(taker)
        self._forget_origin_if_unused(origin, key)

    def _next_waiter(self, origin: _Origin[C]) -> Waiter[C]:
        """Take the head of ``origin``'s queue."""
        waiter = origin.waiters.popitem(last=False)[0]
        if self._track_ready:
            self._ready.pop(waiter, None)
        return waiter

    def _unlist_ready(self, origin: _Origin[C]) -> None:
        """``origin`` reached ``max_sockets``: room freed elsewhere is not for its requests."""
        ready = self._ready
        for waiter in origin.waiters:
            del ready[waiter]

    def _list_ready(self, origin: _Origin[C]) -> None:
        """``origin`` is under ``max_sockets`` again: its requests may take room freed elsewhere.

        Costs O(queued requests) unless they are all newer than the ones listed already; it only
        happens when an origin loses a socket while the total stays full (one evicted from it
        shut, or its reservation that evicted one given up), never as requests come and go.
        """
        ready = self._ready
        if ready and next(iter(origin.waiters)).arrival < next(reversed(ready)).arrival:
            merged = heapq.merge(ready, origin.waiters, key=lambda waiter: waiter.arrival)
            self._ready = OrderedDict.fromkeys(merged)
        else:
            ready.update(dict.fromkeys(origin.waiters))

    def _forget_origin_if_unused(self, origin: _Origin[C], key: str) -> None:
        if not origin.sockets and not origin.waiters and self._origins.get(key) is origin:
            del self._origins[key]
