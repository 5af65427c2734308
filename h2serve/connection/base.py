"""One accepted socket, from its first byte to the protocol driver.

A connection waits in the poller (no thread) until it is readable; then a
pool thread takes one step: a TLS handshake step, or reading the bytes that
decide the protocol. When a step would block, the connection goes back to
the poller under the same deadline, so a stalled client never holds a thread.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from h2serve.worker import Worker

log = logging.getLogger("h2serve.error")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

_date_cache: list[Any] = [0, ""]


def http_date() -> str:
    """The Date header value, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True)
    return _date_cache[1]


def describe_peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = peer[0]
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer) or "unix"


def recv_nowait(sock: socket.socket, size: int = 65536) -> bytes | None:
    """Bytes available now; b"" at EOF or on a broken connection; None when none yet."""
    try:
        return sock.recv(size)
    except _WOULD_BLOCK:
        return None
    except (ssl.SSLError, OSError):
        return b""


class Connection:
    """An accepted socket and the stage it is in: new, handshake, h1 or h2."""

    __slots__ = (
        "worker", "sock", "peer", "peer_label", "closed", "lingering", "driver", "stage",
        "deadline", "idle_keepalive", "wait_reason", "alpn", "buffered", "__weakref__",
    )

    def __init__(self, worker: Worker, sock: socket.socket, peer: Any) -> None:
        self.worker = worker
        self.sock = sock
        self.peer = peer
        self.peer_label = describe_peer(peer)
        self.closed = False
        self.lingering = False
        self.driver: Any = None
        self.stage = "new"
        self.deadline = 0.0
        self.idle_keepalive = False
        self.wait_reason = "no data before client_data_timeout"
        self.alpn = "http/1.1"
        self.buffered = b""

    # --- poller-side helpers ---------------------------------------------------

    def close_socket(self) -> None:
        driver = self.driver
        if driver is not None and hasattr(driver, "mark_dead"):
            driver.mark_dead()
        try:
            self.sock.close()
        except OSError:
            pass

    def has_input(self) -> bool:
        """Whether the peer has sent something we have not read (never blocks)."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            return bool(socket.socket.recv(self.sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except _WOULD_BLOCK:
            return False
        except OSError:
            return False

    # --- pool-thread steps -------------------------------------------------------

    def on_readable(self) -> None:
        """Runs in a pool thread whenever the poller saw this socket readable."""
        try:
            if self.stage == "h1":
                self.driver.serve()
            elif self.stage == "handshake":
                self._handshake_step()
            elif self.stage == "new":
                self._first_bytes()
        except Exception:
            log.exception("connection %s failed", self.peer_label)
            self.worker.call_soon(self.worker.release, self)

    def _back_to_poller(self, reason: str) -> None:
        self.wait_reason = reason
        self.worker.call_soon(self.worker.await_readable, self, self.deadline)

    def _first_bytes(self) -> None:
        worker = self.worker
        if worker.ssl_context is not None:
            self.deadline = time.monotonic() + worker.cfg.handshake_timeout
            self.sock = worker.ssl_context.wrap_socket(
                self.sock, server_side=True, do_handshake_on_connect=False)
            self.stage = "handshake"
            self._handshake_step()
            return
        data = recv_nowait(self.sock)
        if data is None:
            self._back_to_poller("no data before client_data_timeout")
            return
        if not data:
            worker.call_soon(worker.release, self)
            return
        self.buffered += data
        if len(self.buffered) < len(H2_PREFACE) and H2_PREFACE.startswith(self.buffered):
            self.deadline = time.monotonic() + worker.cfg.client_data_timeout
            self._back_to_poller("incomplete HTTP/2 preface")
            return
        prior_knowledge = self.buffered.startswith(H2_PREFACE)
        self._start_protocol("h2" if prior_knowledge and worker.cfg.h2_enabled else "http/1.1")

    def _handshake_step(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._back_to_poller("TLS handshake not finished before handshake_timeout")
            return
        except ssl.SSLWantWriteError:
            self._back_to_poller("TLS handshake stalled writing")
            return
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", self.peer_label, exc)
            self.worker.call_soon(self.worker.release, self)
            return
        self._start_protocol(self.sock.selected_alpn_protocol() or "http/1.1")

    def _start_protocol(self, alpn: str) -> None:
        worker = self.worker
        cfg = worker.cfg
        initial, self.buffered = self.buffered, b""
        if alpn == "h2" and cfg.h2_enabled:
            from h2serve.connection.http2 import HTTP2Driver

            self.alpn = "h2"
            self.stage = "h2"
            self.driver = HTTP2Driver(self)
            self.driver.start(initial)
            return
        if not cfg.h1_enabled:
            # HTTP/2 only, and the client cannot speak it: a plain refusal it can read.
            log.info("refusing %s: it did not negotiate h2", self.peer_label)
            body = b"This server speaks HTTP/2 only.\n"
            try:
                self.sock.settimeout(1.0)
                self.sock.sendall(
                    b"HTTP/1.1 505 HTTP Version Not Supported\r\nConnection: close\r\n"
                    b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass
            worker.call_soon(worker.linger, self)
            return
        from h2serve.connection.http1 import HTTP1Driver

        self.alpn = "http/1.1"
        self.stage = "h1"
        self.driver = HTTP1Driver(self, initial)
        self.driver.serve()
