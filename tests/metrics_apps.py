"""WSGI views for the metrics and stuck-request tests (tests/test_metrics.py)."""

from __future__ import annotations

import ctypes
import time

from tests.apps import router


def stuck_view_sleeping_here(seconds: float) -> None:
    """A named frame the stuck-request report must show in its stack."""
    time.sleep(seconds)


def hold_the_interpreter(seconds: int) -> None:
    """Sleep in C without releasing the interpreter lock: no thread of this
    process runs Python meanwhile, the poller's heartbeat included."""
    libc = ctypes.PyDLL(None)
    left = seconds
    while left > 0:   # a signal ends sleep(3) early; it returns what is left
        left = libc.sleep(left)


def app(environ, start_response):
    """/nap?s=N sleeps in stuck_view_sleeping_here; /hold?s=N first naps 0.7 s (so the
    watcher publishes the request) then holds the interpreter lock N seconds; any
    other path goes to tests.apps.router."""
    path = environ.get("PATH_INFO", "/")
    if path in ("/nap", "/hold"):
        query = dict(pair.partition("=")[::2] for pair in environ.get("QUERY_STRING", "").split("&") if pair)
        if path == "/hold":
            stuck_view_sleeping_here(0.7)
            hold_the_interpreter(int(query.get("s", "5")))
        else:
            stuck_view_sleeping_here(float(query.get("s", "1")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"woke up"]
    return router(environ, start_response)
