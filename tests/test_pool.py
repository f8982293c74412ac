"""The pool's decisions, without sockets: who gets which connection, who waits, what closes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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
    assert pool.sockets == 1
    assert "a" not in pool.origin_counts()


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


def test_fresh_acquire_skips_idle_and_evicts_at_the_limit() -> None:
    pool: Pool[FakeConn] = Pool(max_sockets=1)
    conn = connect(pool, "a")
    pool.release(conn, reusable=True)
    granted = pool.acquire("a", fresh=True)
    assert isinstance(granted, Reservation) and granted.evicted is conn
    assert pool.origin_counts() == {"a": (1, 0, 0)}


def test_expire_takes_out_only_expired_idle() -> None:
    pool: Pool[FakeConn] = Pool()
    old, new = connect(pool, "a", "old"), connect(pool, "a", "new")
    old.idle_deadline, new.idle_deadline = 10.0, 20.0
    pool.release(old, reusable=True)
    pool.release(new, reusable=True)
    assert pool.next_deadline() == 10.0
    assert pool.expire(15.0) == [old]
    assert pool.acquire("a") is new


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
    """Random interleavings of every pool operation keep the books straight and the limits."""

    def __init__(self) -> None:
        super().__init__()
        self.pool: Pool[FakeConn] = Pool(max_sockets=2, max_total_sockets=3, max_free_sockets=1)
        self.active: list[FakeConn] = []
        self.reservations: list[Reservation[FakeConn]] = []
        self.waiters: list[Waiter[FakeConn]] = []
        self.closing: list[FakeConn] = []
        self.open: set[FakeConn] = set()

    def _take(self, granted: Any) -> None:
        if isinstance(granted, Waiter):
            self.waiters.append(granted)
        elif isinstance(granted, Reservation):
            if granted.evicted is not None:
                self.open.discard(granted.evicted)
            self.reservations.append(granted)
        else:
            self.active.append(granted)

    def _to_close(self, conns: list[FakeConn]) -> None:
        self.closing.extend(conns)
        for conn in conns:
            self.open.discard(conn)

    def _collect_grants(self) -> None:
        for waiter in [w for w in self.waiters if w.grant is not None]:
            self.waiters.remove(waiter)
            self._take(waiter.grant)

    @rule(key=st.sampled_from("abc"), fresh=st.booleans())
    def acquire(self, key: str, fresh: bool) -> None:
        self._take(self.pool.acquire(key, fresh=fresh))

    @precondition(lambda self: self.reservations)
    @rule(data=st.data(), succeed=st.booleans())
    def finish_connect(self, data: st.DataObject, succeed: bool) -> None:
        reservation = data.draw(st.sampled_from(self.reservations))
        self.reservations.remove(reservation)
        if succeed:
            conn = FakeConn(reservation.key)
            assert self.pool.connected(reservation, conn)
            self.active.append(conn)
            self.open.add(conn)
        else:
            self._to_close(self.pool.connect_failed(reservation))
        self._collect_grants()

    @precondition(lambda self: self.active)
    @rule(data=st.data(), reusable=st.booleans())
    def release(self, data: st.DataObject, reusable: bool) -> None:
        conn = data.draw(st.sampled_from(self.active))
        self.active.remove(conn)
        self._to_close(self.pool.release(conn, reusable=reusable))
        self._collect_grants()

    @precondition(lambda self: self.closing)
    @rule(data=st.data())
    def close_done(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(self.closing))
        self.closing.remove(conn)
        self.pool.close_done(conn)
        self._collect_grants()

    @precondition(lambda self: self.waiters)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        waiter = data.draw(st.sampled_from(self.waiters))
        self.waiters.remove(waiter)
        self._to_close(self.pool.cancel(waiter))
        self._collect_grants()

    @invariant()
    def limits_hold(self) -> None:
        counts = self.pool.origin_counts()
        for key, (active, idle, _) in counts.items():
            assert active + idle <= 2, (key, counts)
            assert idle <= 1
        assert self.pool.sockets <= 3
        assert self.pool.sockets == sum(a + i for a, i, _ in counts.values())

    @invariant()
    def books_match_the_world(self) -> None:
        counts = self.pool.origin_counts()
        held = len(self.active) + len(self.reservations) + len(self.closing)
        # Connections handed over for closing still hold slots; so do idle ones.
        assert self.pool.sockets == held + self.pool.idle
        assert self.pool.queued == len(self.waiters) == sum(q for _, _, q in counts.values())

    @invariant()
    def nobody_waits_while_room_is_free(self) -> None:
        for key, (active, idle, queued) in self.pool.origin_counts().items():
            if queued:
                assert idle == 0, key
                assert active >= 2 or self.pool.sockets >= 3, key


PoolMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_pool_state_machine = PoolMachine.TestCase
