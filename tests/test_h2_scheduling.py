"""The HTTP/2 stream scheduling policy on its own, without sockets or threads:
a stand-in worker records what would go to the pool."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from h2serve.connection.common import SQUEEZED_WAIT_S
from h2serve.connection.h2_scheduling import StreamScheduler
from h2serve.connection.peer_shares import PeerShares


class _Pool:
    size = 4

    def __init__(self) -> None:
        self.jobs: list = []
        self.lent = 0

    def submit(self, fn, *args) -> None:
        self.jobs.append(args[0])

    @contextlib.contextmanager
    def lend_slot(self):
        self.lent += 1
        try:
            yield
        finally:
            self.lent -= 1


class _Worker:
    """The worker as the scheduler sees it: a pool and the real per-address counts."""

    def __init__(self) -> None:
        self.pool = _Pool()
        self.shares = PeerShares(cap=2)


@dataclass
class _Stream:
    ended: bool = True
    in_pool: bool = False
    squeezed_at: float = 0.0
    squeezed_total: int = 0


def _ready(sched: StreamScheduler, count: int, ended: bool = True) -> list[_Stream]:
    streams = [_Stream(ended=ended) for _ in range(count)]
    sched.ready.extend(streams)
    return streams


def test_a_connection_that_stalls_nothing_gets_every_thread() -> None:
    worker = _Worker()
    sched = StreamScheduler(worker, "10.0.0.1")
    _ready(sched, 6)
    sched.submit_ready(False, lambda: 0, print)
    assert len(worker.pool.jobs) == 4 and sched.in_pool == 4 and len(sched.ready) == 2
    assert worker.shares.in_pool == {"10.0.0.1": 4}


def test_a_stalled_connection_gets_its_share_counting_its_other_connections() -> None:
    worker = _Worker()
    other = StreamScheduler(worker, "10.0.0.1")
    _ready(other, 1)
    other.submit_ready(False, lambda: 0, print)
    sched = StreamScheduler(worker, "10.0.0.1")
    _ready(sched, 5)
    sched.submit_ready(True, lambda: 0, print)
    assert sched.in_pool == 1          # blocked_cap 2, one taken on the other connection
    assert sched.share(True) == 1 and sched.share(False) == 4
    # Another address is not counted.
    stranger = StreamScheduler(worker, "10.0.0.2")
    assert stranger.share(True) == 2


def test_streams_whose_body_is_arriving_start_at_most_blocked_cap() -> None:
    worker = _Worker()
    sched = StreamScheduler(worker, "10.0.0.1")
    arriving = _ready(sched, 4, ended=False)
    sched.submit_ready(False, lambda: sum(s.in_pool and not s.ended for s in arriving), print)
    assert sched.in_pool == 2 and len(sched.ready) == 2
    # One finishes: the next may start.
    assert sched.release(arriving[0])
    sched.submit_ready(False, lambda: sum(s.in_pool and not s.ended for s in arriving), print)
    assert sched.in_pool == 2 and len(sched.ready) == 1
    assert not sched.release(_Stream())   # never in the pool: nothing to give back


def test_a_wait_past_the_share_is_squeezed_until_the_socket_moves() -> None:
    worker = _Worker()
    sched = StreamScheduler(worker, "10.0.0.1")
    stream = _Stream()
    assert sched.squeeze(stream, 100.0, 10.0, 0) == (100.0, False)
    worker.shares.blocked["10.0.0.1"] = 2   # the address already keeps two threads waiting
    deadline, squeezed = sched.squeeze(stream, 100.0, 10.0, 5000)
    assert squeezed and deadline == 10.0 + SQUEEZED_WAIT_S
    # No byte taken since: the clock keeps running.
    assert sched.squeeze(stream, 100.0, 10.3, 5000) == (10.0 + SQUEEZED_WAIT_S, True)
    # The socket took bytes: a live client, the clock restarts.
    assert sched.squeeze(stream, 100.0, 10.4, 9000) == (10.4 + SQUEEZED_WAIT_S, True)
    # Back under the share: a plain wait again.
    worker.shares.blocked.clear()
    assert sched.squeeze(stream, 100.0, 10.5, 9000) == (100.0, False)
    assert stream.squeezed_at == 0.0


def test_waiting_counts_the_thread_and_a_squeezed_one_lends_its_slot() -> None:
    worker = _Worker()
    sched = StreamScheduler(worker, "10.0.0.1")
    with sched.waiting(False):
        assert sched.blocked == 1 and worker.shares.blocked == {"10.0.0.1": 1}
        assert worker.pool.lent == 0
        with sched.waiting(True):
            assert sched.blocked == 2 and worker.pool.lent == 1
    assert sched.blocked == 0 and worker.shares.blocked == {} and worker.pool.lent == 0
