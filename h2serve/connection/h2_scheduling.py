"""Which streams of one HTTP/2 connection run on the pool, and how long a
stream's thread may wait on its client: the policy, apart from the driver's
socket I/O and its WSGI exchange.

Every method runs under the connection's lock (HTTP2Driver.lock), on the
poller or on a pool thread. The per-address counts it reads and writes live
in the worker's PeerShares (blocked, in_pool) and are shared with the
HTTP/1.1 driver, so one client address is held to one share over all its
connections and both protocols.

The rules (docs/security.md):
- While nothing of the connection stalls, its streams may use every thread.
- Once its client keeps a thread waiting, closes its window or reads none of
  our output (the driver says so: `stalled`), it may have at most
  blocked_cap streams in the pool, counting its address's streams in the pool
  on its other connections; the rest wait in `ready`, holding nothing.
- Streams whose request body is still arriving start at most blocked_cap at a
  time, counted the same way.
- A thread that must wait on the client while the connection or its address
  already has blocked_cap threads waiting is squeezed: it may wait
  SQUEEZED_WAIT_S without progress (restarted whenever the socket takes
  bytes), and lends its pool slot to a spare thread meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from h2serve.connection.common import SQUEEZED_WAIT_S
from h2serve.connection.contracts import WorkerHost


class ScheduledStream(Protocol):
    """What the scheduler reads and writes of a stream."""

    ended: bool          # the request body is complete
    in_pool: bool        # handed to the pool and not finished
    squeezed_at: float   # since when it waits past its share without progress (0: it does not)
    squeezed_total: int  # the connection's bytes sent then


class StreamScheduler:
    """One connection's streams on the worker's pool: its queue of streams
    ready to run, how many are in the pool, how many threads wait on its client."""

    __slots__ = ("worker", "peer_key", "blocked_cap", "ready", "in_pool", "blocked")

    def __init__(self, worker: WorkerHost, peer_key: str) -> None:
        self.worker = worker
        self.peer_key = peer_key
        self.blocked_cap: int = worker.shares.cap
        self.ready: list[Any] = []   # streams waiting for a share of the pool (at most max_concurrent_streams)
        self.in_pool = 0                    # streams handed to the pool, not finished
        self.blocked = 0                    # of those, threads now waiting on the client

    def in_pool_elsewhere(self) -> int:
        """Streams this connection's address has in the pool on its other connections."""
        return self.worker.shares.in_pool.get(self.peer_key, 0) - self.in_pool

    def share(self, stalled: bool) -> int:
        """How many of this connection's streams may be in the pool at once."""
        if stalled or self.blocked:
            return max(0, self.blocked_cap - self.in_pool_elsewhere())
        return self.worker.pool.size

    def submit_ready(self, stalled: bool, arriving_in_pool: Callable[[], int],
                     run: Callable[[Any], None]) -> None:
        """Hand ready streams to the pool, up to the share; run(stream) is the job.
        arriving_in_pool() counts this connection's streams in the pool whose
        body is still arriving (asked only when a ready stream's body is)."""
        ready = self.ready
        if not ready:
            return
        worker = self.worker
        share, submit = self.share(stalled), worker.pool.submit
        started = 0
        arriving = -1   # counted when first needed
        while ready and self.in_pool < share:
            if not ready[0].ended:
                if arriving < 0:
                    arriving = self.in_pool_elsewhere() + arriving_in_pool()
                if arriving >= self.blocked_cap:
                    break
                arriving += 1
            stream = ready.pop(0)
            stream.in_pool = True
            self.in_pool += 1
            started += 1
            submit(run, stream)
        if started:
            worker.shares.count(worker.shares.in_pool, self.peer_key, started)

    def release(self, stream: ScheduledStream) -> bool:
        """The stream's app is done: True when it held a place in the pool (the
        caller then starts the next ready stream)."""
        if not stream.in_pool:
            return False
        stream.in_pool = False
        self.in_pool -= 1
        self.worker.shares.count(self.worker.shares.in_pool, self.peer_key, -1)
        return True

    def squeeze(self, stream: ScheduledStream, deadline: float, now: float,
                sent_total: int) -> tuple[float, bool]:
        """The deadline of a wait about to start, and whether it is squeezed
        (past the connection's or its address's share of waiting threads)."""
        squeezed = (self.blocked >= self.blocked_cap
                    or self.worker.shares.blocked.get(self.peer_key, 0) >= self.blocked_cap)
        if not squeezed:
            stream.squeezed_at = 0.0
            return deadline, False
        if not stream.squeezed_at or sent_total != stream.squeezed_total:
            stream.squeezed_at, stream.squeezed_total = now, sent_total
        return min(deadline, stream.squeezed_at + SQUEEZED_WAIT_S), True

    @contextlib.contextmanager
    def waiting(self, squeezed: bool) -> Iterator[None]:
        """Around a thread's wait on the client: counted for the connection and
        its address; a squeezed wait lends the thread's pool slot."""
        worker = self.worker
        self.blocked += 1
        worker.shares.count(worker.shares.blocked, self.peer_key, 1)
        try:
            if squeezed:
                with worker.pool.lend_slot():
                    yield
            else:
                yield
        finally:
            self.blocked -= 1
            worker.shares.count(worker.shares.blocked, self.peer_key, -1)
