"""--metrics-bind: the shared metrics table in Prometheus text format, served by
the arbiter itself.

The server has no thread: its sockets join the arbiter's select() call, each
scrape is read, answered and closed without blocking (a client too slow to
send its request or take the answer within CLIENT_TIMEOUT_S is dropped), so
nothing runs in the master beside the main loop when it forks.

Names are the StatsD names with dots as underscores; counters end in
``_total``; request durations are a histogram in seconds labelled by protocol
(h1, h2) and status class (1xx..5xx). docs/metrics.md lists them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from h2serve.metrics import (
    BUCKETS,
    COUNTERS,
    GAUGES,
    PROTOCOLS,
    REQUESTS,
    STATUS_CLASSES,
    Snapshot,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CLIENT_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8192
MAX_CLIENTS = 16


def prometheus_name(statsd_name: str) -> str:
    return statsd_name.replace(".", "_")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(snapshot: Snapshot) -> str:
    """The exposition text (format 0.0.4) of one snapshot."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    for index, (statsd_name, help_text) in enumerate(COUNTERS):
        name = prometheus_name(statsd_name) + "_total"   # as prometheus_client writes counters
        family(name, "counter", help_text)
        lines.append(f"{name} {snapshot.counter(index)}")
        if index == REQUESTS:
            family("gunicorn_request_status_total", "counter", "Requests served, by response status code.")
            for code, count in snapshot.statuses():
                lines.append(f'gunicorn_request_status_total{{status="{code}"}} {count}')
    family("gunicorn_workers", "gauge", "Worker processes running.")
    lines.append(f"gunicorn_workers {snapshot.workers}")
    for index, (statsd_name, help_text) in enumerate(GAUGES):
        name = prometheus_name(statsd_name)
        family(name, "gauge", help_text)
        lines.append(f"{name} {snapshot.gauge(index)}")
    name = "gunicorn_request_duration_seconds"
    family(name, "histogram", "Time the application took per request, by protocol and status class.")
    bounds = [repr(b) for b in BUCKETS] + ["+Inf"]
    for p, protocol in enumerate(PROTOCOLS):
        for c, status_class in enumerate(STATUS_CLASSES):
            counts, total_s = snapshot.histogram(p, c)
            if not any(counts):
                continue
            labels = f'protocol="{protocol}",status_class="{status_class}"'
            running = 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {running}')
            lines.append(f"{name}_sum{{{labels}}} {total_s!r}")
            lines.append(f"{name}_count{{{labels}}} {running}")
    return "\n".join(lines) + "\n"


class _Client:
    __slots__ = ("sock", "inbuf", "outbuf", "deadline")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = b""
        self.deadline = deadline


class MetricsServer:
    """Plain HTTP/1.1 GET /metrics on the listeners given; arbiter thread only."""

    def __init__(self, listeners: list[socket.socket], render_text: Callable[[], str]) -> None:
        self.listeners = listeners
        self.render_text = render_text
        self.clients: dict[int, _Client] = {}
        for lsock in listeners:
            lsock.setblocking(False)

    def read_fds(self) -> list[int]:
        fds = [lsock.fileno() for lsock in self.listeners] if len(self.clients) < MAX_CLIENTS else []
        return fds + [fd for fd, c in self.clients.items() if not c.outbuf]

    def write_fds(self) -> list[int]:
        return [fd for fd, c in self.clients.items() if c.outbuf]

    def handle(self, readable: list[int], writable: list[int]) -> None:
        now = time.monotonic()
        for lsock in self.listeners:
            if lsock.fileno() in readable:
                self._accept(lsock, now)
        for fd in readable:
            client = self.clients.get(fd)
            if client is not None:
                self._read(client)
        for fd in writable:
            client = self.clients.get(fd)
            if client is not None:
                self._write(client)
        for client in [c for c in self.clients.values() if c.deadline <= now]:
            self._close(client)

    def _accept(self, lsock: socket.socket, now: float) -> None:
        while len(self.clients) < MAX_CLIENTS:
            try:
                sock, _ = lsock.accept()
            except OSError:
                return
            sock.setblocking(False)
            self.clients[sock.fileno()] = _Client(sock, now + CLIENT_TIMEOUT_S)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(client)
            return
        client.inbuf += data
        if b"\r\n\r\n" in client.inbuf or b"\n\n" in client.inbuf:
            self._answer(client)
        elif len(client.inbuf) > MAX_REQUEST_BYTES:
            client.outbuf = _response(431, "Request Header Fields Too Large", "text/plain", b"")
            self._write(client)

    def _answer(self, client: _Client) -> None:
        request_line = bytes(client.inbuf).split(b"\n", 1)[0].decode("latin-1").split()
        method = request_line[0] if request_line else ""
        path = request_line[1].split("?", 1)[0] if len(request_line) > 1 else ""
        if method not in ("GET", "HEAD"):
            client.outbuf = _response(405, "Method Not Allowed", "text/plain", b"GET only\n")
        elif path not in ("/metrics", "/"):
            client.outbuf = _response(404, "Not Found", "text/plain", b"see /metrics\n")
        else:
            body = self.render_text().encode("utf-8")
            client.outbuf = _response(200, "OK", CONTENT_TYPE, body, head=method == "HEAD")
        self._write(client)

    def _write(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client)
            return
        client.outbuf = client.outbuf[sent:]
        if not client.outbuf:
            self._close(client)

    def _close(self, client: _Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        try:
            client.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._close(client)
        for lsock in self.listeners:
            try:
                lsock.close()
            except OSError:
                pass


def _response(status: int, reason: str, content_type: str, body: bytes, head: bool = False) -> bytes:
    head_bytes = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("latin-1")
    return head_bytes + (b"" if head else body)
