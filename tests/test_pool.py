"""The pool's decisions, without sockets: who gets which connection, who waits, what closes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from starlette_agent._pool import Pool, PoolClosedError, Reservation, Waiter


class FakeConn:
    def __init__(self, key: str, name: str = "") -> None:
        self.pool_key = key
        self.idle_deadline = math.inf
        self.name = name

    def __repr__(self) -> str:
        return f"<FakeConn {self.pool_key} {self.name}>"


def connect(pool: Pool[FakeConn], key: str, name: str = "") -> FakeConn:
    """Acquire a reservation for ``key`` and turn it into a connection."""
    granted = pool.acquire(key)
    assert isinstance(granted, Reservation), granted
    conn = FakeConn(key, name)
    assert pool.connected(granted, conn)
    return conn


def close_all(pool: Pool[FakeConn], conns: list[FakeConn]) -> None:
    for conn in conns:
        pool.close_done(conn)


def test_idle_connection_is_reused() -> None:
    pool: Pool[FakeConn] = Pool()
    conn = connect(pool, "a")
    assert pool.release(conn, reusable=True) == []
    assert pool.acquire("a") is conn
    assert pool.origin_counts() == {"a": (1, 0, 0)}


def test_lifo_reuses_the_most_recently_freed() -> None:
    pool: Pool[FakeConn] = Pool(scheduling="lifo")
    first, second = connect(pool, "a", "1"), connect(pool, "a", "2")
    pool.release(first, reusable=True)
    pool.release(second, reusable=True)
    assert pool.acquire("a") is second


def test_fifo_reuses_the_longest_idle() -> None:
    pool: Pool[FakeConn] = Pool(scheduling="fifo")
    first, second = connect(pool, "a", "1"), connect(pool, "a", "2")
    pool.release(first, reusable=True)
    pool.release(second, reusable=True)
    assert pool.acquire("a") is first


def test_max_sockets_queues_and_hands_over_on_release() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    waiter = pool.acquire("a")
    assert isinstance(waiter, Waiter)
    woken: list[bool] = []
    waiter.wake = lambda: woken.append(True)
    assert pool.origin_counts() == {"a": (1, 0, 1)}
    assert pool.release(conn, reusable=True) == []
    assert waiter.grant is conn and woken == [True]
    assert pool.queued == 0


def test_not_reusable_release_frees_the_slot_only_once_closed() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    waiter = pool.acquire("a")
    assert isinstance(waiter, Waiter)
    assert pool.release(conn, reusable=False) == [conn]
    assert waiter.grant is None, "a new socket must wait until the old one is shut"
    pool.close_done(conn)
    assert isinstance(waiter.grant, Reservation)
    assert pool.origin_counts() == {"a": (1, 0, 0)}


def test_connect_failure_passes_the_slot_on() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    reservation = pool.acquire("a")
    assert isinstance(reservation, Reservation)
    waiter = pool.acquire("a")
    assert isinstance(waiter, Waiter)
    assert pool.connect_failed(reservation) == []
    assert isinstance(waiter.grant, Reservation)


def test_cancelled_waiter_leaves_the_queue() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    waiter = pool.acquire("a")
    assert isinstance(waiter, Waiter)
    assert pool.cancel(waiter) == []
    assert pool.queued == 0
    assert pool.release(conn, reusable=True) == []
    assert pool.idle == 1


def test_cancelled_waiter_hands_on_a_connection_granted_meanwhile() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    first, second = pool.acquire("a"), pool.acquire("a")
    assert isinstance(first, Waiter) and isinstance(second, Waiter)
    pool.release(conn, reusable=True)
    assert first.grant is conn
    pool.cancel(first)  # cancelled after the grant, before it woke
    assert second.grant is conn
    assert pool.queued == 0


def test_max_free_sockets_closes_the_extra_idle() -> None:
    pool: Pool[FakeConn] = Pool(max_free_sockets=1)
    a, b = connect(pool, "a"), connect(pool, "a")
    assert pool.release(a, reusable=True) == []
    assert pool.release(b, reusable=True) == [b]
    close_all(pool, [b])
    assert pool.origin_counts() == {"a": (0, 1, 0)}


def test_max_total_sockets_evicts_another_origins_idle_socket() -> None:
    pool: Pool[FakeConn] = Pool(max_total_sockets=1)
    a = connect(pool, "a")
    pool.release(a, reusable=True)
    granted = pool.acquire("b")
    assert isinstance(granted, Reservation) and granted.evicted is a
    # Until it is shut, a still counts for its origin; the two share the one slot overall.
    assert pool.sockets == 1
    assert pool.origin_counts() == {"a": (1, 0, 0), "b": (1, 0, 0)}
    pool.close_done(a)
    assert pool.origin_counts() == {"b": (1, 0, 0)}


def test_an_origin_opens_no_socket_while_its_evicted_one_is_still_open() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1, max_total_sockets=2)
    a, c = connect(pool, "a"), connect(pool, "c")
    pool.release(a, reusable=True)
    granted = pool.acquire("b")
    assert isinstance(granted, Reservation) and granted.evicted is a
    waiter = pool.acquire("a")
    assert isinstance(waiter, Waiter)
    close_all(pool, pool.release(c, reusable=False))
    assert waiter.grant is None, "a is still open: a second socket would exceed max_sockets"
    pool.close_done(a)
    assert isinstance(waiter.grant, Reservation)
    assert pool.origin_counts() == {"a": (1, 0, 0), "b": (1, 0, 0)}


def test_max_total_sockets_gives_released_room_to_another_origin() -> None:
    pool: Pool[FakeConn] = Pool(max_total_sockets=1)
    a = connect(pool, "a")
    waiter = pool.acquire("b")
    assert isinstance(waiter, Waiter)
    # "a" has nobody waiting, but "b" waits for room overall: a is closed, not kept idle.
    assert pool.release(a, reusable=True) == [a]
    pool.close_done(a)
    assert isinstance(waiter.grant, Reservation) and waiter.grant.key == "b"


def test_total_queue_skips_origins_at_their_own_limit() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1, max_total_sockets=2)
    a, b = connect(pool, "a"), connect(pool, "b")
    wait_a, wait_c = pool.acquire("a"), pool.acquire("c")
    assert isinstance(wait_a, Waiter) and isinstance(wait_c, Waiter)
    assert pool.release(b, reusable=False) == [b]
    pool.close_done(b)
    assert wait_a.grant is None  # "a" is still at max_sockets
    assert isinstance(wait_c.grant, Reservation)
    pool.release(a, reusable=True)
    assert wait_a.grant is a


def test_an_origin_with_room_again_does_not_wait_behind_an_idle_socket() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1, max_total_sockets=2)
    a, x = connect(pool, "a"), connect(pool, "x")
    pool.release(a, reusable=True)
    granted = pool.acquire("b")
    assert isinstance(granted, Reservation) and granted.evicted is a
    waiter = pool.acquire("a")  # "a" is at its limit until its evicted socket is shut
    assert isinstance(waiter, Waiter)
    assert pool.release(x, reusable=True) == []  # nobody else could use its slot
    pool.close_done(a)
    assert isinstance(waiter.grant, Reservation) and waiter.grant.evicted is x
    assert pool.idle == 0 and pool.queued == 0


def test_room_overall_goes_to_requests_in_order_of_arrival_across_origins() -> None:
    pool: Pool[FakeConn] = Pool(max_total_sockets=5)
    held = [connect(pool, "x") for _ in range(5)]
    arrivals = [pool.acquire(key) for key in ["b", "d", "b", "b", "d"]]
    served: list[Any] = []
    for conn in held:
        close_all(pool, pool.release(conn, reusable=False))
        served += [w for w in arrivals if w.grant is not None and w not in served]
    assert served == arrivals
    assert all(isinstance(w, Waiter) and isinstance(w.grant, Reservation) for w in served)


def test_an_origin_that_reaches_its_limit_stops_waiting_for_room_overall() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1, max_total_sockets=2)
    a, c = connect(pool, "a"), connect(pool, "c")
    first, second = pool.acquire("b"), pool.acquire("b")
    assert isinstance(first, Waiter) and isinstance(second, Waiter)
    close_all(pool, pool.release(a, reusable=False))
    assert isinstance(first.grant, Reservation) and second.grant is None
    # "b" is at its own limit now: nobody else can use c's slot, so c stays idle.
    assert pool.release(c, reusable=True) == []
    assert pool.origin_counts() == {"b": (1, 0, 1), "c": (0, 1, 0)}


def test_freed_room_goes_to_its_own_origin_first() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=2, max_total_sockets=3)
    a1, a2, c = connect(pool, "a"), connect(pool, "a"), connect(pool, "c")
    first_b, first_a, second_b = pool.acquire("b"), pool.acquire("a"), pool.acquire("b")
    assert isinstance(first_b, Waiter) and isinstance(first_a, Waiter)
    assert isinstance(second_b, Waiter)
    # "c" has nobody waiting, "b" waits for room overall: c is closed, not kept idle.
    close_all(pool, pool.release(c, reusable=True))
    assert isinstance(first_b.grant, Reservation) and first_a.grant is second_b.grant is None
    close_all(pool, pool.release(a1, reusable=False))
    assert isinstance(first_a.grant, Reservation) and second_b.grant is None
    close_all(pool, pool.release(a2, reusable=False))
    assert isinstance(second_b.grant, Reservation)


def test_an_origin_with_room_again_queues_for_room_overall_by_arrival() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1, max_total_sockets=2)
    a, c = connect(pool, "a"), connect(pool, "c")
    pool.release(a, reusable=True)
    granted = pool.acquire("b")
    assert isinstance(granted, Reservation) and granted.evicted is a
    older, newer = pool.acquire("a"), pool.acquire("d")  # "a" waits behind its evicted socket
    assert isinstance(older, Waiter) and isinstance(newer, Waiter)
    pool.close_done(a)  # "a" has room again, but nothing is free overall
    assert older.grant is None and newer.grant is None
    close_all(pool, pool.release(c, reusable=False))
    assert isinstance(older.grant, Reservation) and newer.grant is None


def test_fresh_acquire_skips_idle_and_evicts_at_the_limit() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    pool.release(conn, reusable=True)
    granted = pool.acquire("a", fresh=True)
    assert isinstance(granted, Reservation) and granted.evicted is conn
    assert pool.origin_counts() == {"a": (1, 0, 0)}


def test_cancelled_retry_hands_back_the_socket_it_was_to_replace() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    retry, later = pool.acquire("a", fresh=True), pool.acquire("a")
    assert isinstance(retry, Waiter) and isinstance(later, Waiter)
    assert pool.release(conn, reusable=True) == []
    assert isinstance(retry.grant, Reservation) and retry.grant.evicted is conn
    # Cancelled after the grant, before it woke and closed the old socket.
    assert pool.cancel(retry) == [conn]
    assert later.grant is None, "a new socket must wait until the old one is shut"
    assert pool.origin_counts() == {"a": (1, 0, 1)}
    pool.close_done(conn)
    assert isinstance(later.grant, Reservation) and later.grant.evicted is None
    assert pool.origin_counts() == {"a": (1, 0, 0)}


def test_failed_connect_hands_back_an_evicted_socket_not_yet_shut() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    pool.release(conn, reusable=True)
    reservation = pool.acquire("a", fresh=True)
    assert isinstance(reservation, Reservation) and reservation.evicted is conn
    assert pool.connect_failed(reservation) == [conn]
    assert pool.origin_counts() == {"a": (1, 0, 0)}
    pool.close_done(conn)
    assert pool.origin_counts() == {}


def test_failed_connect_hands_back_the_evicted_socket_even_once_taken_off_the_reservation() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    pool.release(conn, reusable=True)
    reservation = pool.acquire("a", fresh=True)
    assert isinstance(reservation, Reservation) and reservation.evicted is conn
    reservation.evicted = None  # the caller took it to close, and was cancelled before it did
    assert pool.connect_failed(reservation) == [conn]
    assert pool.origin_counts() == {"a": (1, 0, 0)}
    pool.close_done(conn)
    assert pool.origin_counts() == {}


def test_failed_connect_after_closing_the_evicted_socket_frees_the_slot() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    pool.release(conn, reusable=True)
    reservation = pool.acquire("a", fresh=True)
    assert isinstance(reservation, Reservation) and reservation.evicted is conn
    pool.close_done(conn)  # closed before connecting, as the agent does
    assert pool.connect_failed(reservation) == []
    assert pool.origin_counts() == {}


def test_failed_connect_gives_another_origins_evicted_socket_back_its_own_slot() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1, max_total_sockets=1)
    a = connect(pool, "a")
    pool.release(a, reusable=True)
    reservation = pool.acquire("b")
    assert isinstance(reservation, Reservation) and reservation.evicted is a
    waiter = pool.acquire("b")
    assert isinstance(waiter, Waiter)
    assert pool.connect_failed(reservation) == [a]
    # a holds the only slot overall until it is shut; "b" has room of its own again.
    assert pool.origin_counts() == {"a": (1, 0, 0), "b": (0, 0, 1)}
    assert pool.sockets == 1 and waiter.grant is None
    pool.close_done(a)
    assert isinstance(waiter.grant, Reservation)
    assert pool.origin_counts() == {"b": (1, 0, 0)}


def test_failed_connect_gives_its_origins_room_to_a_waiter_when_room_is_left_overall() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=2, max_total_sockets=3)
    connect(pool, "b")
    a_idle, a_busy = connect(pool, "a", "idle"), connect(pool, "a", "busy")
    pool.release(a_idle, reusable=True)
    reservation = pool.acquire("b")
    assert isinstance(reservation, Reservation) and reservation.evicted is a_idle
    waiter = pool.acquire("b")
    assert isinstance(waiter, Waiter)
    close_all(pool, pool.release(a_busy, reusable=False))
    assert waiter.grant is None and pool.sockets == 2  # "b" is at its own limit
    assert pool.connect_failed(reservation) == [a_idle]
    assert isinstance(waiter.grant, Reservation)
    assert pool.origin_counts() == {"a": (1, 0, 0), "b": (2, 0, 0)}


def test_expire_takes_out_only_expired_idle() -> None:
    pool: Pool[FakeConn] = Pool()
    old, new = connect(pool, "a", "old"), connect(pool, "a", "new")
    old.idle_deadline, new.idle_deadline = 10.0, 20.0
    pool.release(old, reusable=True)
    pool.release(new, reusable=True)
    assert pool.next_deadline() == 10.0
    assert pool.expire(15.0) == [old]
    assert pool.acquire("a") is new


def test_expire_finds_deadlines_out_of_the_order_sockets_were_freed_in() -> None:
    pool: Pool[FakeConn] = Pool()
    long, short, last = connect(pool, "a", "long"), connect(pool, "b", "short"), connect(pool, "a")
    long.idle_deadline, short.idle_deadline, last.idle_deadline = 30.0, 10.0, 40.0
    for conn in (long, short, last):
        pool.release(conn, reusable=True)
    assert pool.next_deadline() == 10.0
    assert pool.expire(15.0) == [short]
    assert pool.next_deadline() == 30.0
    assert pool.expire(35.0) == [long]
    assert pool.next_deadline() == 40.0


def test_close_fails_waiters_and_returns_every_connection() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    waiter = pool.acquire("a")
    assert isinstance(waiter, Waiter)
    assert pool.close() == [conn]
    assert isinstance(waiter.grant, PoolClosedError)
    with pytest.raises(PoolClosedError):
        pool.acquire("a")
    assert pool.release(conn, reusable=True) == [conn]
    assert pool.origin_counts() == {}


def test_empty_origins_are_forgotten() -> None:
    pool: Pool[FakeConn] = Pool(max_free_sockets=0)
    for index in range(100):
        conn = connect(pool, f"origin-{index}")
        close_all(pool, pool.release(conn, reusable=True))
    assert pool.origin_counts() == {}


class PoolMachine(RuleBasedStateMachine):
    """Random interleavings of every pool operation keep the books straight and the limits.

    The machine plays the agent: it holds what the pool hands out (connections in use,
    reservations and the sockets they must close first, queued requests and what was granted to
    them before they woke, sockets to close) and checks after every step that the pool's counts
    are what it holds, and that every connection ever made is accounted for: held, idle in the
    pool, or handed back for closing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.options: dict[str, Any] = {}
        self.pool: Pool[FakeConn] = Pool()
        self.max_sockets = self.max_total = math.inf
        self.max_free = 0
        self.made: list[FakeConn] = []
        self.made_before_start = 0
        self.active: list[FakeConn] = []
        self.idle: dict[FakeConn, None] = {}
        self.reservations: list[Reservation[FakeConn]] = []
        self.evicted: set[FakeConn] = set()  # carried by a reservation and not closed yet
        self.waiters: list[Waiter[FakeConn]] = []  # oldest first, with granted ones not woken
        self.granted: set[FakeConn] = set()  # granted to waiters that have not woken yet
        self.closing: list[FakeConn] = []  # handed back to close, close_done not yet reported
        self.shut: set[FakeConn] = set()
        self.closed = False

    @initialize(
        max_sockets=st.sampled_from([1, 2, None]),
        max_total=st.sampled_from([1, 2, 2, 3, None]),
        max_free=st.sampled_from([0, 1, 1, 2]),
        scheduling=st.sampled_from(["lifo", "fifo"]),
    )
    def configure(
        self, max_sockets: int | None, max_total: int | None, max_free: int, scheduling: Any
    ) -> None:
        self.options = {
            "max_sockets": max_sockets,
            "max_total_sockets": max_total,
            "max_free_sockets": max_free,
            "scheduling": scheduling,
        }
        self.pool = Pool(**self.options)
        self.max_sockets = math.inf if max_sockets is None else max_sockets
        self.max_total = math.inf if max_total is None else max_total
        self.max_free = max_free

    # -- the agent's side of each pool call ------------------------------------------------------

    def _after(self, returned: list[FakeConn], released: FakeConn | None = None) -> None:
        """Take what a call handed back to close, and see what it granted to waiters.

        ``released`` is the connection the call gave back to the pool: a waiter gets it, or it
        is idle now, or it is among ``returned``.
        """
        self.closing.extend(returned)
        passed_on = False
        for waiter in self.waiters:
            grant = waiter.grant
            if isinstance(grant, FakeConn) and grant not in self.granted:
                assert grant is released, (grant, released)
                self.granted.add(grant)
                passed_on = True
            elif isinstance(grant, Reservation) and grant.evicted is not None:
                victim = grant.evicted
                if victim not in self.evicted and victim not in self.shut:
                    if victim is released:
                        passed_on = True  # a retry gets the slot of the socket it won't reuse
                    else:
                        assert victim in self.idle, "only an idle socket is evicted"
                        del self.idle[victim]
                    self.evicted.add(victim)
        if released is not None and released not in returned and not passed_on:
            assert not self.closed
            self.idle[released] = None

    def do_acquire(self, key: str, fresh: bool) -> None:
        granted = self.pool.acquire(key, fresh=fresh)
        if isinstance(granted, Waiter):
            self.waiters.append(granted)
            return
        if isinstance(granted, FakeConn):
            assert not fresh, "a retry never reuses a socket"
            assert granted in self.idle
            del self.idle[granted]
            self.active.append(granted)
            return
        if granted.evicted is not None:
            assert granted.evicted in self.idle, "only an idle socket is evicted"
            del self.idle[granted.evicted]
            self.evicted.add(granted.evicted)
        self.reservations.append(granted)

    def do_close_evicted(self, reservation: Reservation[FakeConn]) -> None:
        """Close the socket a reservation replaces, before connecting, as the agent does."""
        victim = reservation.evicted
        assert victim is not None
        self.evicted.discard(victim)
        self.shut.add(victim)
        self.pool.close_done(victim)
        self._after([])

    def do_connect(self, reservation: Reservation[FakeConn]) -> None:
        assert reservation.evicted not in self.evicted
        self.reservations.remove(reservation)
        conn = FakeConn(reservation.key, str(len(self.made)))
        self.made.append(conn)
        if self.pool.connected(reservation, conn):
            self.active.append(conn)
        else:
            assert self.closed
            self.shut.add(conn)
        self._after([])

    def do_connect_failed(self, reservation: Reservation[FakeConn]) -> None:
        self.reservations.remove(reservation)
        victim = reservation.evicted
        returned = self.pool.connect_failed(reservation)
        if victim in self.evicted:
            assert returned == [victim], "the socket a reservation was to close must be closed"
            self.evicted.discard(victim)
        else:
            assert returned == []
        self._after(returned)

    def do_release(self, conn: FakeConn, reusable: bool, deadline: float) -> None:
        self.active.remove(conn)
        conn.idle_deadline = deadline
        self._after(self.pool.release(conn, reusable=reusable), released=conn)

    def do_discard(self, conn: FakeConn) -> None:
        self.active.remove(conn)
        returned = self.pool.discard(conn)
        assert returned == [conn]
        self._after(returned)

    def do_close_done(self, conn: FakeConn) -> None:
        self.closing.remove(conn)
        if conn not in self.closing:
            self.shut.add(conn)
        self.pool.close_done(conn)
        self._after([])

    def do_cancel(self, waiter: Waiter[FakeConn]) -> None:
        self.waiters.remove(waiter)
        grant = waiter.grant
        returned = self.pool.cancel(waiter)
        if isinstance(grant, FakeConn):
            self.granted.discard(grant)
            self._after(returned, released=grant)
            return
        if isinstance(grant, Reservation) and grant.evicted is not None:
            assert returned == [grant.evicted], "a cancelled retry must hand back its socket"
            self.evicted.discard(grant.evicted)
        else:
            assert returned == []
        self._after(returned)

    def do_wake(self, waiter: Waiter[FakeConn]) -> None:
        earlier = self.waiters[: self.waiters.index(waiter)]
        assert not [w for w in earlier if w.key == waiter.key and w.grant is None], "FIFO"
        self.waiters.remove(waiter)
        grant = waiter.grant
        if isinstance(grant, FakeConn):
            self.granted.discard(grant)
            self.active.append(grant)
        elif isinstance(grant, Reservation):
            self.reservations.append(grant)
        else:
            assert self.closed and isinstance(grant, PoolClosedError)

    def _unfinished(self) -> list[tuple[str, Any]]:
        """Everything the agent still has to carry out, as (action, what) pairs."""
        steps: list[tuple[str, Any]] = [("cancel", w) for w in self.waiters]
        steps += [("wake", w) for w in self.waiters if w.grant is not None]
        for reservation in self.reservations:
            steps.append(("connect_failed", reservation))
            if reservation.evicted in self.evicted:
                steps.append(("close_evicted", reservation))
            else:
                steps.append(("connect", reservation))
        steps += [("release", c) for c in self.active] + [("discard", c) for c in self.active]
        steps += [("close_done", c) for c in self.closing]
        return steps

    # -- rules ---------------------------------------------------------------------------------

    # A few requests at a time, so that they get served rather than pile up.
    @precondition(lambda self: len(self.waiters) + len(self.reservations) + len(self.active) < 6)
    @rule(key=st.sampled_from("abc"), fresh=st.booleans())
    def acquire(self, key: str, fresh: bool) -> None:
        self.do_acquire(key, fresh)

    @precondition(lambda self: self.idle and self.pool.sockets >= self.max_total)
    @rule(data=st.data())
    def acquire_for_another_origin(self, data: st.DataObject) -> None:
        """Full overall, with a socket idle: another origin's request may evict it."""
        idle_key = data.draw(st.sampled_from(sorted({c.pool_key for c in self.idle})))
        self.do_acquire(data.draw(st.sampled_from([k for k in "abc" if k != idle_key])), False)

    @precondition(lambda self: self.active and len(self.waiters) < 4)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        """A reused socket failed before the response: drop it, ask for a new one."""
        conn = data.draw(st.sampled_from(self.active))
        self.do_discard(conn)
        self.do_acquire(conn.pool_key, fresh=True)

    @precondition(lambda self: any(r.evicted in self.evicted for r in self.reservations))
    @rule(data=st.data())
    def close_evicted(self, data: st.DataObject) -> None:
        held = [r for r in self.reservations if r.evicted in self.evicted]
        self.do_close_evicted(data.draw(st.sampled_from(held)))

    @precondition(lambda self: self.reservations)
    @rule(data=st.data(), succeed=st.sampled_from([True, True, False]))
    def finish_connect(self, data: st.DataObject, succeed: bool) -> None:
        ready = [r for r in self.reservations if r.evicted not in self.evicted]
        if succeed and ready:
            self.do_connect(data.draw(st.sampled_from(ready)))
        else:
            self.do_connect_failed(data.draw(st.sampled_from(self.reservations)))

    @precondition(lambda self: self.active)
    @rule(
        data=st.data(),
        how=st.sampled_from(["keep", "keep", "close", "discard"]),
        deadline=st.sampled_from([5.0, 10.0, math.inf]),
    )
    def release(self, data: st.DataObject, how: str, deadline: float) -> None:
        conn = data.draw(st.sampled_from(self.active))
        if how == "discard":
            self.do_discard(conn)
        else:
            self.do_release(conn, reusable=how == "keep", deadline=deadline)

    @precondition(lambda self: self.closing)
    @rule(data=st.data())
    def close_done(self, data: st.DataObject) -> None:
        self.do_close_done(data.draw(st.sampled_from(self.closing)))

    @precondition(lambda self: self.waiters)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        # Mostly the ones granted something before they woke: those have something to hand on.
        granted = [w for w in self.waiters if w.grant is not None]
        self.do_cancel(data.draw(st.sampled_from(self.waiters + 3 * granted)))

    @precondition(lambda self: any(w.grant is not None for w in self.waiters))
    @rule(data=st.data())
    def wake(self, data: st.DataObject) -> None:
        self.do_wake(data.draw(st.sampled_from([w for w in self.waiters if w.grant is not None])))

    @precondition(lambda self: self.idle)
    @rule(now=st.sampled_from([0.0, 7.0, 20.0]))
    def expire(self, now: float) -> None:
        expected = {conn for conn in self.idle if conn.idle_deadline <= now}
        returned = self.pool.expire(now)
        assert set(returned) == expected and len(returned) == len(expected)
        for conn in returned:
            del self.idle[conn]
        self._after(returned)

    # Not before a few connections were made, so that most runs get far before it.
    @precondition(lambda self: len(self.made) >= self.made_before_start + 6)
    @rule(data=st.data())
    def close_and_start_over(self, data: st.DataObject) -> None:
        """Close the pool; the agent carries out what it still held, in any order."""
        self.closed = True
        returned = self.pool.close()
        open_ = set(self.active) | set(self.idle) | self.granted
        assert set(returned) == open_ and len(returned) == len(open_)
        # Sockets in use stay with their tasks, which hand them back later; idle ones are shut.
        self.shut.update(self.idle)
        self.idle.clear()
        self._after([])
        with pytest.raises(PoolClosedError):
            self.pool.acquire("a")
        while steps := self._unfinished():
            self.counts_match_what_the_agent_holds()
            self.nothing_is_lost()
            action, what = data.draw(st.sampled_from(steps))
            if action == "release":
                self.do_release(what, reusable=True, deadline=math.inf)
            else:
                getattr(self, f"do_{action}")(what)
        assert self.shut == set(self.made), "every socket is closed"
        assert self.pool.origin_counts() == {} and self.pool.sockets == 0
        self.pool = Pool(**self.options)
        self.closed = False
        self.made_before_start = len(self.made)

    # -- invariants ----------------------------------------------------------------------------

    def _evicted_elsewhere(self) -> list[FakeConn]:
        """Sockets still open that were evicted to make room for another origin's."""
        reservations = self.reservations + [
            w.grant for w in self.waiters if isinstance(w.grant, Reservation)
        ]
        return [
            r.evicted
            for r in reservations
            if r.evicted in self.evicted and r.evicted.pool_key != r.key
        ]

    def _expected_counts(self) -> dict[str, tuple[int, int, int]]:
        held = [r.key for r in self.reservations]
        held += [w.grant.key for w in self.waiters if isinstance(w.grant, Reservation)]
        # An evicted socket still counts in its own origin (sharing the slot overall with its
        # reservation); one evicted within its own origin shares the reservation's slot there.
        held += [c.pool_key for c in self._evicted_elsewhere()]
        if not self.closed:
            # Closing sockets keep their slots.
            held += [c.pool_key for c in [*self.active, *self.granted, *self.closing]]
        counts = {}
        for key in "abc":
            queued = sum(1 for w in self.waiters if w.key == key and w.grant is None)
            idle = sum(1 for c in self.idle if c.pool_key == key)
            active = held.count(key)
            if active or idle or queued:
                counts[key] = (active, idle, queued)
        return counts

    @invariant()
    def counts_match_what_the_agent_holds(self) -> None:
        counts = self.pool.origin_counts()
        assert counts == self._expected_counts()
        shared = len(self._evicted_elsewhere())
        assert self.pool.sockets == sum(a + i for a, i, _ in counts.values()) - shared
        assert self.pool.idle == len(self.idle)
        assert self.pool.queued == sum(q for _, _, q in counts.values())
        deadlines = [conn.idle_deadline for conn in self.idle]
        assert self.pool.next_deadline() == (min(deadlines) if deadlines else None)

    @invariant()
    def nothing_is_lost(self) -> None:
        places: list[set[FakeConn]] = [
            set(self.active),
            set(self.idle),
            self.granted,
            self.evicted,
            set(self.closing),
            self.shut - set(self.closing),
        ]
        assert sum(len(place) for place in places) == len(self.made)
        assert set().union(*places) == set(self.made)

    @invariant()
    def limits_hold(self) -> None:
        for key, (active, idle, _) in self.pool.origin_counts().items():
            assert active + idle <= self.max_sockets, key
            assert idle <= self.max_free, key
        assert self.pool.sockets <= self.max_total

    @invariant()
    def nobody_waits_while_room_is_free(self) -> None:
        for key, (active, idle, queued) in self.pool.origin_counts().items():
            if queued:
                assert idle == 0, key
                assert active >= self.max_sockets or self.pool.sockets >= self.max_total, key
                # Nor behind another origin's idle socket, which could make room for it.
                assert active >= self.max_sockets or self.pool.idle == 0, key


PoolMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_pool_state_machine = PoolMachine.TestCase
