"""The dirty app and WSGI view that scripts/bench_dirty.py loads into both
servers. Identical for h2serve and gunicorn except for where DirtyApp and
get_dirty_client come from: $BENCH_DIRTY_SERVER=gunicorn picks gunicorn.dirty,
anything else h2serve.dirty.

Actions (each reached from one URL, gunicorn's dirty benchmark shape):
  /sleep?ms=N      the dirty worker sleeps N ms (scheduling/IPC overhead)
  /cpu?n=N         a fixed amount of pure-Python work (N loop rounds), so a
                   slower pool shows up as fewer calls/s, not longer sleeps
  /payload?size=N  the dirty worker returns {"data": <N chars>, "size": N};
                   the view sends the N chars as the body (serialization cost)
  /ping            a trivial call, used to wait until the dirty workers are up
"""

import json
import os
import time
from urllib.parse import parse_qs

if os.environ.get("BENCH_DIRTY_SERVER") == "gunicorn":
    from gunicorn.dirty import DirtyApp, get_dirty_client
else:
    from h2serve.dirty import DirtyApp, get_dirty_client

APP_PATH = "bench_dirty_app:BenchApp"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"


class BenchApp(DirtyApp):
    """Stateless apart from a call counter; init() is cheap on purpose."""

    def init(self):
        self.calls = 0

    def ping(self):
        return {"pid": os.getpid()}

    def sleep(self, ms):
        self.calls += 1
        time.sleep(ms / 1000.0)
        return {"slept_ms": ms}

    def cpu(self, rounds):
        self.calls += 1
        acc = 0
        for i in range(rounds):
            acc = (acc * 31 + i) % 1_000_003
        return {"rounds": rounds, "acc": acc}

    def payload(self, size):
        self.calls += 1
        text = (_ALPHABET * (size // len(_ALPHABET) + 1))[:size]
        return {"data": text, "size": size}


def _int(query, name, default):
    try:
        return int(query.get(name, [default])[0])
    except ValueError:
        return default


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    client = get_dirty_client()
    content_type = "application/json"
    try:
        if path == "/sleep":
            body = json.dumps(client.execute(APP_PATH, "sleep", _int(query, "ms", 10))).encode()
        elif path == "/cpu":
            body = json.dumps(client.execute(APP_PATH, "cpu", _int(query, "n", 20000))).encode()
        elif path == "/payload":
            result = client.execute(APP_PATH, "payload", _int(query, "size", 65536))
            body = result["data"].encode()
            content_type = "text/plain"
        elif path == "/ping":
            body = json.dumps(client.execute(APP_PATH, "ping")).encode()
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain"),
                                             ("Content-Length", "10")])
            return [b"not found\n"]
    except Exception as exc:   # any dirty failure is a 5xx the benchmark counts
        body = f"{type(exc).__name__}: {exc}\n".encode()
        start_response("502 Bad Gateway", [("Content-Type", "text/plain"),
                                           ("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Type", content_type),
                              ("Content-Length", str(len(body)))])
    return [body]
