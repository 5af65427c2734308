"""Counters, gauges and request timings, and the requests each thread is running.

Names follow gunicorn's StatsD metrics (``gunicorn.requests``,
``gunicorn.request.duration``...), so dashboards built for gunicorn keep
working; h2serve's own metrics (HTTP/2, connections, the pool) sit beside them
in the same dotted style. docs/metrics.md lists them all.

Two sinks, either or both:

- StatsD (``statsd_host``): each worker sends its counters and timers as they
  happen, one non-blocking datagram per event (h2serve.statsd); the arbiter
  sends the gauges, summed over the workers, once a second.
- The shared table (``metrics_bind``): each worker adds into its own slot of
  an anonymous mapping made before fork; the arbiter sums the live slots and
  folds a dead worker's counters into a retained total before the slot is
  reused, so totals survive worker restarts (h2serve.prometheus renders them).

The call sites in the request path and the HTTP/2 code are one line each and
cost one global lookup and a ``None`` test when no sink is configured.

Whatever the sinks, every worker keeps ``IN_FLIGHT`` (thread ident -> what it
runs) for the stuck-request watcher (h2serve.stuck), and every worker slot
has a small text area where the watcher publishes that list for the arbiter,
which logs it when it kills a hung worker.
"""

from __future__ import annotations

import bisect
import logging
import mmap
import threading
import time
from array import array
from typing import Any

# --- the catalogue ---------------------------------------------------------------

# Counters: (StatsD name, help). The index in this tuple is the counter's id.
COUNTERS: tuple[tuple[str, str], ...] = (
    ("gunicorn.requests", "Requests served (any status)."),
    ("gunicorn.log.critical", "Error-log messages at CRITICAL."),
    ("gunicorn.log.error", "Error-log messages at ERROR (without a traceback)."),
    ("gunicorn.log.warning", "Error-log messages at WARNING."),
    ("gunicorn.log.exception", "Error-log messages at ERROR with a traceback."),
    ("gunicorn.http2.resets.received", "RST_STREAM frames received from clients."),
    ("gunicorn.http2.resets.sent", "RST_STREAM frames sent to clients (any error code)."),
    ("gunicorn.http2.goaways.sent", "GOAWAY frames sent (graceful and errors)."),
    ("gunicorn.http2.flow_control.stalls",
     "Times a response waited for the client to open its flow-control window."),
    ("gunicorn.http2.streams.refused", "Streams refused with REFUSED_STREAM (over the "
     "concurrency limit, or opened after GOAWAY)."),
    ("gunicorn.requests.stuck", "Requests reported as stuck (ran past stuck_request_timeout)."),
)
(REQUESTS, LOG_CRITICAL, LOG_ERROR, LOG_WARNING, LOG_EXCEPTION, H2_RESETS_RECEIVED,
 H2_RESETS_SENT, H2_GOAWAYS_SENT, H2_FLOW_CONTROL_STALLS, H2_STREAMS_REFUSED,
 REQUESTS_STUCK) = range(len(COUNTERS))

# Gauges a worker publishes a few times a second; the arbiter sums them.
GAUGES: tuple[tuple[str, str], ...] = (
    ("gunicorn.connections.open", "Client connections open (HTTP/1.1 and HTTP/2)."),
    ("gunicorn.http2.connections.open", "HTTP/2 connections open."),
    ("gunicorn.http2.streams.open", "HTTP/2 streams open (requests received, not yet finished)."),
    ("gunicorn.pool.queue", "Work waiting for a pool thread: jobs queued, and HTTP/2 streams held "
     "back beyond their connection's share of the pool."),
    ("gunicorn.pool.busy", "Pool threads running an application call."),
    ("gunicorn.pool.stuck", "Pool threads running a request older than stuck_request_timeout."),
)
G_CONNECTIONS, G_H2_CONNECTIONS, G_H2_STREAMS, G_POOL_QUEUE, G_POOL_BUSY, G_POOL_STUCK = range(len(GAUGES))

# Request durations (seconds): Prometheus' customary bucket bounds.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROTOCOLS = ("h1", "h2")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
FIRST_STATUS, LAST_STATUS = 100, 599

# --- slot layout (int64 units) -----------------------------------------------------

_N_COUNTERS = len(COUNTERS)
_GAUGES_AT = _N_COUNTERS
_STATUS_AT = _GAUGES_AT + len(GAUGES)
_HIST_AT = _STATUS_AT + (LAST_STATUS - FIRST_STATUS + 1)
_HIST_STRIDE = len(BUCKETS) + 2          # bucket counts (last: +Inf) and the sum in microseconds
_NUMBERS = _HIST_AT + len(PROTOCOLS) * len(STATUS_CLASSES) * _HIST_STRIDE
TEXT_BYTES = 8192                        # in-flight snapshot: int64 length, then UTF-8 text
SLOT_BYTES = _NUMBERS * 8 + TEXT_BYTES
SLOTS = 256


def histogram_index(protocol: int, status_class: int) -> int:
    """Where the (protocol, status class) histogram starts in a slot."""
    return _HIST_AT + (protocol * len(STATUS_CLASSES) + status_class) * _HIST_STRIDE


class Snapshot:
    """Summed numbers of a MetricsTable, as the arbiter renders them."""

    def __init__(self, numbers: list[int], workers: int) -> None:
        self.numbers = numbers
        self.workers = workers

    def counter(self, index: int) -> int:
        return self.numbers[index]

    def gauge(self, index: int) -> int:
        return self.numbers[_GAUGES_AT + index]

    def statuses(self) -> list[tuple[int, int]]:
        """(status code, count) for every code seen."""
        return [(FIRST_STATUS + i, n) for i, n in
                enumerate(self.numbers[_STATUS_AT:_HIST_AT]) if n]

    def histogram(self, protocol: int, status_class: int) -> tuple[list[int], float]:
        """Per-bucket (not cumulative) counts, the last for +Inf; and the sum in seconds."""
        at = histogram_index(protocol, status_class)
        values = self.numbers[at:at + _HIST_STRIDE]
        return values[:-1], values[-1] / 1e6


class MetricsTable:
    """Per-worker slots of numbers in memory shared across fork.

    Arbiter side: take_slot before fork, release_slot after reaping (folds the
    dead worker's counters into the retained total), snapshot to read.
    Worker side: numbers(slot) to add into, publish_text for the in-flight list.
    """

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, SLOT_BYTES * slots)
        self._free = list(range(slots - 1, -1, -1))
        self.retained = [0] * _NUMBERS      # arbiter memory: dead workers' counters, its own logs

    # --- arbiter side -----------------------------------------------------------

    def take_slot(self) -> int | None:
        return self._free.pop() if self._free else None

    def release_slot(self, slot: int | None) -> None:
        """Keep what a gone worker counted (not its gauges), then clear the slot."""
        if slot is None:
            return
        numbers = self.numbers(slot)
        retained = self.retained
        for index, value in enumerate(numbers):
            if value and not _GAUGES_AT <= index < _STATUS_AT:
                retained[index] += value
        numbers[:] = memoryview(bytes(_NUMBERS * 8)).cast("q")
        self.publish_text(slot, "")
        self._free.append(slot)

    def snapshot(self, live_slots: list[int]) -> Snapshot:
        totals = list(self.retained)
        for slot in live_slots:
            for index, value in enumerate(self.numbers(slot)):
                if value:
                    totals[index] += value
        return Snapshot(totals, len(live_slots))

    def read_text(self, slot: int) -> str:
        start = slot * SLOT_BYTES + _NUMBERS * 8
        length = int.from_bytes(self._map[start:start + 8], "little")
        length = min(length, TEXT_BYTES - 8)
        return self._map[start + 8:start + 8 + length].decode("utf-8", "replace")

    # --- worker side -------------------------------------------------------------

    def numbers(self, slot: int) -> memoryview:
        start = slot * SLOT_BYTES
        return memoryview(self._map)[start:start + _NUMBERS * 8].cast("q")

    def publish_text(self, slot: int, text: str) -> None:
        """Length first zeroed, then text, then length: a reader never sees
        more bytes than were written."""
        start = slot * SLOT_BYTES + _NUMBERS * 8
        data = text.encode("utf-8", "replace")[:TEXT_BYTES - 8]
        self._map[start:start + 8] = bytes(8)
        self._map[start + 8:start + 8 + len(data)] = data
        self._map[start:start + 8] = len(data).to_bytes(8, "little")


class Recorder:
    """One process's sinks: its slot of the shared table and/or a StatsD client.

    Called from any thread; a lock keeps the read-add-write of slot numbers whole."""

    def __init__(self, numbers: Any, statsd: Any) -> None:
        self.numbers = numbers           # a worker's slot, or the arbiter's retained list
        self.statsd = statsd
        self.lock = threading.Lock()

    def count(self, index: int, amount: int = 1) -> None:
        numbers = self.numbers
        if numbers is not None:
            with self.lock:
                numbers[index] += amount
        if self.statsd is not None:
            self.statsd.counter(COUNTERS[index][0], amount)

    def request(self, protocol: str, status: int, seconds: float) -> None:
        numbers = self.numbers
        if numbers is not None:
            code = status if FIRST_STATUS <= status <= LAST_STATUS else 500
            at = histogram_index(1 if protocol.startswith("HTTP/2") else 0, code // 100 - 1)
            bucket = at + bisect.bisect_left(BUCKETS, seconds)
            with self.lock:
                numbers[REQUESTS] += 1
                numbers[_STATUS_AT + code - FIRST_STATUS] += 1
                numbers[bucket] += 1
                numbers[at + _HIST_STRIDE - 1] += int(seconds * 1e6)
        if self.statsd is not None:
            self.statsd.request(status, seconds * 1000.0)

    def gauges(self, values: tuple[int, ...]) -> None:
        """A worker's current gauge values (poller thread); StatsD gets them from the arbiter."""
        numbers = self.numbers
        if numbers is not None:
            numbers[_GAUGES_AT:_GAUGES_AT + len(values)] = array("q", values)


# --- the process-wide hooks ----------------------------------------------------------

_recorder: Recorder | None = None

# thread ident -> (monotonic start, RequestReceived, environ): requests an app runs now.
IN_FLIGHT: dict[int, tuple[float, Any, dict]] = {}
_get_ident = threading.get_ident


def install(recorder: Recorder | None) -> None:
    """Point the hooks at this process's sinks (None: count nothing)."""
    global _recorder
    _recorder = recorder


def recorder() -> Recorder | None:
    return _recorder


def count(index: int) -> None:
    """One event (any thread): a one-line hook in the request path and HTTP/2 code."""
    if _recorder is not None:
        _recorder.count(index)


def request_started(request: Any, environ: dict) -> None:
    """An app call begins on this pool thread."""
    IN_FLIGHT[_get_ident()] = (time.monotonic(), request, environ)


def request_finished(protocol: str, status: int, seconds: float) -> None:
    """The app call of this pool thread ended (status 499: the client went away)."""
    IN_FLIGHT.pop(_get_ident(), None)
    if _recorder is not None:
        _recorder.request(protocol, status, seconds)


class LogCounter(logging.Filter):
    """Counts error-log messages by level as gunicorn's StatsD logger does; lets all pass.

    A filter on the logger itself, so handlers swapped by a logging config keep it."""

    def filter(self, record: logging.LogRecord) -> bool:
        level = record.levelno
        if level >= logging.WARNING and _recorder is not None:
            if level >= logging.CRITICAL:
                _recorder.count(LOG_CRITICAL)
            elif level >= logging.ERROR:
                _recorder.count(LOG_EXCEPTION if record.exc_info else LOG_ERROR)
            else:
                _recorder.count(LOG_WARNING)
        return True


def install_log_counter(logger_name: str = "h2serve.error") -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, LogCounter) for f in logger.filters):
        logger.addFilter(LogCounter())
