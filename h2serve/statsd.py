"""A StatsD client that never holds up a request.

Datagrams go out on a non-blocking socket; when the socket buffer is full or
the collector is absent the datagram is dropped (and counted in ``dropped``),
never retried. The lines are gunicorn's: ``NAME:1|c|@1.0`` counters,
``NAME:12.5|ms`` timers, ``NAME:3|g`` gauges, with ``statsd_prefix`` (a dot
added when missing) in front and ``|#dogstatsd_tags`` after each line. The
lines of one event (a request's timer and counters) share one datagram,
newline-separated, as StatsD, statsd_exporter and the Datadog agent accept.
"""

from __future__ import annotations

import re
import socket
from typing import Any

DEFAULT_PORT = 8125


def parse_address(value: str) -> tuple[int, Any]:
    """``HOST:PORT``, ``HOST`` (port 8125), ``[V6]:PORT`` or ``unix:PATH`` /
    ``unix://PATH`` -> (address family, sendto address). As gunicorn,
    ``unix:NUMBER`` means host ``unix`` on that port. Raises ValueError."""
    text = value.strip()
    if re.fullmatch(r"unix:\d+", text):
        return socket.AF_INET, ("unix", int(text[5:]))
    if text.startswith("unix:"):
        path = text[7:] if text.startswith("unix://") else text[5:]
        if not path:
            raise ValueError(f"no socket path in {value!r}")
        return socket.AF_UNIX, path
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected [IPV6]:PORT, got {value!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"{port_text!r} is not a port number (expected HOST:PORT or unix:PATH)") from None
    if not host or not 0 < port < 65536:
        raise ValueError(f"expected HOST:PORT or unix:PATH, got {value!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host.lower(), port)


def normalize_prefix(prefix: str) -> str:
    """gunicorn's rule: trailing dots collapse to one; empty stays empty."""
    stripped = prefix.rstrip(".")
    return f"{stripped}." if stripped else ""


class StatsdClient:
    """Sends from any thread; each send is one non-blocking system call."""

    def __init__(self, address: str, prefix: str = "", tags: str = "") -> None:
        family, target = parse_address(address)
        if family != socket.AF_UNIX:
            # Resolved once, at start, so no request ever waits for DNS.
            info = socket.getaddrinfo(target[0], target[1], 0, socket.SOCK_DGRAM)
            family, target = info[0][0], info[0][4]
        self.target = target
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.prefix = normalize_prefix(prefix)
        self.suffix = f"|#{tags}" if tags else ""
        self.dropped = 0
        p, t = self.prefix, self.suffix
        self._request_lines = (f"{p}gunicorn.request.duration:%s|ms{t}\n"
                               f"{p}gunicorn.requests:1|c|@1.0{t}\n"
                               f"{p}gunicorn.request.status.%d:1|c|@1.0{t}")

    def send(self, text: str) -> None:
        try:
            self.sock.sendto(text.encode("ascii", "replace"), self.target)
        except OSError:
            self.dropped += 1   # full buffer, no collector, refused: metrics never cost a request

    def counter(self, name: str, amount: int = 1) -> None:
        self.send(f"{self.prefix}{name}:{amount}|c|@1.0{self.suffix}")

    def gauge(self, name: str, value: float) -> None:
        self.send(f"{self.prefix}{name}:{value}|g{self.suffix}")

    def gauges(self, pairs: list[tuple[str, float]]) -> None:
        """Several gauges in one datagram."""
        p, t = self.prefix, self.suffix
        self.send("\n".join(f"{p}{name}:{value}|g{t}" for name, value in pairs))

    def request(self, status: int, milliseconds: float) -> None:
        """gunicorn's three lines per request, in one datagram."""
        self.send(self._request_lines % (round(milliseconds, 3), status))

    def close(self) -> None:
        self.sock.close()
