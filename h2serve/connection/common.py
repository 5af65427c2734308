"""What both connection drivers and the connection setup share: the socket
errors that mean "not now", the Date header, peer labels, a non-blocking read,
the squeezed-wait bound and the worker's budget of queued response bytes.
Any thread may call these."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

from h2serve import SERVER_SOFTWARE
from h2serve.logs import MONTHS

WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
# A pool thread that must wait on its client while that client's address
# already keeps max_blocked_threads threads waiting gets this long, no more.
SQUEEZED_WAIT_S = 0.5

_date_cache: list[Any] = [0, ""]
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def format_http_date(seconds: float) -> str:
    """RFC 9110 IMF-fixdate, in English whatever the locale (email.utils would
    do it too, at the cost of a megabyte of imports in every worker)."""
    t = time.gmtime(seconds)
    return (f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def http_date() -> str:
    """The Date header value, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = format_http_date(now)
    return _date_cache[1]


def describe_peer(peer: Any) -> str:
    """host:port (IPv6 in brackets) for logs; "unix" for a unix-socket peer."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = peer[0]
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer) or "unix"


def recv_nowait(sock: socket.socket, size: int = 65536) -> bytes | None:
    """Bytes available now; b"" at EOF or on a broken connection; None when none yet."""
    try:
        return sock.recv(size)
    except WOULD_BLOCK:
        return None
    except (ssl.SSLError, OSError):
        return b""


def add_default_fields(headers: list[tuple[str, str]], *, title_case: bool) -> None:
    """Appends Date and Server when the app set neither (RFC 9110 §6.6.1 asks an
    origin server with a clock for Date). HTTP/1.1 writes them as "Date" and
    "Server", HTTP/2 in lower case, as its field names must be."""
    has_date = has_server = False
    for name, _ in headers:
        lowered = name.lower()
        if lowered == "date":
            has_date = True
        elif lowered == "server":
            has_server = True
    if not has_date:
        headers.append(("Date" if title_case else "date", http_date()))
    if not has_server:
        headers.append(("Server" if title_case else "server", SERVER_SOFTWARE))


def pacing_limit(grace: float, min_rate: int, moved: int, waited: float) -> float:
    """Seconds a transfer's next wait may last: `grace` at most, and with a
    minimum rate (body_min_rate, send_min_rate; mod_reqtimeout's MinRate) all
    its waits together at most `grace` plus a second per `min_rate` bytes
    moved so far. Zero or less: the transfer is too slow."""
    if not min_rate:
        return grace
    return min(grace, grace + moved / min_rate - waited)


class ByteBudget:
    """Bytes a worker lets its connections keep queued for the poller to send
    (response bodies an app has finished with while its client's window or
    socket is full), so a crowd of slow readers is bounded in memory: past
    it, an app thread waits for its client as it would without a queue.
    Any thread; one lock."""

    __slots__ = ("limit", "used", "_lock")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int, force: bool = False) -> bool:
        """Reserve size bytes; False (nothing reserved) when they do not fit,
        unless force (a small handed-off body that is already on its way)."""
        with self._lock:
            if not force and self.used + size > self.limit:
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size
