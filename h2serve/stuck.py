"""Naming stuck requests: which request, how old, on which thread, where in the code.

A watcher thread in each worker looks at ``metrics.IN_FLIGHT`` a few times a
second (no per-request timer). A request older than ``stuck_request_timeout``
is logged once, at WARNING, with its request line (escaped), age, thread name
and that thread's current stack; nothing is killed. When every pool thread is
held by a stuck request the worker can serve nothing new: that is logged at
ERROR (once per episode) and shows in the ``gunicorn.pool.stuck`` gauge.

On each look the watcher also publishes the in-flight list to the worker's
slot of the shared table, so the arbiter can name the requests of a worker it
kills for not answering (WORKER TIMEOUT): that worker may hold the interpreter
lock and run no Python at all by then.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from h2serve import metrics

log = logging.getLogger("h2serve.error")


def escape(text: str) -> str:
    """Control bytes, backslashes, quotes and non-ASCII as escapes: a log line stays one line."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def request_line(request: Any, environ: dict) -> str:
    protocol = environ.get("SERVER_PROTOCOL", "")
    return escape(f"{request.method} {request.target} {protocol}")


def describe_in_flight(now: float, in_flight: list[tuple[int, tuple[float, Any, dict]]],
                       names: dict[int, str]) -> list[str]:
    """One line per request, oldest first: '"GET /x HTTP/2" from 1.2.3.4, running 3.2 s on pool-1'."""
    lines = []
    for ident, (started, request, environ) in sorted(in_flight, key=lambda item: item[1][0]):
        lines.append(f'"{request_line(request, environ)}" from {escape(str(environ.get("REMOTE_ADDR", "-")))}, '
                     f"running {now - started:.1f} s on {names.get(ident, ident)}")
    return lines


def read_published(text: str, now: float) -> tuple[float | None, list[str]]:
    """What StuckWatcher published: (seconds since, request lines); (None, []) if nothing."""
    stamp, _, rest = text.partition("\n")
    try:
        age = now - float(stamp)
    except ValueError:
        return None, []
    return age, [line for line in rest.split("\n") if line]


def log_in_flight(why: str, lines: list[str], level: int = logging.WARNING) -> None:
    """The requests cut off by a kill or a timeout, one log line each."""
    for line in lines:
        log.log(level, "%s: %s", why, line)


class StuckWatcher:
    """Worker side; its own daemon thread. limit 0: only publish, never report."""

    def __init__(self, limit: float, pool_size: int,
                 publish: Callable[[str], None] | None = None) -> None:
        self.limit = limit
        self.pool_size = pool_size
        self.publish = publish
        self.interval = min(0.5, max(0.05, limit / 4)) if limit > 0 else 0.5
        self.reported: set[tuple[int, float]] = set()
        self.stuck_now = 0
        self.all_stuck = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="h2serve-stuck-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check(time.monotonic())
            except Exception:
                log.exception("stuck-request watcher failed")

    def check(self, now: float) -> None:
        in_flight = list(metrics.IN_FLIGHT.items())
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        if self.publish is not None:
            # first line: when, on the monotonic clock the arbiter shares
            self.publish("\n".join([f"{now:.3f}", *describe_in_flight(now, in_flight, names)]))
        if self.limit <= 0:
            return
        stuck = [(ident, entry) for ident, entry in in_flight if now - entry[0] >= self.limit]
        keys = {(ident, entry[0]) for ident, entry in stuck}
        frames = None
        for ident, (started, request, environ) in stuck:
            if (ident, started) in self.reported:
                continue
            if frames is None:
                frames = sys._current_frames()
            frame = frames.get(ident)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "  (no stack: the request ended)\n"
            # The stack is our own code's, not client text: it goes in the message,
            # so its lines stay lines (arguments are escaped whole, newlines too).
            log.warning('Stuck request: "%s" from %s has run %.1f s (stuck_request_timeout %g s) '
                        "on thread %s; its stack, most recent call last:\n"
                        + stack.rstrip("\n").replace("%", "%%"),
                        request_line(request, environ), escape(str(environ.get("REMOTE_ADDR", "-"))),
                        now - started, self.limit, names.get(ident, ident))
            metrics.count(metrics.REQUESTS_STUCK)
        self.reported = keys   # each stuck request is reported once
        self.stuck_now = len(stuck)
        all_stuck = self.pool_size > 0 and len(stuck) >= self.pool_size
        if all_stuck and not self.all_stuck:
            log.error("All %d pool threads of worker are running stuck requests "
                      "(over %g s): this worker answers no new request until one ends",
                      self.pool_size, self.limit)
        elif self.all_stuck and not all_stuck:
            log.info("A pool thread is free again after every thread was stuck")
        self.all_stuck = all_stuck


def dump_stacks_on_usr2() -> None:
    """SIGUSR2 (sent by the arbiter before it kills a worker that stopped answering,
    or by an operator) writes every thread's stack to the error log, from C, even
    while some thread holds the interpreter lock; then the worker goes on."""
    stream = None
    for handler in logging.getLogger("h2serve.error").handlers:
        candidate = getattr(handler, "stream", None)
        if candidate is not None and hasattr(candidate, "fileno"):
            stream = candidate
            break
    try:
        faulthandler.register(signal.SIGUSR2, file=stream or sys.stderr, all_threads=True, chain=False)
    except (ValueError, OSError, AttributeError, RuntimeError):
        pass
