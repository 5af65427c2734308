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
