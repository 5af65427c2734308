"""Giving memory back to the operating system after a crowd of connections
leaves. Closed connections hold reference cycles (connection, driver, protocol)
that only the cyclic collector frees, and glibc keeps freed heap pages mapped;
without both, a worker stays at its peak size after a flood is over."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys
import time

log = logging.getLogger("h2serve.error")


def _load_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):   # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def give_back_memory(collect: bool = True) -> float:
    """Collect cycles (unless collect is False), then return free heap pages
    to the OS where the C library can. Blocks the calling thread (and, through
    the GIL, the process) for the collection: call it rarely. Returns the
    seconds it took."""
    started = time.perf_counter()
    if collect:
        gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    took = time.perf_counter() - started
    log.debug("gave memory back in %.1f ms", took * 1000)
    return took


TRIM_DROP = 256          # connections gone since the peak before memory is given back
TRIM_INTERVAL_S = 10.0   # ... at most this often
CHURN_TRIM_INTERVAL_S = 1.0   # ... or, while connections are pushed out, this often
TRIM_SETTLE_S = 0.5      # ... once the count has not changed for this long


class MemoryReturn:
    """Poller: once a crowd of connections has left, free what they held, so
    that a flood does not leave the worker at its peak size."""

    __slots__ = ("peak", "seen", "seen_at", "trim_due", "pushed_out", "churn_trim_due")

    def __init__(self) -> None:
        self.peak = 0            # most connections since memory was last given back
        self.seen, self.seen_at = 0, 0.0
        self.trim_due = 0.0
        # Connections closed to make room (worker_connections, unused per address)
        # since memory was last given back: a churning crowd never lets the
        # count settle, so the worker counts these here and they trigger it too.
        self.pushed_out = 0
        self.churn_trim_due = 0.0

    def tick(self, count: int, now: float) -> None:
        """count: the worker's connections now."""
        if count != self.seen:   # wait until the crowd has finished leaving
            self.seen, self.seen_at = count, now
        if count > self.peak:
            self.peak = count
        crowd_left = self.peak - count >= TRIM_DROP and now - self.seen_at >= TRIM_SETTLE_S
        if crowd_left and now >= self.trim_due:
            self.peak = count
            self.pushed_out = 0
            self.trim_due = now + TRIM_INTERVAL_S
            give_back_memory()
        elif self.pushed_out >= TRIM_DROP and now >= self.churn_trim_due:
            # Still under attack: only the allocator's free pages, often (no
            # full collection, whose pause grows with the application's heap).
            self.pushed_out = 0
            self.churn_trim_due = now + CHURN_TRIM_INTERVAL_S
            give_back_memory(collect=False)
