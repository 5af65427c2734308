"""WSGI views for the metrics and stuck-request tests (tests/test_metrics.py)."""

from __future__ import annotations

import os
import signal
import time

from tests.apps import router


def stuck_view_sleeping_here(seconds: float) -> None:
    """A named frame the stuck-request report must show in its stack."""
    time.sleep(seconds)


def app(environ, start_response):
    """/nap?s=N sleeps in stuck_view_sleeping_here; /hang sleeps 1 s then stops its own
    process (SIGSTOP), as a worker hung in C code looks to the arbiter; else tests.apps.router."""
    path = environ.get("PATH_INFO", "/")
    if path in ("/nap", "/hang"):
        query = dict(pair.partition("=")[::2] for pair in environ.get("QUERY_STRING", "").split("&") if pair)
        stuck_view_sleeping_here(float(query.get("s", "1")))
        if path == "/hang":
            os.kill(os.getpid(), signal.SIGSTOP)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"woke up"]
    return router(environ, start_response)
