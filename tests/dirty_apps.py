"""Dirty apps and the WSGI views calling them, for tests/test_dirty.py and
scripts/bench_dirty.py. Evidence (loads, stream progress) goes to files under
$DIRTY_EVIDENCE, since the dirty workers are other processes."""

from __future__ import annotations

import hashlib
import json
import os
import time
from urllib.parse import parse_qs

if os.environ.get("DIRTY_FLAVOUR") == "gunicorn":   # the benchmark: the same names there
    from gunicorn.dirty import DirtyApp, get_dirty_client
    from gunicorn.dirty.errors import (
        DirtyAppError,
        DirtyError,
        DirtyNoWorkersAvailableError,
        DirtyTimeoutError,
        DirtyWorkerError,
    )
else:
    from h2serve.dirty import DirtyApp, get_dirty_client
    from h2serve.dirty.errors import (
        DirtyAppError,
        DirtyError,
        DirtyNoWorkersAvailableError,
        DirtyTimeoutError,
        DirtyWorkerError,
    )


def _note(name: str, text: str) -> None:
    directory = os.environ.get("DIRTY_EVIDENCE")
    if directory:
        with open(os.path.join(directory, name), "a") as out:
            out.write(text + "\n")


class ModelApp(DirtyApp):
    """A stateful 'model': a table built once in init()."""

    def init(self) -> None:
        self.table = {i: i * i for i in range(100_000)}
        _note("loads", f"model {os.getpid()}")

    def predict(self, x: int) -> dict:
        return {"y": self.table[int(x)], "pid": os.getpid()}

    def pid(self) -> int:
        return os.getpid()

    def boom(self) -> None:
        raise ValueError("bad input 42")

    def hang(self) -> None:
        _note("hang", str(os.getpid()))
        time.sleep(120)

    def sleep(self, seconds: float) -> str:
        time.sleep(float(seconds))
        return "slept"

    def cpu(self, rounds: int) -> str:
        digest = b"x"
        for _ in range(int(rounds)):
            digest = hashlib.sha256(digest).digest()
        return digest.hex()

    def payload(self, size: int) -> bytes:
        return b"p" * int(size)

    def mixed(self):
        """A stream whose second item cannot be sent (a set is not JSON)."""
        yield "one"
        yield {"a", "set"}
        yield "three"

    def tokens(self, n: int, delay: float = 0.0, size: int = 16):
        produced = 0
        try:
            for i in range(int(n)):
                if delay:
                    time.sleep(float(delay))
                produced += 1
                _note("produced", str(i))
                yield (f"token-{i:06d}-".encode() + b"t" * int(size) + b"\n")
        finally:
            _note("stopped", f"{produced}")


class LimitedApp(DirtyApp):
    """Loaded by one dirty worker only."""

    workers = 1

    def init(self) -> None:
        _note("loads", f"limited {os.getpid()}")

    def pid(self) -> int:
        return os.getpid()


MODEL = "tests.dirty_apps:ModelApp"
LIMITED = "tests.dirty_apps:LimitedApp"
ERRORS = ((DirtyAppError, 500), (DirtyWorkerError, 502), (DirtyNoWorkersAvailableError, 503),
          (DirtyTimeoutError, 504), (DirtyError, 500))


def router(environ, start_response):
    """/predict?x=, /pid?app=model|limited, /boom, /hang, /sleep?s=, /cpu?n=,
    /payload?size=, /stream?n=&delay=&size=; dirty errors become 5xx naming them."""
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    client = get_dirty_client()
    try:
        if path == "/stream":
            stream = client.stream(MODEL, "tokens", int(query.get("n", 10)),
                                   float(query.get("delay", 0)), int(query.get("size", 16)))
            start_response("200 OK", [("Content-Type", "text/plain")])
            return stream.as_bytes() if hasattr(stream, "as_bytes") else stream
        if path == "/mixed":
            result = list(client.stream(MODEL, "mixed"))
        elif path == "/predict":
            result = client.execute(MODEL, "predict", int(query.get("x", 3)))
        elif path == "/pid":
            result = client.execute(LIMITED if query.get("app") == "limited" else MODEL, "pid")
        elif path == "/boom":
            result = client.execute(MODEL, "boom")
        elif path == "/hang":
            result = client.execute(MODEL, "hang")
        elif path == "/sleep":
            result = client.execute(MODEL, "sleep", float(query.get("s", 0.01)))
        elif path == "/cpu":
            result = client.execute(MODEL, "cpu", int(query.get("n", 1000)))
        elif path == "/payload":
            body = client.execute(MODEL, "payload", int(query.get("size", 10_000)))
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return [body if isinstance(body, bytes) else str(body).encode()]
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
    except DirtyError as exc:
        status = next(code for cls, code in ERRORS if isinstance(exc, cls))
        start_response(f"{status} Dirty Error", [("Content-Type", "text/plain")])
        return [f"{type(exc).__name__}: {exc}\n".encode()]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(result).encode()]
