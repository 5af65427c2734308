"""The HTTP/2 connection driver: one socket, one HTTP2Protocol, many streams.

The poller thread reads the socket and feeds the protocol; each stream's app
runs on a pool thread as soon as its HEADERS arrive. One lock per connection
serialises the protocol object and the socket (an SSL object must not be used
by two threads at once); it is only ever held for non-blocking work. App
threads wait on the lock's condition for body bytes, send window, or room in
the output buffer, each with a deadline. Which streams run on the pool and how
long a thread may wait on its client is h2_scheduling.StreamScheduler's policy.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import time
from collections import deque
from threading import get_ident
from typing import Any

from h2serve import metrics
from h2serve.connection.common import WOULD_BLOCK, add_default_fields
from h2serve.connection.contracts import Link
from h2serve.connection.h2_scheduling import StreamScheduler
from h2serve.protocol.events import (
    BodyEnded,
    BodyReceived,
    ConnectionTerminated,
    Headers,
    PriorityUpdated,
    ProtocolViolation,
    RequestReceived,
    StreamReset,
    WindowUpdated,
)
from h2serve.protocol.h2_responses import response_head
from h2serve.protocol.http2 import HTTP2Limits, HTTP2Protocol
from h2serve.wsgi import ClientDisconnected, connection_environ, serve_request

log = logging.getLogger("h2serve.error")

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, CANCEL, INADEQUATE_SECURITY = 0x0, 0x1, 0x2, 0x8, 0xC
ENHANCE_YOUR_CALM = 0xB
MAX_WRITE = 256 * 1024            # bytes handed to one send() call
HIGH_WATER = 512 * 1024           # app writers wait while more than this is unsent
SEND_PIECE = 64 * 1024            # body bytes framed per step, so HIGH_WATER really bounds
LOW_WATER = 128 * 1024            # ... and resume below this
HANDOFF_MAX = 16 * 1024           # complete responses up to this size are framed by the poller
HANDOFF_BACKLOG = 32              # ... while fewer than this many wait for it (else as before)
READ_PAUSE = 4 * 1024 * 1024      # stop reading a peer that will not take our output
RECV_SIZE = 256 * 1024
READ_SHARE = 64 * 1024            # bytes read per turn before other connections get theirs
READ_SLICE_S = 0.005              # poller time per turn for one connection's frames
LOGGED_STREAM_ERRORS = 10         # stream-level protocol errors logged per connection
STALL_CHECK_S = 0.1               # how often the preface and header-block deadlines are checked
GOAWAY_GRACE_S = 1.0              # between the two GOAWAYs of a graceful close
PARK_BUDGET = 256 * 1024          # handed-off body bytes one connection may keep waiting for a window
MAX_STREAM_ID = 2**31 - 1
_REQUEST_EVENTS = (RequestReceived, BodyReceived, BodyEnded)


class H2Stream:
    """One request stream; the Exchange the WSGI adapter talks to."""

    __slots__ = ("driver", "stream_id", "request", "chunks", "carry", "carry_credit", "ended",
                 "trailers", "reset", "done", "protocol", "received", "waited", "wait_start",
                 "last_data", "in_pool", "handed_off", "sent", "send_waited", "squeezed_at",
                 "squeezed_total", "rest", "parked_at")

    def __init__(self, driver: HTTP2Driver, request: RequestReceived) -> None:
        self.driver = driver
        self.stream_id = request.stream_id
        self.request = request
        self.chunks: deque[BodyReceived] = deque()
        self.carry = b""          # part of a chunk the app has not read yet
        self.carry_credit = 0     # flow-control bytes still owed for it
        self.ended = request.end_stream
        self.trailers: Headers | None = None
        self.reset = False
        self.done = False
        self.in_pool = False      # handed to the thread pool and not finished yet
        self.handed_off = False   # the app is done; the poller frames its response
        self.protocol = "HTTP/2.0"
        # Body pacing (body_min_rate): bytes arrived, seconds spent waiting for them,
        # and while the stream waits unstarted in the poller, since when and the last arrival.
        self.received = 0
        self.waited = 0.0
        self.wait_start = 0.0
        self.last_data = 0.0
        # Response pacing (send_min_rate): body bytes the client let through, and
        # seconds spent waiting for it to (the whole response's, not one write's).
        self.sent = 0
        self.send_waited = 0.0
        self.squeezed_at = 0.0    # when it began waiting past the connection's share
        self.squeezed_total = 0   # the connection's sent_total then
        # A handed-off response the window cut short: the rest, framed by the poller.
        self.rest: memoryview | None = None
        self.parked_at = 0.0

    def read(self, size: int) -> bytes:
        return self.driver.read_body(self, size)

    def request_trailers(self) -> Headers | None:
        return self.trailers

    def send_informational(self, status: int, headers: Headers) -> None:
        self.driver.send_informational(self, status, headers)

    def send_head(self, status: int, reason: str, headers: Headers, end_stream: bool) -> None:
        self.driver.send_head(self, status, headers, end_stream)

    def send_body(self, data: bytes, end_stream: bool = False) -> None:
        self.driver.send_body(self, data, end_stream)

    def send_end(self, trailers: Headers | None) -> None:
        self.driver.send_end(self, trailers)

    def send_complete(self, status: int, reason: str, headers: Headers, body: bytes,
                      trailers: Headers | None) -> None:
        self.driver.send_complete(self, status, headers, body, trailers)

    def abort(self) -> None:
        self.driver.reset(self, INTERNAL_ERROR)


def _response_headers(headers: Headers) -> Headers:
    """Lower-cased names, plus Date and Server when the app set none."""
    out = [(name.lower(), value) for name, value in headers]
    add_default_fields(out, title_case=False)
    return out


class HTTP2Driver:
    """Owns one HTTP/2 connection's socket, protocol state and streams."""

    def __init__(self, conn: Link, upgrade: tuple[bytes, RequestReceived] | None = None) -> None:
        worker = conn.worker
        cfg = worker.cfg
        self.conn = conn
        self.worker = worker
        self.cfg = cfg
        self.sock = conn.sock
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.proto = HTTP2Protocol(HTTP2Limits(
            max_concurrent_streams=cfg.http2_max_concurrent_streams,
            initial_window_size=cfg.http2_initial_window_size,
            connection_window_size=cfg.http2_connection_window_size,
            max_frame_size=cfg.http2_max_frame_size,
            max_header_list_size=cfg.http2_max_header_list_size,
            limit_request_fields=cfg.limit_request_fields,
            limit_request_field_size=cfg.limit_request_field_size or 1 << 20,
            max_requests=cfg.http2_max_requests_per_connection,
            reset_budget=cfg.http2_reset_budget,
            max_control_frames=cfg.http2_max_control_frames,
            dribble_frame_size=cfg.http2_dribble_frame_size,
            stall_timeout=cfg.client_data_timeout,
        ))
        self.upgrade = upgrade
        self.streams: dict[int, H2Stream] = {}
        # Streams whose app waits for body_prebuffer bytes (or the end of the body)
        # before it takes a pool thread; the poller enforces their body deadlines.
        self.prebuffering: dict[int, H2Stream] = {}
        # Its streams on the pool: which run, which wait, which are squeezed.
        self.sched = StreamScheduler(worker, conn.peer_key)
        # Handed-off responses waiting for window, framed by the poller as it opens.
        self.parked: dict[int, H2Stream] = {}
        self.parked_bytes = 0
        # Small complete responses whose app thread moved on: the poller frames
        # them (send_complete), so a pool thread never waits for the lock or
        # spends its time in h2 between one view and the next.
        # (Lists, not deques: they stay short, and an empty deque costs 760 bytes
        # on every idle connection.)
        self.handoffs: list[tuple[H2Stream, list[tuple[bytes, bytes]], bytes]] = []
        self.handoff_scheduled = False
        self.prebuffer = min(cfg.body_prebuffer, cfg.http2_initial_window_size)
        self.outbuf = bytearray()
        self.sent_total = 0           # bytes the socket has taken so far
        # Replies to the client's own frames (ACKs, resets, window updates) still
        # in outbuf, as (end offset in the sent_total count, size): a client that
        # floods without reading is cut off at http2_max_control_backlog bytes.
        self.control_marks: list[tuple[int, int]] = []
        self.control_backlog = 0
        self.more_to_read = False     # frames wait for this connection's next turn (on_tick)
        self.stream_errors = 0        # stream-level protocol errors so far (logged: the first few)
        self.next_stall_check = 0.0   # when on_tick next asks the protocol about its deadlines
        self.wants_write = False
        self.write_stalled_since = 0.0  # the socket took no byte of outbuf since then
        self.flush_scheduled = False  # an app thread asked the poller to write
        self.read_paused = False
        self.dead = False             # socket unusable: every waiter must give up
        self.closing = False          # final GOAWAY sent or received: close once streams are done
        self.final_goaway_at = 0.0    # a graceful close is under way: its second GOAWAY is due then
        self.close_by = 0.0           # closing once the output is written, at the latest then
        self.last_activity = time.monotonic()
        # Built for the first request: a connection that never makes one (a
        # pre-connect, an idle crowd) does not pay for it.
        self._base_environ: dict[str, Any] | None = None

    def base_environ(self) -> dict[str, Any]:
        """App thread: the environ keys every request of this connection shares
        (two threads may build it at once; both get the same contents)."""
        environ = self._base_environ
        if environ is None:
            conn = self.conn
            tls = isinstance(conn.sock, ssl.SSLSocket)
            environ = connection_environ(
                server_addr=conn.sock.getsockname(), peer_addr=conn.peer,
                url_scheme="https" if tls else "http", alpn=conn.alpn,
                multiprocess=self.worker.multiprocess, errors=sys.stderr)
            if tls:
                environ.update(conn.tls_environ())
            self._base_environ = environ
        return environ

    # --- start and stop --------------------------------------------------------------

    def start(self, initial: bytes) -> None:
        """Pool thread, right after ALPN or the h2c switch: preface, then the poller."""
        conn, worker = self.conn, self.worker
        conn.sock.setblocking(False)
        new_streams: list[H2Stream] = []
        with self.lock:
            if isinstance(conn.sock, ssl.SSLSocket) and _inadequate(conn.sock):
                # RFC 9113 §9.2: TLS below 1.2 or a blocklisted cipher.
                self.proto.initiate()
                self.proto.goaway(INADEQUATE_SECURITY)
                self._flush_locked()
                worker.call_soon(self.close_gracefully)
                return
            if self.upgrade is not None:
                settings, request = self.upgrade
                events = self.proto.initiate(upgrade_settings=settings, upgrade_request=request)
            else:
                events = self.proto.initiate()
            self._handle_events_locked(events, new_streams)
            if initial:
                self._handle_events_locked(self.proto.receive(initial), new_streams)
            self._flush_locked()
        self._dispatch(new_streams)
        worker.call_soon(worker.attach_h2, conn)

    def close_gracefully(self) -> None:
        """Poller: close once every queued frame (the last responses, the GOAWAY)
        has reached the socket, giving a peer that does not read send_timeout."""
        with self.lock:
            if self.dead:
                return
            if self.outbuf and not self.wants_write:
                self._write_locked()
            if self.outbuf:
                if not self.close_by:
                    self.close_by = time.monotonic() + self.cfg.send_timeout
                return
        self.worker.linger(self.conn)

    def is_idle(self) -> bool:
        """Poller: no stream open or waiting, so closing loses no request."""
        return not self.streams and not self.sched.ready and not self.handoffs

    def close_idle(self) -> None:
        """Poller: a GOAWAY (NO_ERROR) for an idle connection about to be closed
        to make room; what the socket takes now is all it gets."""
        with self.lock:
            if self.dead:
                return
            self.proto.goaway(NO_ERROR, last_stream_id=self.proto.last_stream_id)
            self._flush_locked()
            self.dead = True

    def mark_dead(self) -> None:
        with self.cond:
            self.dead = True
            self.proto.dispose()
            self.cond.notify_all()

    def start_goaway(self) -> None:
        """Poller: begin a graceful close (shutdown or idle), in two steps as RFC 9113
        §6.8 advises: a GOAWAY with the largest stream id first, so requests already
        on the wire are still served; the real last stream id once they had time
        to arrive. Then the connection closes when its streams are done."""
        with self.lock:
            if self.dead or self.closing or self.final_goaway_at:
                return
            self.proto.goaway(NO_ERROR, last_stream_id=MAX_STREAM_ID)
            self.final_goaway_at = time.monotonic() + min(GOAWAY_GRACE_S,
                                                          self.cfg.graceful_timeout / 2)
            self._flush_locked()

    def _final_goaway(self) -> None:
        with self.lock:
            if self.dead:
                return
            self.final_goaway_at = 0.0
            self.closing = True
            self.proto.goaway(NO_ERROR, last_stream_id=self.proto.last_stream_id)
            self._flush_locked()

    def _finished_locked(self) -> bool:
        """Nothing more will happen on this connection: it can be closed."""
        if self.streams:
            return False
        # Between the two GOAWAYs the protocol counts itself closed, but new
        # streams may still arrive.
        return self.closing or (self.proto.closed and not self.final_goaway_at)

    def on_tick(self, now: float) -> None:
        """Poller, a few times a second: GOAWAY timers, idle and finished connections."""
        if self.dead:
            return
        if self.more_to_read:
            self.more_to_read = False
            self.on_readable()
            if self.dead:
                return
        if (self.wants_write and self.write_stalled_since
                and now - self.write_stalled_since >= self.cfg.send_timeout):
            # nginx's send_timeout: the peer took no byte for that long, so every
            # stream of it is stuck; cutting the connection frees their threads at once.
            log.info("closing %s: it read none of our output for send_timeout",
                     self.conn.peer_label)
            self.worker.release(self.conn)
            return
        if self.prebuffering:
            self._expire_prebuffering(now)
        if self.parked:
            self._expire_parked(now)
        if self.sched.ready and self.sched.in_pool < self.worker.pool.size:
            with self.lock:  # a share this connection's peer used elsewhere may be back
                self._submit_ready_locked()
        if now >= self.next_stall_check:  # a stalled preface or header block (slowloris)
            self.next_stall_check = now + STALL_CHECK_S
            with self.lock:
                expired = self.proto.check_timeouts()
                if expired:
                    self._handle_events_locked(expired, [])
                    self._flush_locked()
        if self.close_by:
            if now >= self.close_by:
                log.info("closing %s: it stopped reading our output", self.conn.peer_label)
                self.worker.release(self.conn)
            return
        if self.final_goaway_at and now >= self.final_goaway_at:
            self._final_goaway()
        if self.streams:
            return
        if self._finished_locked():
            self.close_gracefully()
        elif not self.final_goaway_at and now - self.last_activity > self.cfg.keepalive:
            self.start_goaway()

    # --- poller: reading and writing ----------------------------------------------

    def on_readable(self) -> None:
        new_streams: list[H2Stream] = []
        eof = False
        with self.lock:
            if self.dead:
                return
            recv = self.sock.recv
            # A connection gets READ_SLICE_S of the poller and READ_SHARE bytes per
            # turn, then the others theirs: frames past the slice wait in the
            # protocol (has_backlog), and we come back for them. Alone in the
            # worker, there is nobody to take turns with.
            alone = len(self.worker.connections) == 1
            until = None if alone else time.monotonic() + READ_SLICE_S
            if self.proto.has_backlog:
                self._handle_events_locked(self.proto.receive(b"", until), new_streams)
            share = RECV_SIZE * 64 if alone else READ_SHARE
            while share > 0 and not self.proto.has_backlog:
                try:
                    data = recv(RECV_SIZE)
                except WOULD_BLOCK:
                    break
                except (ssl.SSLError, OSError):
                    data = b""
                if not data:
                    eof = True
                    break
                share -= len(data)
                self._handle_events_locked(self.proto.receive(data, until), new_streams)
            else:
                # Our turn is over: select brings us back for unread bytes, on_tick
                # for frames left in the protocol or bytes already decrypted by TLS
                # (after the other connections' turns: the poller loops once more).
                if self.proto.has_backlog or (
                        isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                    self.more_to_read = True
                    self.worker.call_soon(_another_turn)
            replies = self.proto.data_to_send()
            if replies:
                self.outbuf += replies
                self.control_marks.append((self.sent_total + len(self.outbuf), len(replies)))
                self.control_backlog += len(replies)
            self._flush_locked()
            flooded = self._control_backlog_exceeded_locked()
            if len(self.outbuf) > READ_PAUSE and not self.read_paused:
                self.read_paused = True
                self.worker.pause_reading(self.conn, True)
        self._dispatch(new_streams)
        if eof or flooded:
            self.worker.release(self.conn)
        elif self._finished_locked():
            self.close_gracefully()

    def _control_backlog_exceeded_locked(self) -> bool:
        """Whether replies to the client's frames pile up unread past
        http2_max_control_backlog; if so, GOAWAY ENHANCE_YOUR_CALM (which it
        will likely never read) and the caller closes the connection."""
        marks = self.control_marks
        while marks and marks[0][0] <= self.sent_total:
            self.control_backlog -= marks.pop(0)[1]
        cap = self.cfg.http2_max_control_backlog
        if not cap or self.control_backlog <= cap:
            return False
        log.info("closing %s: %d bytes of replies to its frames wait unread",
                 self.conn.peer_label, self.control_backlog)
        self.proto.goaway(ENHANCE_YOUR_CALM)
        self._flush_locked()
        return True

    def on_writable(self) -> None:
        with self.lock:
            if self.dead:
                return
            self.wants_write = False
            self._write_locked()
            below = len(self.outbuf) < LOW_WATER
            resume = self.read_paused and below
            if resume:
                self.read_paused = False
        if self.handoffs and below:
            self._frame_handoffs()
        if not self.wants_write:
            self.worker.want_write(self.conn, False)
            if self.close_by and not self.outbuf:
                self.worker.linger(self.conn)
                return
        if resume:
            self.worker.pause_reading(self.conn, False)

    def _dispatch(self, new_streams: list[H2Stream]) -> None:
        if new_streams:
            with self.lock:
                self.sched.ready.extend(new_streams)
                self._submit_ready_locked()

    def _stalled_locked(self) -> bool:
        """The client holds back this connection: its window is closed, or it
        reads none of our output (a thread waiting on it counts in the scheduler)."""
        return bool(self.parked or self.proto.peer_window_closed()
                    or (self.wants_write and len(self.outbuf) > HIGH_WATER))

    def _submit_ready_locked(self) -> None:
        sched = self.sched
        if sched.ready:
            sched.submit_ready(
                self._stalled_locked(),
                lambda: sum(1 for s in self.streams.values() if s.in_pool and not s.ended),
                self.run_stream)

    def _handle_events_locked(self, events: list[Any], new_streams: list[H2Stream]) -> None:
        wake = False
        active = False  # only requests keep a connection alive, not PINGs (idle timeout)
        streams = self.streams
        for event in events:
            kind = type(event)
            if kind in _REQUEST_EVENTS:
                active = True
            if kind is RequestReceived:
                self.conn.used = True
                stream = H2Stream(self, event)
                streams[event.stream_id] = stream
                if event.end_stream or not self.prebuffer:
                    new_streams.append(stream)
                else:  # no thread until the body shows up (body_prebuffer)
                    stream.wait_start = stream.last_data = time.monotonic()
                    self.prebuffering[event.stream_id] = stream
            elif kind is BodyReceived:
                stream = streams.get(event.stream_id)
                if stream is None or stream.done:
                    self.proto.acknowledge(event.stream_id, event.flow_controlled_length)
                else:
                    stream.chunks.append(event)
                    stream.received += len(event.data)
                    if stream.wait_start:
                        stream.last_data = time.monotonic()
                        if stream.received >= self.prebuffer:
                            self._start_prebuffered_locked(stream, new_streams)
                    wake = True
            elif kind is BodyEnded:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.ended = True
                    stream.trailers = event.trailers
                    if stream.wait_start:
                        self._start_prebuffered_locked(stream, new_streams)
                    wake = True
            elif kind is StreamReset:
                self.prebuffering.pop(event.stream_id, None)
                stream = streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.reset = True
                    self._return_credit_locked(stream)
                    wake = True
            elif kind is WindowUpdated:
                wake = True
                if self.parked:
                    self._push_parked_locked()
            elif kind is PriorityUpdated:
                stream = streams.get(event.stream_id)
                if stream is not None and stream.request.priority is not None:
                    stream.request.priority.update(event.priority)
            elif kind is ConnectionTerminated:
                self.closing = True
                if event.error_code:
                    log.info("HTTP/2 connection %s ended: %s (code %d)", self.conn.peer_label,
                             event.reason, event.error_code)
                    # A connection error kills every stream: their apps must stop
                    # at their next read or write, not wait out send_timeout.
                    for stream in streams.values():
                        stream.reset = True
                    streams.clear()
                    self.prebuffering.clear()
                wake = True
            elif kind is ProtocolViolation:
                # A flood of bad streams must not become a flood of log lines.
                self.stream_errors += event.stream_id != 0
                if event.stream_id == 0 or self.stream_errors <= LOGGED_STREAM_ERRORS:
                    log.info("HTTP/2 protocol error from %s: %s", self.conn.peer_label, event.reason)
                elif self.stream_errors == LOGGED_STREAM_ERRORS + 1:
                    log.info("HTTP/2 protocol error from %s: %s (further stream errors of this "
                             "connection are not logged)", self.conn.peer_label, event.reason)
        if active:
            self.last_activity = time.monotonic()
        if wake:
            self.cond.notify_all()
            self._submit_ready_locked()  # a window opened: the connection's share may be back

    def _start_prebuffered_locked(self, stream: H2Stream, new_streams: list[H2Stream]) -> None:
        del self.prebuffering[stream.stream_id]
        stream.waited += time.monotonic() - stream.wait_start
        stream.wait_start = 0.0
        new_streams.append(stream)

    def _expire_prebuffering(self, now: float) -> None:
        """Poller: reset (CANCEL) unstarted streams whose body stalled or trickles
        below body_min_rate; they never took a thread."""
        grace, rate = self.cfg.client_data_timeout, self.cfg.body_min_rate
        with self.lock:
            expired = [stream for stream in self.prebuffering.values()
                       if now - stream.last_data >= grace
                       or (rate and now - stream.wait_start >= grace + stream.received / rate)]
            for stream in expired:
                del self.prebuffering[stream.stream_id]
                self.streams.pop(stream.stream_id, None)
                stream.reset = True
                self.proto.reset_stream(stream.stream_id, CANCEL)
                self._return_credit_locked(stream)
            if not expired:
                return
            self._flush_locked()
            close_now = self._finished_locked()
        log.info("%s: reset %d stream(s) whose request body stalled or came too slowly",
                 self.conn.peer_label, len(expired))
        if close_now:
            self.close_gracefully()

    def _flush_locked(self) -> None:
        """Move the protocol's output to the socket. The poller writes at once; an
        app thread leaves it to the poller, so the frames of every stream that
        finished meanwhile go out in one TLS write instead of one each."""
        data = self.proto.take_output()
        if data:
            if self.outbuf:
                self.outbuf += data
            else:
                self.outbuf = data
        if not self.outbuf or self.wants_write or self.dead:
            return
        if get_ident() == self.worker.poller_ident:
            self._write_locked()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.worker.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        with self.lock:
            self.flush_scheduled = False
            if self.outbuf and not self.wants_write and not self.dead:
                self._write_locked()

    def _write_locked(self) -> None:
        """Send what the socket takes now; the rest waits for the poller's EVENT_WRITE.

        A TLS write that would block must be retried with the same bytes first,
        so the buffer is only ever appended to until send() reports progress."""
        buf = self.outbuf
        send = self.sock.send
        progressed = False
        while buf:
            whole = memoryview(buf)
            piece = whole[:MAX_WRITE]
            try:
                sent = send(piece)
            except WOULD_BLOCK:
                self.wants_write = True
                if progressed or not self.write_stalled_since:
                    self.write_stalled_since = time.monotonic()
                self.worker.want_write(self.conn, True)  # only the poller writes
                return
            except (ssl.SSLError, OSError):
                self.dead = True
                piece.release()  # the traceback still holds send()'s frame and this view
                whole.release()
                buf.clear()
                self.cond.notify_all()
                self.worker.call_soon(self.worker.release, self.conn)
                return
            finally:
                piece.release()
                whole.release()
            del buf[:sent]
            self.sent_total += sent
            progressed = True
        self.write_stalled_since = 0.0
        self.cond.notify_all()

    # --- pool threads: one stream's app ---------------------------------------------

    def run_stream(self, stream: H2Stream) -> None:
        worker = self.worker
        if stream.reset or self.dead:
            self._finish(stream)
            return
        serve_request(worker.app, stream, stream.request, self.base_environ(), worker.forwarded,
                      worker.access_log, hooks=worker.request_hooks)
        worker.request_done()
        if not stream.done and not stream.handed_off:
            self._finish(stream)

    def _finish(self, stream: H2Stream) -> None:
        with self.lock:
            close_now = self._finish_locked(stream)
        if close_now:
            self.worker.call_soon(self.close_gracefully)

    def _finish_locked(self, stream: H2Stream) -> bool:
        """Forget the stream; nothing of it is kept once the response is complete.
        True when the connection should now close."""
        if stream.done:
            return False
        stream.done = True
        self._release_slot_locked(stream)
        self.streams.pop(stream.stream_id, None)
        if not self.dead and not stream.reset:
            # Credits the body bytes the app never read; a client still sending
            # is drained in the protocol (RFC 9113 §8.1), not reset here.
            self.proto.finish_stream(stream.stream_id)
            self._flush_locked()
        self._return_credit_locked(stream)  # only clears: the protocol forgot the stream
        self.last_activity = time.monotonic()
        return self._finished_locked()

    def _release_slot_locked(self, stream: H2Stream) -> None:
        """The stream's app is done: its place in the pool goes to this
        connection's next stream."""
        if self.sched.release(stream):
            self._submit_ready_locked()

    def _response_sent_locked(self, stream: H2Stream) -> None:
        """The last frame of the response is queued: when the request is complete
        too, finish the stream now rather than taking the lock again later."""
        if stream.ended and not stream.reset and self._finish_locked(stream):
            self.worker.call_soon(self.close_gracefully)

    def _return_credit_locked(self, stream: H2Stream) -> None:
        """Give back the window held by body bytes the app never read."""
        owed = stream.carry_credit + sum(c.flow_controlled_length for c in stream.chunks)
        stream.chunks.clear()
        stream.carry = b""
        stream.carry_credit = 0
        if owed and not self.dead:
            self.proto.acknowledge(stream.stream_id, owed)

    def _wait_locked(self, deadline: float, what: str, stream: H2Stream) -> None:
        """Pool thread: wait (for its client) until notified or the deadline; past
        it, the stream is reset with CANCEL. A thread past its share of waiting
        threads is squeezed (StreamScheduler.squeeze): a short deadline without
        progress, its pool slot lent meanwhile."""
        deadline, squeezed = self.sched.squeeze(stream, deadline, time.monotonic(),
                                                self.sent_total)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self.proto.reset_stream(stream.stream_id, CANCEL)
            self._flush_locked()
            stream.reset = True
            raise ClientDisconnected(f"timed out waiting for {what}")
        with self.sched.waiting(squeezed):
            self.cond.wait(remaining)

    def _check_alive_locked(self, stream: H2Stream) -> None:
        if stream.reset or self.dead:
            raise ClientDisconnected("stream reset" if stream.reset else "connection closed")

    def read_body(self, stream: H2Stream, size: int) -> bytes:
        grace, rate = self.cfg.client_data_timeout, self.cfg.body_min_rate
        deadline = time.monotonic() + grace
        with self.lock:
            while True:
                if stream.carry:
                    data, credit = stream.carry, stream.carry_credit
                    stream.carry, stream.carry_credit = b"", 0
                    break
                if stream.chunks:
                    chunk = stream.chunks.popleft()
                    data, credit = chunk.data, chunk.flow_controlled_length
                    break
                if stream.ended:
                    return b""
                self._check_alive_locked(stream)
                started = time.monotonic()
                if rate:  # body_min_rate: the waiting allowed grows with the bytes received
                    deadline = min(deadline, started + grace + stream.received / rate
                                   - stream.waited)
                try:
                    self._wait_locked(deadline, "the request body", stream)
                finally:
                    stream.waited += time.monotonic() - started
            if 0 <= size < len(data):
                # Credit follows the bytes the app has taken; padding goes back with the rest.
                stream.carry, data = data[size:], data[:size]
                stream.carry_credit = len(stream.carry)
                credit -= stream.carry_credit
            if credit and not self.dead:
                self.proto.acknowledge(stream.stream_id, credit)
                self._flush_locked()
            return data

    def send_informational(self, stream: H2Stream, status: int, headers: Headers) -> None:
        with self.lock:
            self._check_alive_locked(stream)
            self.proto.send_informational(stream.stream_id, status,
                                          [(n.lower(), v) for n, v in headers])
            self._flush_locked()

    def send_head(self, stream: H2Stream, status: int, headers: Headers, end_stream: bool) -> None:
        with self.lock:
            self._check_alive_locked(stream)
            self.proto.send_response(stream.stream_id, status, _response_headers(headers),
                                     end_stream=end_stream)
            self._flush_locked()

    def send_body(self, stream: H2Stream, data: bytes, end_stream: bool = False) -> None:
        with self.lock:
            self._send_data_locked(stream, memoryview(data), end_stream)

    def _send_deadline(self, stream: H2Stream, started: float, progress_at: float) -> float:
        """When a write waiting since `started` gives up. With send_min_rate the
        whole response may wait send_timeout plus a second per send_min_rate
        bytes sent, so a client dribbling window credit cannot renew it."""
        timeout, rate = self.cfg.send_timeout, self.cfg.send_min_rate
        if rate:
            return started + timeout + stream.sent / rate - stream.send_waited
        return progress_at + timeout

    def _send_data_locked(self, stream: H2Stream, view: memoryview, end_stream: bool) -> None:
        progress_at = time.monotonic()
        proto, sid = self.proto, stream.stream_id
        while True:
            self._check_alive_locked(stream)
            if len(self.outbuf) > HIGH_WATER:
                self._wait_for_client_locked(stream, progress_at, "the client to read")
                continue
            last = len(view) <= SEND_PIECE
            taken = proto.send_body(sid, view if last else view[:SEND_PIECE],
                                    end_stream=end_stream and last)
            if taken:
                stream.sent += taken
                view = view[taken:]
                self._flush_locked()
                if not view:
                    return
                progress_at = time.monotonic()
            elif not view:
                self._flush_locked()
                return
            else:
                self._flush_locked()  # HEADERS queued by send_complete must not wait for the window
                metrics.count(metrics.H2_FLOW_CONTROL_STALLS)
                self._wait_for_client_locked(stream, progress_at, "flow-control window")

    def _wait_for_client_locked(self, stream: H2Stream, progress_at: float, what: str) -> None:
        started = time.monotonic()
        try:
            self._wait_locked(self._send_deadline(stream, started, progress_at), what, stream)
        finally:
            stream.send_waited += time.monotonic() - started

    def send_end(self, stream: H2Stream, trailers: Headers | None) -> None:
        with self.lock:
            self._check_alive_locked(stream)
            self.proto.end_stream(stream.stream_id,
                                  [(n.lower(), v) for n, v in trailers] if trailers else None)
            self._response_sent_locked(stream)
            self._flush_locked()

    def send_complete(self, stream: H2Stream, status: int, headers: Headers, body: bytes,
                      trailers: Headers | None) -> None:
        if (trailers or len(body) > HANDOFF_MAX or len(self.handoffs) >= HANDOFF_BACKLOG
                or self.parked_bytes + len(body) > PARK_BUDGET):
            # (a backlog means the client reads nothing: this thread then waits
            # at HIGH_WATER like any writer, and the bodies held stay bounded)
            self._send_complete_now(stream, status, headers, body, trailers)
            return
        head = response_head(status, _response_headers(headers))  # a bad field raises here
        if stream.reset or self.dead:
            raise ClientDisconnected("stream reset" if stream.reset else "connection closed")
        stream.handed_off = True
        item = (stream, head, body)
        # The pool slot is given up now if the lock is free, so this thread's
        # next job may be this connection's next stream; if the poller holds
        # the lock, it gives the slot up when it frames the response.
        if self.lock.acquire(blocking=False):
            try:
                self._release_slot_locked(stream)
                self.handoffs.append(item)
                schedule = not self.handoff_scheduled
                self.handoff_scheduled = True
            finally:
                self.lock.release()
        else:
            self.handoffs.append(item)
            schedule = True
        if schedule:
            self.worker.call_soon(self._frame_handoffs)

    def _frame_handoffs(self) -> None:
        """Poller: frame the responses app threads handed over, in one TLS write.

        Past HIGH_WATER unsent bytes the rest wait for on_writable, as an app
        thread would wait; memory stays bounded by the open streams."""
        close_now = False
        with self.lock:
            self.handoff_scheduled = False
            handoffs = self.handoffs
            if self.dead:
                handoffs.clear()
                return
            while handoffs:
                if len(self.outbuf) > HIGH_WATER:
                    self._flush_locked()
                    if self.wants_write:
                        break
                stream, head, body = handoffs.pop(0)
                close_now = self._frame_handoff_locked(stream, head, body) or close_now
            self._flush_locked()
        if close_now:
            self.close_gracefully()

    def _frame_handoff_locked(self, stream: H2Stream, head: list[tuple[bytes, bytes]],
                              body: bytes) -> bool:
        self._release_slot_locked(stream)
        if not stream.reset:
            taken = self.proto.send_whole_response(stream.stream_id, head, body)
            stream.sent += taken
            if taken < len(body):
                # The client's window is short: the rest waits here, framed by the
                # poller as WINDOW_UPDATEs come (no thread waits for them).
                metrics.count(metrics.H2_FLOW_CONTROL_STALLS)
                stream.rest = memoryview(body)[taken:]
                stream.parked_at = time.monotonic()
                self.parked[stream.stream_id] = stream
                self.parked_bytes += len(stream.rest)
                return False
        return self._finish_locked(stream)

    def _push_parked_locked(self) -> None:
        """Poller: frame what the windows now let through of the parked responses."""
        close_now = False
        for stream in list(self.parked.values()):
            rest = stream.rest
            if not stream.reset and not self.dead:
                taken = self.proto.send_body(stream.stream_id, rest, end_stream=True)
                if taken < len(rest):
                    stream.sent += taken
                    stream.rest = rest[taken:]
                    self.parked_bytes -= taken
                    continue
            self._unpark_locked(stream)
            close_now = self._finish_locked(stream) or close_now
        if close_now:
            self.worker.call_soon(self.close_gracefully)

    def _unpark_locked(self, stream: H2Stream) -> None:
        del self.parked[stream.stream_id]
        if stream.rest is not None:
            self.parked_bytes -= len(stream.rest)
            stream.rest.release()
            stream.rest = None

    def _expire_parked(self, now: float) -> None:
        """Poller: reset (CANCEL) parked responses whose client let too little of
        them through (the send_min_rate rule, counted from when they parked)."""
        with self.lock:
            expired = [stream for stream in self.parked.values()
                       if stream.reset
                       or now >= self._send_deadline(stream, stream.parked_at, stream.parked_at)]
            close_now = False
            for stream in expired:
                self._unpark_locked(stream)
                if not stream.reset and not self.dead:
                    self.proto.reset_stream(stream.stream_id, CANCEL)
                    stream.reset = True
                close_now = self._finish_locked(stream) or close_now
            if expired:
                self._flush_locked()
                self._submit_ready_locked()
        if close_now:
            self.close_gracefully()

    def _send_complete_now(self, stream: H2Stream, status: int, headers: Headers, body: bytes,
                           trailers: Headers | None) -> None:
        with self.lock:
            self._check_alive_locked(stream)
            only_head = not body and not trailers
            self.proto.send_response(stream.stream_id, status, _response_headers(headers),
                                     end_stream=only_head)
            if only_head:
                self._response_sent_locked(stream)
                self._flush_locked()
                return
            if body:
                self._send_data_locked(stream, memoryview(body), end_stream=not trailers)
            if trailers or not body:
                self.proto.end_stream(stream.stream_id,
                                      [(n.lower(), v) for n, v in trailers] if trailers else None)
            self._response_sent_locked(stream)
            self._flush_locked()

    def reset(self, stream: H2Stream, code: int) -> None:
        with self.lock:
            if not self.dead and not stream.reset:
                self.proto.reset_stream(stream.stream_id, code)
                stream.reset = True
                self._flush_locked()


def _another_turn() -> None:
    """Nothing: queued only so that the poller loops (and ticks) once more."""


def _inadequate(sock: ssl.SSLSocket) -> bool:
    from h2serve.transport.tls import inadequate_for_h2

    return inadequate_for_h2(sock)
