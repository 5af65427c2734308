"""Connection setup: one accepted socket, from its first byte to its protocol
driver (PROXY header, plain HTTP on a TLS port, TLS handshake, ALPN or the
HTTP/2 preface, and the h2c switch from HTTP/1.1).

A connection waits in the poller (no thread) until it is readable; then a
pool thread takes one step: a TLS handshake step, or reading the bytes that
decide the protocol. When a step would block, the connection goes back to
the poller under the same deadline, so a stalled client never holds a thread.
This is the one module that knows both drivers.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any

from h2serve.connection.common import WOULD_BLOCK, describe_peer, recv_nowait
from h2serve.connection.contracts import Driver, WorkerHost
from h2serve.connection.http1 import HTTP1Driver
from h2serve.connection.http2 import HTTP2Driver
from h2serve.protocol.events import RequestReceived
from h2serve.protocol.h2_frames import PREFACE as H2_PREFACE
from h2serve.transport.proxy_protocol import (
    VERSIONS_BY_MODE,
    ProxyHeader,
    ProxyProtocolError,
    parse_proxy_header,
)
from h2serve.transport.tls import (
    looks_like_plain_http,
    peer_certificate_environ,
    plain_http_refusal,
)

log = logging.getLogger("h2serve.error")

PLAIN_HTTP_WARN_S = 60.0  # at most one warning about plain HTTP on a TLS port per worker so often
PROXY_PEEK_BYTES = 536    # a v1 line or a v2 header with a few TLVs, in one look


def _proxy_allowed(worker: Any, peer: Any) -> bool:
    """Whether peer may send a PROXY header; unix-socket peers are local, so always."""
    return not isinstance(peer, tuple) or worker.proxy_policy.trusts(str(peer[0]))


class Connection:
    """An accepted socket and the stage it is in: new, handshake, h1 or h2."""

    __slots__ = (
        "worker", "sock", "peer", "peer_label", "closed", "lingering", "used", "driver", "stage",
        "peer_key", "deadline", "idle_keepalive", "wait_reason", "alpn", "buffered", "__weakref__",
    )

    def __init__(self, worker: WorkerHost, sock: socket.socket, peer: Any) -> None:
        self.worker = worker
        self.sock = sock
        self.peer = peer
        self.peer_label = describe_peer(peer)
        # The client address, as the per-address counts of the worker key it.
        self.peer_key = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.closed = False
        self.lingering = False
        self.driver: Driver | None = None
        self.stage = "new"
        self.deadline = 0.0
        self.idle_keepalive = False
        # A request has started on it (set by the driver, any thread): until then
        # it counts against max_unused_connections_per_peer.
        self.used = False
        self.wait_reason = "no data before client_data_timeout"
        self.alpn = "http/1.1"
        self.buffered = b""

    # --- poller-side helpers ---------------------------------------------------

    def close_socket(self) -> None:
        if self.driver is not None:
            self.driver.mark_dead()
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
        except WOULD_BLOCK:
            return False
        except OSError:
            return False

    def tls_environ(self) -> dict[str, Any]:
        """SSL_CLIENT_* keys when the client presented a certificate."""
        try:
            return peer_certificate_environ(self.sock)
        except (ValueError, OSError):
            return {}

    # --- pool-thread steps -------------------------------------------------------

    def on_readable(self) -> None:
        """Runs in a pool thread whenever the poller saw this socket readable."""
        try:
            if self.stage == "h1" and self.driver is not None:
                self.driver.on_readable()
            elif self.stage == "handshake":
                self._handshake_step()
            elif self.stage in ("new", "proxy", "proxied"):
                self._first_bytes()
        except Exception:
            log.exception("connection %s failed", self.peer_label)
            self.worker.call_soon(self.worker.release, self)

    def _back_to_poller(self, reason: str) -> None:
        self.wait_reason = reason
        self.worker.call_soon(self.worker.await_readable, self, self.deadline)

    def _first_bytes(self) -> None:
        worker = self.worker
        if (worker.cfg.proxy_protocol != "off" and self.stage != "proxied"
                and not self._read_proxy_header()):
            return
        if worker.ssl_context is not None:
            if self._refused_plain_http():
                return
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
        prior_knowledge_allowed = (worker.cfg.h2_enabled
                                   and worker.cfg.http2_cleartext in ("prior-knowledge", "both"))
        self._start_protocol("h2" if prior_knowledge and prior_knowledge_allowed else "http/1.1")

    def _refused_plain_http(self) -> bool:
        """A TLS listener got plain HTTP (a proxy or a health check using http://):
        a readable 400 and a close, and a warning naming --plaintext, at most one
        per PLAIN_HTTP_WARN_S per worker. True when refused."""
        try:
            first = self.sock.recv(8, socket.MSG_PEEK)
        except OSError:
            return False   # the handshake will see what happened
        if not looks_like_plain_http(first):
            return False
        worker = self.worker
        try:
            self.sock.send(plain_http_refusal(first))
        except OSError:
            pass
        now = time.monotonic()
        worker.plain_http_refused += 1
        if now >= worker.plain_http_warned_at + PLAIN_HTTP_WARN_S:
            log.warning("%d plain HTTP request(s) on a TLS listener, the last from %s, answered "
                        "400: use https:// in the client, or serve plain HTTP with --plaintext "
                        "(behind a proxy that terminates TLS)",
                        worker.plain_http_refused, self.peer_label)
            worker.plain_http_warned_at, worker.plain_http_refused = now, 0
        worker.call_soon(worker.linger, self)
        return True

    def _read_proxy_header(self) -> bool:
        """--proxy-protocol: take the PROXY header, and not one byte more, off the socket
        before TLS or HTTP see it; the peer becomes the client it names. Waits in the
        poller (under client_data_timeout) while the header is incomplete. Returns True
        once done; False when waiting or when the connection was closed."""
        worker = self.worker
        if self.stage != "proxy":
            self.stage = "proxy"
            self.deadline = time.monotonic() + worker.cfg.client_data_timeout
            if not _proxy_allowed(worker, self.peer):
                log.warning("refusing connection from %s: PROXY protocol not allowed from it "
                            "(proxy_allow_ips)", self.peer_label)
                worker.call_soon(worker.release, self)
                return False
        need = 0
        while True:
            try:
                peeked = self.sock.recv(max(PROXY_PEEK_BYTES, need - len(self.buffered)),
                                        socket.MSG_PEEK)
            except WOULD_BLOCK:
                self._back_to_poller("PROXY protocol header not complete before client_data_timeout")
                return False
            except OSError:
                peeked = b""
            if not peeked:
                worker.call_soon(worker.release, self)
                return False
            try:
                header = parse_proxy_header(self.buffered + peeked,
                                            VERSIONS_BY_MODE[worker.cfg.proxy_protocol])
            except ProxyProtocolError as exc:
                log.info("PROXY protocol error from %s: %s", self.peer_label, exc)
                worker.call_soon(worker.release, self)
                return False
            if isinstance(header, ProxyHeader):
                break
            # Every byte seen so far belongs to the header: consume them and look again.
            self.buffered += self.sock.recv(len(peeked))
            need = header.total
        left = header.consumed - len(self.buffered)
        while left > 0:   # these bytes were peeked, so they are there to take
            taken = self.sock.recv(left)
            if not taken:
                worker.call_soon(worker.release, self)
                return False
            left -= len(taken)
        self.buffered = b""
        if isinstance(header.source, tuple):
            self.peer = header.source
            self.peer_label = describe_peer(header.source)
        self.stage = "proxied"
        return True

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
            self.alpn = "h2" if worker.ssl_context is not None else "h2c"
            self.stage = "h2"
            h2_driver = HTTP2Driver(self)
            self.driver = h2_driver
            worker.call_soon(worker.note_unused, self)
            h2_driver.start(initial)
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
        self.alpn = "http/1.1"
        self.stage = "h1"
        h1_driver = HTTP1Driver(self, initial)
        self.driver = h1_driver
        worker.call_soon(worker.note_unused, self)
        h1_driver.serve()

    def switch_to_h2c(self, settings: bytes, request: RequestReceived, leftover: bytes) -> None:
        """RFC 7540 §3.2, after the HTTP/1.1 driver sent 101: the upgrading request
        becomes stream 1 of an HTTP/2 connection. settings is HTTP2-Settings,
        base64url-encoded as HTTP2Protocol.initiate wants it; leftover, the bytes
        read past the request. Runs on the pool thread that served the request."""
        self.alpn = "h2c"
        self.stage = "h2"
        driver = HTTP2Driver(self, upgrade=(settings, request))
        self.driver = driver
        driver.start(leftover)
