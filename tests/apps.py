"""WSGI apps the end-to-end tests serve. Each reads what it needs from the query."""

from __future__ import annotations

import json
import os
import threading
import time
from urllib.parse import parse_qs

_active = 0
_peak = 0
_lock = threading.Lock()


def _query(environ) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def echo(environ, start_response):
    """Returns the request body; ?chunked=1 streams it back in pieces."""
    body = environ["wsgi.input"].read()
    trailers = environ["h2serve.request_trailers"]()
    headers = [("Content-Type", "application/octet-stream"), ("X-Body-Length", str(len(body)))]
    if trailers:
        headers.append(("X-Request-Trailers", json.dumps(trailers)))
    start_response("200 OK", headers)
    if _query(environ).get("chunked"):
        return (body[i:i + 10000] for i in range(0, len(body), 10000))
    return [body]


def digest(environ, start_response):
    """Reads the body in small pieces and answers with its length and sha256."""
    import hashlib

    h = hashlib.sha256()
    total = 0
    stream = environ["wsgi.input"]
    while True:
        block = stream.read(8192)
        if not block:
            break
        h.update(block)
        total += len(block)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"length": total, "sha256": h.hexdigest()}).encode()]


def sleep(environ, start_response):
    """Blocks ?s= seconds (default 0.5) and reports how many views ran at once."""
    global _active, _peak
    seconds = float(_query(environ).get("s", "0.5"))
    with _lock:
        _active += 1
        _peak = max(_peak, _active)
    try:
        time.sleep(seconds)
    finally:
        with _lock:
            _active -= 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"slept {seconds} pid {os.getpid()} peak {_peak}".encode()]


def big(environ, start_response):
    """?size= bytes (default 5 MB) of a repeating pattern, in 64 KiB chunks."""
    size = int(_query(environ).get("size", str(5 * 1000 * 1000)))
    pattern = bytes(range(256)) * 256
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])

    def chunks():
        left = size
        while left > 0:
            piece = pattern[: min(left, len(pattern))]
            left -= len(piece)
            yield piece

    return chunks()


def environ_dump(environ, start_response):
    keep = {k: v for k, v in environ.items() if isinstance(v, (str, int, float, bool, tuple, dict))}
    body = json.dumps(keep, default=str).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def early_hints(environ, start_response):
    environ["wsgi.early_hints"]([("Link", "</style.css>; rel=preload; as=style")])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"with hints"]


def trailers(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Trailer", "grpc-status")])
    environ["h2serve.send_trailers"]([("grpc-status", "0"), ("grpc-message", "ok")])
    return [b"part one,", b"part two"]


def stream(environ, start_response):
    """?n= chunks, ?delay= seconds apart: a streaming response."""
    q = _query(environ)
    count, delay = int(q.get("n", "5")), float(q.get("delay", "0.05"))
    start_response("200 OK", [("Content-Type", "text/event-stream")])

    def events():
        for i in range(count):
            yield f"data: {i}\n\n".encode()
            time.sleep(delay)

    return events()


def fail(environ, start_response):
    """?after=1 fails after the response started."""
    if _query(environ).get("after"):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def broken():
            yield b"first"
            raise RuntimeError("boom after start")

        return broken()
    raise RuntimeError("boom before start")


def status(environ, start_response):
    code = _query(environ).get("code", "204")
    start_response(f"{code} Whatever", [("Content-Type", "text/plain")])
    return [b"this body must not be sent"]


def router(environ, start_response):
    """One app for tests that need several behaviours on one server: /NAME -> NAME()."""
    name = environ.get("PATH_INFO", "/").strip("/") or "hello"
    target = ROUTES.get(name)
    if target is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such route"]
    return target(environ, start_response)


ROUTES = {
    "hello": hello, "echo": echo, "digest": digest, "sleep": sleep, "big": big,
    "environ": environ_dump, "early_hints": early_hints, "trailers": trailers,
    "stream": stream, "fail": fail, "status": status,
}


def hop_headers(environ, start_response):
    """Sets connection-specific headers an HTTP/2 response must never carry."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close"),
                              ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"),
                              ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"),
                              ("X-Kept", "yes")])
    return [b"ok"]


def priority_after_body(environ, start_response):
    """Reads the whole body, then reports h2serve.priority (it may change meanwhile)."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(environ.get("h2serve.priority")).encode()]


ROUTES["hop_headers"] = hop_headers
ROUTES["priority_after_body"] = priority_after_body


def read_later(environ, start_response):
    """Sleeps ?delay= seconds (default 0.5) before reading the body: shows when
    a server sends 100 Continue (only once the app reads)."""
    time.sleep(float(_query(environ).get("delay", "0.5")))
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"read %d" % len(body)]


ROUTES["read_later"] = read_later


def slow_empty(environ, start_response):
    """Sleeps ?s= seconds, then answers 204: a response that is only a HEADERS frame."""
    time.sleep(float(_query(environ).get("s", "1")))
    start_response("204 No Content", [])
    return []


ROUTES["slow_empty"] = slow_empty


def bad_header(environ, start_response):
    """An app bug: ?kind=name (a space in a header name), reason (CR LF in the
    reason phrase) or value (a control byte in a value)."""
    kind = _query(environ).get("kind", "name")
    status, headers = "200 OK", [("Content-Type", "text/plain")]
    if kind == "name":
        headers.append(("X Bad", "1"))
    elif kind == "reason":
        status = "200 OK\r\nX-Injected: yes"
    else:
        headers.append(("X-Bad", "a\x01b"))
    start_response(status, headers)
    return [b"must not be sent"]


ROUTES["bad_header"] = bad_header
