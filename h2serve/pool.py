"""The worker's app threads: a fixed pool taking callables from one queue,
with urgent jobs (connection setup) first and spare threads for slots lent
during short bounded waits on a client."""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("h2serve.error")

SPARES_PER_THREAD = 4   # spare threads at most, per pool thread (lend_slot)

_URGENT = object()   # a marker in the job queue: an urgent job is waiting


class ThreadPool:
    """A fixed set of threads taking callables from one queue.

    Connection setup (a TLS handshake step, the first bytes) goes ahead of the
    app work already waiting: a backlog of slow views must not make a new
    client's handshake time out."""

    def __init__(self, size: int, name: str = "h2serve-pool") -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._urgent: collections.deque = collections.deque()
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(size)]
        self.size = size
        self.name = name
        # Slots lent by threads in a short bounded wait (lend_slot), and the spare
        # threads running jobs meanwhile; guarded by _spare_lock.
        self._spare_lock = threading.Lock()
        self._lent = 0
        self._spares = 0
        self._stopping = False

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable, *args: Any) -> None:
        self._jobs.put((fn, args))

    def queued(self) -> int:
        """Jobs waiting for a thread (approximate: stop markers count too)."""
        return self._jobs.qsize()

    def submit_urgent(self, fn: Callable, *args: Any) -> None:
        self._urgent.append((fn, args))
        self._jobs.put(_URGENT)   # wakes a thread even when nothing else is queued

    def _loop(self, spare: bool = False) -> None:
        get, urgent = self._jobs.get, self._urgent
        while True:
            job = get()
            while urgent:   # whatever was taken, urgent jobs run first
                try:
                    self._run(*urgent.popleft())
                except IndexError:
                    break
            if job is None:
                return
            if job is not _URGENT:   # (an urgent marker's job has run by now)
                self._run(*job)
            if spare and self._spare_done():
                return

    def _spare_done(self) -> bool:
        with self._spare_lock:
            if self._spares > self._lent:
                self._spares -= 1
                return True
            return False

    @contextlib.contextmanager
    def lend_slot(self) -> Iterator[None]:
        """Pool thread: for a short bounded wait on a stalled client, lend this
        thread's slot to a spare thread, so the wait costs other clients no thread.
        Spares are at most as many as the threads lending and never more than
        SPARES_PER_THREAD x size: a spare that waits lends too, and must not start
        another without end, yet the streams a crowd of one address started
        before its connections were seen stalled may all be squeezed at once
        (each for at most SQUEEZED_WAIT_S without progress), and the bystanders
        need spares meanwhile. Each spare leaves after its job once the slot it
        borrowed is back."""
        with self._spare_lock:
            self._lent += 1
            start = (not self._stopping
                     and self._spares < min(self._lent, SPARES_PER_THREAD * self.size))
            if start:
                self._spares += 1
        if start:
            threading.Thread(target=self._loop, args=(True,), daemon=True,
                             name=f"{self.name}-spare").start()
        try:
            yield
        finally:
            with self._spare_lock:
                self._lent -= 1

    @staticmethod
    def _run(fn: Callable, args: tuple) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("unhandled error in a pool thread")

    def stop(self, wait_s: float = 0.0) -> None:
        with self._spare_lock:
            self._stopping = True
            spares = self._spares
        for _ in range(len(self._threads) + spares):
            self._jobs.put(None)
        deadline = time.monotonic() + wait_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
