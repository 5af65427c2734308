"""The HTTP/1.1 connection driver: joins a socket to an HTTP1Protocol.

A pool thread holds the connection only while there is something to do:
reading a request head that has started arriving (under an overall deadline)
and running the app. Idle keep-alive connections wait in the poller.
"""

from __future__ import annotations

import base64
import logging
import ssl
import sys
import time
from collections import deque
from typing import Any

from h2serve.connection.common import (
    SQUEEZED_WAIT_S,
    WOULD_BLOCK,
    add_default_fields,
    pacing_limit,
    recv_nowait,
)
from h2serve.connection.contracts import Link
from h2serve.protocol.events import (
    BodyEnded,
    BodyReceived,
    ConnectionTerminated,
    Headers,
    ProtocolViolation,
    RequestReceived,
)
from h2serve.protocol.http1 import (
    HTTP1Protocol,
    h2c_upgrade_requested,
    switching_protocols_response,
)
from h2serve.wsgi import ClientDisconnected, connection_environ, serve_request

log = logging.getLogger("h2serve.error")

# Response bytes handed to one blocking send: send_timeout bounds each piece (an
# SSL write of a whole 50 MB body would otherwise have to finish within it), and
# a big body goes out from the app's own buffer instead of a copy joined to the head.
SEND_PIECE = 256 * 1024
# A response write past the address's share of waiting threads goes out in
# pieces this small, each within SQUEEZED_WAIT_S: a slow but live client keeps
# its response, a stalled one is cut within half a second.
SQUEEZED_PIECE = 16 * 1024


class HTTP1Driver:
    """Serves the requests of one HTTP/1.x connection, one after another."""

    def __init__(self, conn: Link, initial: bytes = b"") -> None:
        cfg = conn.worker.cfg
        self.conn = conn
        self.cfg = cfg
        self.proto = HTTP1Protocol(
            limit_request_line=cfg.limit_request_line or 1 << 20,
            limit_request_fields=cfg.limit_request_fields,
            limit_request_field_size=cfg.limit_request_field_size or 1 << 20,
            limit_request_head=cfg.limit_request_head,
        )
        self.events: deque[Any] = deque()
        self.initial = initial
        self.head_deadline = 0.0   # set when the first byte of a request head arrives
        self.requests_served = 0   # a connection is idle only once it has served one
        # body_prebuffer: a request whose app waits in the poller for its body, and
        # that body's pacing so far (bytes, since when, last arrival, complete).
        self.pending: RequestReceived | None = None
        self.body_received = 0
        self.body_wait_start = 0.0
        self.body_last_data = 0.0
        self.body_complete = False
        self.holds_share = False   # counted in the worker's shares.arriving
        self.unstarted_by = 0.0    # a request waiting unstarted is refused then
        # The response in progress: bytes sent and seconds spent blocked sending
        # them (send_min_rate is a rule over the whole response).
        self.sent = 0
        self.send_waited = 0.0
        self._timeout: float | None = -1.0
        tls = isinstance(conn.sock, ssl.SSLSocket)
        self.base_environ = connection_environ(
            server_addr=conn.sock.getsockname(), peer_addr=conn.peer,
            url_scheme="https" if tls else "http", alpn="http/1.1",
            multiprocess=conn.worker.multiprocess, errors=sys.stderr)
        if tls:
            self.base_environ.update(conn.tls_environ())

    # --- socket modes -------------------------------------------------------------

    def _set_timeout(self, timeout: float | None) -> None:
        if self._timeout != timeout:
            self.conn.sock.settimeout(timeout)
            self._timeout = timeout

    def _squeezed(self) -> bool:
        """Pool thread: the client's address already keeps blocked_cap threads
        waiting on it, so a further wait lasts SQUEEZED_WAIT_S at most and lends
        its pool slot (ThreadPool.lend_slot) meanwhile."""
        worker = self.conn.worker
        return worker.shares.blocked.get(self.conn.peer_key, 0) >= worker.shares.cap

    def _send_now(self, piece: bytes | memoryview) -> int:
        """Bytes of piece the socket takes without waiting. A TLS write that would
        block reports 0 and must be retried with the same piece (OpenSSL's rule)."""
        self._set_timeout(0.0)
        try:
            return self.conn.sock.send(piece)
        except WOULD_BLOCK:
            return 0

    def _wait_on_client(self, op: Any, arg: Any, timeout: float) -> Any:
        """op(arg) on the socket, counted as a thread waiting on this client:
        only once the socket would block (the common send or read does not
        wait, and must not count against the address's share)."""
        conn = self.conn
        worker, key = conn.worker, conn.peer_key
        squeezed = self._squeezed()
        self._set_timeout(min(timeout, SQUEEZED_WAIT_S) if squeezed else timeout)
        worker.shares.count(worker.shares.blocked, key, 1)
        try:
            if not squeezed:
                return op(arg)
            with worker.pool.lend_slot():
                try:
                    return op(arg)
                except TimeoutError:
                    if timeout > SQUEEZED_WAIT_S:
                        worker.shares.note_squeezed_out(key)
                    raise
        finally:
            worker.shares.count(worker.shares.blocked, key, -1)

    def sendall(self, data: bytes) -> None:
        """Blocks while the peer reads. Each piece may wait send_timeout at most,
        and with send_min_rate the whole response send_timeout plus a second per
        send_min_rate bytes sent; past either the connection is cut."""
        try:
            if len(data) <= SEND_PIECE:
                self._send_piece(data)
                return
            with memoryview(data) as view:
                for start in range(0, len(view), SEND_PIECE):
                    self._send_piece(view[start:start + SEND_PIECE])
        except (OSError, ValueError) as exc:
            # The response is cut short: the connection must not carry another.
            self.proto.close_after_response()
            raise ClientDisconnected(str(exc)) from exc

    def _send_piece(self, piece: bytes | memoryview) -> None:
        cfg, conn = self.cfg, self.conn
        limit = pacing_limit(cfg.send_timeout, cfg.send_min_rate, self.sent, self.send_waited)
        if limit <= 0:
            raise TimeoutError("the client took the response slower than send_min_rate")
        sent = self._send_now(piece)
        if sent == len(piece):
            self.sent += sent
            return
        if sent:   # a plain socket took part of it
            piece = memoryview(piece)[sent:]
            self.sent += sent
        started = time.monotonic()
        try:
            if len(piece) <= SQUEEZED_PIECE or not self._squeezed():
                self._wait_on_client(conn.sock.sendall, piece, limit)
            else:
                with memoryview(piece) as view:
                    for start in range(0, len(view), SQUEEZED_PIECE):
                        self._wait_on_client(conn.sock.sendall,
                                             view[start:start + SQUEEZED_PIECE], limit)
        finally:
            self.send_waited += time.monotonic() - started
        self.sent += len(piece)

    def send_parts(self, *parts: bytes) -> None:
        """Send parts in order: joined when small, one by one when big (no copy)."""
        if sum(len(part) for part in parts) <= SEND_PIECE:
            self.sendall(b"".join(parts))
            return
        for part in parts:
            if part:
                self.sendall(part)

    def recv_body(self, exchange: HTTP1Exchange) -> bytes:
        """Body bytes for the app. One wait lasts at most client_data_timeout, and
        all of them together at most client_data_timeout plus a second per
        body_min_rate bytes received (mod_reqtimeout's MinRate); past either the
        body is too slow: the exchange is marked for a 408 and the read fails."""
        cfg = self.cfg
        timeout = pacing_limit(cfg.client_data_timeout, cfg.body_min_rate, exchange.received,
                               exchange.waited)
        if timeout <= 0:
            raise exchange.too_slow()
        self._set_timeout(0.0)
        data = recv_nowait(self.conn.sock)
        if data is not None:
            exchange.received += len(data)
            return data
        started = time.monotonic()
        try:
            data = self._wait_on_client(self.conn.sock.recv, 65536, timeout)
        except TimeoutError:
            raise exchange.too_slow() from None
        except (OSError, ValueError) as exc:
            raise ClientDisconnected(f"reading the request body: {exc}") from exc
        finally:
            exchange.waited += time.monotonic() - started
        exchange.received += len(data)
        return data

    # --- the request loop ------------------------------------------------------

    def on_readable(self) -> None:
        """Pool thread, when the poller saw the socket readable."""
        self.serve()

    def mark_dead(self) -> None:
        """Poller, as the socket closes. Nothing to stop: one pool thread at a time
        serves an HTTP/1.1 connection, and it hands the socket back before closing."""

    def serve(self) -> None:
        """Pool thread entry: the socket is readable, or a request is buffered."""
        worker = self.conn.worker
        try:
            while True:
                request = self._next_request()
                if request is None or not self._may_start(request):
                    return
                try:
                    keep_open = self._handle(request)
                finally:
                    if self.holds_share:
                        self.holds_share = False
                        worker.shares.count(worker.shares.arriving, self.conn.peer_key, -1)
                if not keep_open:
                    return
        except Exception:
            log.exception("HTTP/1.1 connection %s failed", self.conn.peer_label)
            worker.call_soon(worker.release, self.conn)

    def _next_request(self) -> RequestReceived | None:
        conn, worker = self.conn, self.conn.worker
        self._set_timeout(0.0)
        while True:
            while self.events and self.pending is None:
                event = self.events.popleft()
                if type(event) is RequestReceived:
                    if not self._prebuffer_first(event):
                        return event
                    break
                if type(event) is ProtocolViolation:
                    self._reject(event)
                    return None
                if type(event) is ConnectionTerminated:
                    worker.call_soon(worker.release, conn)
                    return None
            if self.pending is not None and self.body_complete:
                request, self.pending = self.pending, None
                return request
            if self.initial:
                data, self.initial = self.initial, b""
            else:
                data = recv_nowait(conn.sock)
            if self.pending is not None:
                if not self._prebuffer_step(data):
                    return None
                continue
            if data is None:
                if self.head_deadline:
                    conn.idle_keepalive = False
                    conn.deadline = self.head_deadline
                    conn.wait_reason = "request head not complete before client_data_timeout"
                else:
                    # A new connection's first request is on its way: a drain that
                    # closed it as idle would leave the client with no answer.
                    conn.idle_keepalive = self.requests_served > 0
                    conn.deadline = time.monotonic() + self.cfg.keepalive
                    conn.wait_reason = "keep-alive timeout"
                worker.call_soon(worker.await_readable, conn, conn.deadline)
                return None
            if data and not self.head_deadline:
                self.head_deadline = time.monotonic() + self.cfg.client_data_timeout
            events = self.proto.receive(data)
            if not data and not events:
                worker.call_soon(worker.release, conn)  # EOF the protocol had nothing to say about
                return None
            self.events.extend(events)

    def _may_start(self, request: RequestReceived) -> bool:
        """Whether the app may run request now. At most blocked_cap requests of
        one address run with a body still arriving; and once the address had a
        response cut for waiting past its share, its further requests wait while
        it keeps blocked_cap threads waiting (a client that reads nothing on many
        connections). Waiting is unstarted, in the poller, holding no thread.
        False when this one waits so."""
        conn, worker = self.conn, self.conn.worker
        arriving = not (request.end_stream or self.proto.request_body_complete)
        if not worker.shares.over_share(conn.peer_key) and (
                not arriving or worker.shares.take(worker.shares.arriving, conn.peer_key)):
            self.holds_share = arriving
            self.unstarted_by = 0.0
            return True
        if arriving and not self.body_wait_start:   # not prebuffered: its wait starts now
            self.body_received = 0
            self.body_wait_start = self.body_last_data = time.monotonic()
        if not self.unstarted_by:
            self.unstarted_by = (self._body_deadline() if arriving
                                 else time.monotonic() + self.cfg.client_data_timeout)
        self.pending, self.body_complete = request, True
        conn.idle_keepalive = False
        conn.deadline = self.unstarted_by
        conn.wait_reason = "waited for its address's share of the pool"
        worker.call_soon(worker.await_share, conn, conn.deadline)
        return False

    def reject_unstarted(self) -> None:
        """Pool thread: a request that waited unstarted (await_share) until its
        deadline: 408 when its body was due, else 503; the connection closes."""
        request, self.pending = self.pending, None
        if request is not None and not request.end_stream:
            violation = ProtocolViolation(
                reason="request body not started in time: its address kept "
                       "max_blocked_threads threads waiting", status=408)
        else:
            violation = ProtocolViolation(
                reason="request not started in time: its address kept "
                       "max_blocked_threads threads waiting", status=503)
        self._reject(violation)

    # --- body_prebuffer: the body arrives while the app holds no thread ------------

    def _prebuffer_first(self, request: RequestReceived) -> bool:
        """True when request must wait in the poller for its body before the app runs."""
        limit = self.cfg.body_prebuffer
        if request.end_stream or not limit or request.expect_continue:
            return False  # Expect: the client sends nothing until the app reads
        self.pending = request
        self.body_received = 0
        self.body_complete = False
        self.body_wait_start = self.body_last_data = time.monotonic()
        self._count_body(self.events)
        return True

    def _count_body(self, events: Any) -> None:
        for event in events:
            kind = type(event)
            if kind is BodyReceived:
                self.body_received += len(event.data)
            elif kind is not RequestReceived:   # BodyEnded, a violation, EOF: nothing to wait for
                self.body_complete = True
        if self.body_received >= self.cfg.body_prebuffer:
            self.body_complete = True

    def _body_deadline(self) -> float:
        cfg = self.cfg
        deadline = self.body_last_data + cfg.client_data_timeout
        if cfg.body_min_rate:
            deadline = min(deadline, self.body_wait_start + cfg.client_data_timeout
                           + self.body_received / cfg.body_min_rate)
        return deadline

    def _prebuffer_step(self, data: bytes | None) -> bool:
        """Feed what recv_nowait returned for a pending request; False when the
        connection went to the poller or is closing."""
        conn, worker = self.conn, self.conn.worker
        if time.monotonic() > self._body_deadline():
            self.pending = None
            self._reject(ProtocolViolation(reason="request body too slow", status=408))
            return False
        if data is None:
            conn.idle_keepalive = False
            conn.deadline = self._body_deadline()
            conn.wait_reason = "request body stalled or slower than body_min_rate"
            worker.call_soon(worker.await_readable, conn, conn.deadline)
            return False
        if data:
            self.body_last_data = time.monotonic()
        events = self.proto.receive(data)
        if not data and not events:
            worker.call_soon(worker.release, conn)
            return False
        self._count_body(events)
        self.events.extend(events)
        return True

    def _reject(self, violation: ProtocolViolation) -> None:
        """Bad input: answer with the status the protocol chose, once, and close."""
        log.info("bad request from %s: %s", self.conn.peer_label, violation.reason)
        try:
            self.sendall(self.proto.error_response(violation.status, violation.reason))
        except ClientDisconnected:
            pass
        self.conn.worker.call_soon(self.conn.worker.linger, self.conn)

    def _handle(self, request: RequestReceived) -> bool:
        """Run one request; True when the connection stays open for the next."""
        conn, worker, cfg = self.conn, self.conn.worker, self.cfg
        conn.idle_keepalive = False
        conn.used = True
        self.head_deadline = 0.0
        self.requests_served += 1
        if (cfg.plaintext and cfg.h2_enabled and cfg.http2_cleartext in ("upgrade", "both")
                and request.end_stream):
            settings = h2c_upgrade_requested(request)
            if settings is not None:
                self._upgrade_to_h2(request, settings)
                return False
        if worker.draining:
            self.proto.close_after_response()
        exchange = HTTP1Exchange(self, request)
        self.sent, self.send_waited = 0, 0.0
        if self.body_wait_start:   # the body was prebuffered: its pacing so far counts
            exchange.received = self.body_received
            exchange.waited = time.monotonic() - self.body_wait_start
            self.body_wait_start = 0.0
        serve_request(worker.app, exchange, request, self.base_environ, worker.forwarded,
                      worker.access_log, hooks=worker.request_hooks)
        worker.request_done()
        if exchange.violation is not None and not exchange.head_sent:
            self._reject(exchange.violation)
            return False
        # A drain that began after the head promised keep-alive closes through the
        # idle path instead, which first serves a request the client already sent.
        if exchange.failed or not self.proto.keep_alive:
            worker.call_soon(worker.linger, conn)
            return False
        if not self.proto.request_body_complete and not self._discard_body(exchange):
            worker.call_soon(worker.linger, conn)
            return False
        self.events.clear()
        self.events.extend(self.proto.start_next_request())
        return True

    def _discard_body(self, exchange: HTTP1Exchange) -> bool:
        """Read and drop what the app left of the body, within a byte and time budget."""
        budget = self.cfg.discard_body_limit
        deadline = time.monotonic() + self.cfg.client_data_timeout
        try:
            while not exchange.body_done:
                chunk = exchange.read_event_bytes(deadline)
                budget -= len(chunk)
                if budget < 0:
                    return False
        except ClientDisconnected:
            return False
        return True

    def _upgrade_to_h2(self, request: RequestReceived, settings: bytes) -> None:
        """RFC 7540 §3.2: 101, then the connection setup makes the request stream 1
        of an HTTP/2 connection."""
        conn = self.conn
        try:
            self.sendall(switching_protocols_response())
        except ClientDisconnected:
            conn.worker.call_soon(conn.worker.release, conn)
            return
        self._set_timeout(0.0)
        # h2c_upgrade_requested decoded the header; HTTP2Protocol.initiate wants it encoded
        conn.switch_to_h2c(base64.urlsafe_b64encode(settings), request, self.proto.trailing_data)


class HTTP1Exchange:
    """One request/response on an HTTP/1.x connection, for the WSGI adapter."""

    __slots__ = ("driver", "proto", "request", "protocol", "pending_head", "head_sent",
                 "continue_sent", "body_done", "trailers", "failed", "violation", "_carry",
                 "received", "waited")

    def __init__(self, driver: HTTP1Driver, request: RequestReceived) -> None:
        self.driver = driver
        self.proto = driver.proto
        self.request = request
        self.protocol = "HTTP/1.0" if request.http_version == "1.0" else "HTTP/1.1"
        self.pending_head = b""
        self.head_sent = False
        self.continue_sent = False
        self.body_done = request.end_stream
        self.trailers: Headers | None = None
        self.failed = False
        self.violation: ProtocolViolation | None = None
        self._carry = b""
        self.received = 0     # body bytes read from the socket (body_min_rate)
        self.waited = 0.0     # seconds spent waiting for them

    def too_slow(self) -> ClientDisconnected:
        """The body missed its deadline: answer 408 (if nothing was sent yet) and close."""
        self.violation = ProtocolViolation(reason="request body too slow", status=408)
        self.failed = True
        return ClientDisconnected("request body too slow")

    # --- request body ------------------------------------------------------------

    def read_event_bytes(self, deadline: float | None = None) -> bytes:
        """The next piece of body; b"" once the body is complete."""
        driver = self.driver
        events = driver.events
        while True:
            while events:
                event = events.popleft()
                kind = type(event)
                if kind is BodyReceived:
                    return event.data
                if kind is BodyEnded:
                    self.body_done = True
                    self.trailers = event.trailers
                    return b""
                if kind is ProtocolViolation:
                    self.violation = event
                    self.failed = True
                    raise ClientDisconnected(event.reason)
            if self.body_done:
                return b""
            if deadline is not None and time.monotonic() > deadline:
                raise ClientDisconnected("request body too slow")
            data = driver.recv_body(self)
            events.extend(driver.proto.receive(data))
            if not data and not events:
                raise ClientDisconnected("connection closed during the request body")

    def read(self, size: int) -> bytes:
        if self._carry:
            data = self._carry
        else:
            if self.body_done:
                return b""
            if self.request.expect_continue and not self.continue_sent and not self.head_sent:
                self.continue_sent = True
                self.driver.sendall(self.proto.informational(100, []))
            data = self.read_event_bytes()
        if 0 <= size < len(data):
            data, self._carry = data[:size], data[size:]
        else:
            self._carry = b""
        return data

    def request_trailers(self) -> Headers | None:
        return self.trailers

    # --- response ----------------------------------------------------------------

    def _head(self, status: int, reason: str, headers: Headers) -> bytes:
        self.head_sent = True
        if self.driver.conn.worker.draining:
            self.proto.close_after_response()  # a drain began while the app ran: say so
        headers = list(headers)
        add_default_fields(headers, title_case=True)
        return self.proto.response_head(status, reason, headers)

    def send_informational(self, status: int, headers: Headers) -> None:
        if self.request.http_version == "1.0":
            return  # HTTP/1.0 clients do not expect 1xx (RFC 9110 §15.2)
        self.driver.sendall(self.proto.informational(status, headers))

    def send_head(self, status: int, reason: str, headers: Headers, end_stream: bool) -> None:
        head = self._head(status, reason, headers)
        if end_stream:
            self.driver.sendall(head + self.proto.end(None))
        else:
            self.pending_head = head  # goes out with the first body bytes

    def send_body(self, data: bytes, end_stream: bool = False) -> None:
        framed = self.proto.body(bytes(data))
        head, self.pending_head = self.pending_head, b""
        self.driver.send_parts(head, framed, self.proto.end(None) if end_stream else b"")

    def send_end(self, trailers: Headers | None) -> None:
        tail = self.proto.end(trailers)
        if self.pending_head:
            tail, self.pending_head = self.pending_head + tail, b""
        self.driver.sendall(tail)

    def send_complete(self, status: int, reason: str, headers: Headers, body: bytes,
                      trailers: Headers | None) -> None:
        head = self._head(status, reason, headers)
        self.driver.send_parts(head, self.proto.body(body), self.proto.end(trailers))

    def abort(self) -> None:
        self.failed = True  # the driver closes: the client sees a truncated response


