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
from threading import get_ident
from typing import Any

from h2serve.connection.common import WOULD_BLOCK
from h2serve.connection.contracts import Link
from h2serve.connection.h2_app_side import (
    HIGH_WATER,
    LOW_WATER,
    AppThreadSide,
    StreamExchange,
)
from h2serve.connection.h2_scheduling import StreamScheduler
from h2serve.protocol.events import (
    BodyEnded,
    BodyReceived,
    ConnectionTerminated,
    PriorityUpdated,
    ProtocolViolation,
    RequestReceived,
    StreamReset,
    WindowUpdated,
)
from h2serve.protocol.h2_frames import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    INADEQUATE_SECURITY,
    NO_ERROR,
)
from h2serve.protocol.http2 import HTTP2Limits, HTTP2Protocol
from h2serve.wsgi import connection_environ

log = logging.getLogger("h2serve.error")

MAX_WRITE = 256 * 1024            # bytes handed to one send() call
# Bytes one connection's write may send before the poller turns to the other
# sockets: the rest goes at its next EVENT_WRITE, so a bulk download takes its
# turns among small responses instead of holding the poller while it lasts.
WRITE_QUANTUM = 256 * 1024
SMALL_WRITE = 64 * 1024           # output app threads leave that the poller writes in any turn
READ_PAUSE = 4 * 1024 * 1024      # stop reading a peer that will not take our output
RECV_SIZE = 256 * 1024
READ_SHARE = 64 * 1024            # bytes read per turn before other connections get theirs
READ_SLICE_S = 0.005              # poller time per turn for one connection's frames
LOGGED_STREAM_ERRORS = 10         # stream-level protocol errors logged per connection
STALL_CHECK_S = 0.1               # how often the preface and header-block deadlines are checked
GOAWAY_GRACE_S = 1.0              # between the two GOAWAYs of a graceful close
MAX_STREAM_ID = 2**31 - 1


class HTTP2Driver(AppThreadSide):
    """Owns one HTTP/2 connection's socket, protocol state and streams.

    This module is its poller side (start and stop, reading, dispatching
    events, writing); h2_app_side.py has what the streams' pool threads call."""

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
        self.streams: dict[int, StreamExchange] = {}
        # Streams whose app waits for body_prebuffer bytes (or the end of the body)
        # before it takes a pool thread; the poller enforces their body deadlines.
        self.prebuffering: dict[int, StreamExchange] = {}
        # Its streams on the pool: which run, which wait, which are squeezed.
        self.sched = StreamScheduler(worker, conn.peer_key)
        # Streams with body bytes queued for the poller (their window or the socket
        # was full; h2_app_side._queue_locked), and how many bytes in all.
        self.parked: dict[int, StreamExchange] = {}
        self.parked_bytes = 0
        self.push_scheduled = False   # a turn of the queued bytes waits in call_soon
        self.more_turns = False       # output waits for EVENT_WRITE after a full turn (not a full socket)
        self.write_turn = 0           # the worker's count of write turns at this one's last (Worker._write_turn)
        self.push_due = False         # a WINDOW_UPDATE came for queued bytes (on_readable pushes)
        # Small complete responses whose app thread moved on: the poller frames
        # them (send_complete), so a pool thread never waits for the lock or
        # spends its time in h2 between one view and the next.
        # (Lists, not deques: they stay short, and an empty deque costs 760 bytes
        # on every idle connection.)
        self.handoffs: list[tuple[StreamExchange, list[tuple[bytes, bytes]], bytes]] = []
        self.handoff_scheduled = False
        self.prebuffer = min(cfg.body_prebuffer, cfg.http2_initial_window_size)
        self.outbuf = bytearray()
        self.sent_total = 0           # bytes the socket has taken so far
        # Replies to the client's own frames (ACKs, resets, window updates) still
        # in outbuf, as (end offset in the sent_total count, size): a client that
        # floods without reading is cut off at http2_max_control_backlog bytes.
        self.control_marks: list[tuple[int, int]] = []
        self.control_backlog = 0
        self.more_to_read = False     # frames wait for this connection's next turn (read_more)
        self.stream_errors = 0        # stream-level protocol errors so far (logged: the first few)
        self.next_stall_check = 0.0   # when on_tick next asks the protocol about its deadlines
        self.wants_write = False
        self.write_stalled_since = 0.0  # output has waited since then and the socket took none of it
        self.flush_scheduled = False  # an app thread asked the poller to write
        self.sending_now = False      # an app thread frames its response and sends it itself
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
        new_streams: list[StreamExchange] = []
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
            for stream in list(self.parked.values()):
                self._unpark_locked(stream)   # the worker's budget gets its bytes back
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
        """Poller, every SWEEP_S while it is busy (at most TICK_S apart): GOAWAY
        timers, idle and finished connections, deadlines of queued and stalled streams."""
        if self.dead:
            return
        if ((self.wants_write or self.more_turns) and self.write_stalled_since
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

    def read_more(self) -> None:
        """Poller: the next turn for frames a turn left unread (on_readable)."""
        if self.more_to_read and not self.dead:
            self.more_to_read = False
            self.on_readable()

    def on_readable(self) -> None:
        new_streams: list[StreamExchange] = []
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
                # Our turn is over: select brings us back for unread bytes, read_more
                # for frames left in the protocol or bytes already decrypted by TLS
                # (at the poller's next turn, after the other sockets ready in this one).
                if self.proto.has_backlog or (
                        isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                    if not self.more_to_read:
                        self.more_to_read = True
                        self.worker.call_soon(self.read_more)
            replies = self.proto.data_to_send()
            if replies:
                self.outbuf += replies
                self.control_marks.append((self.sent_total + len(self.outbuf), len(replies)))
                self.control_backlog += len(replies)
            if self.push_due:   # a window opened for queued bytes
                self.push_due = False
                self._push_parked_locked()
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
            self.more_turns = False
            self._write_locked()
            below = len(self.outbuf) < LOW_WATER
            if below and self.parked:   # framed now, written at the next turn
                self._push_parked_locked()
                self._flush_locked(bulk_waits=True)
            resume = self.read_paused and below
            if resume:
                self.read_paused = False
        if self.handoffs and below:
            self._frame_handoffs()
        if not self.wants_write:
            if not self.more_turns:
                self.worker.want_write(self.conn, False)
            if self.close_by and not self.outbuf:
                self.worker.linger(self.conn)
                return
        if resume:
            self.worker.pause_reading(self.conn, False)

    def _dispatch(self, new_streams: list[StreamExchange]) -> None:
        if new_streams:
            with self.lock:
                self.sched.ready.extend(new_streams)
                self._submit_ready_locked()

    def _stalled_locked(self) -> bool:
        """The client holds back this connection: its window is closed, or it
        reads none of our output (a thread waiting on it counts in the scheduler)."""
        return (self.proto.peer_window_closed()
                or (self.wants_write and len(self.outbuf) > HIGH_WATER)
                or bool(self.parked) and any(s.window_bound for s in self.parked.values()))

    def _submit_ready_locked(self) -> None:
        sched = self.sched
        if sched.ready:
            sched.submit_ready(
                self._stalled_locked(),
                lambda: sum(1 for s in self.streams.values() if s.in_pool and not s.ended),
                self.run_stream)

    def _handle_events_locked(self, events: list[Any], new_streams: list[StreamExchange]) -> None:
        """Poller, under the lock: the protocol's events into stream state;
        streams ready for a thread are appended to new_streams."""
        wake = False
        active = False  # only requests keep a connection alive, not PINGs (idle timeout)
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                active = True
                self._on_request_locked(event, new_streams)
            elif kind is BodyReceived:
                active = True
                wake = self._on_body_locked(event, new_streams) or wake
            elif kind is BodyEnded:
                active = True
                wake = self._on_body_end_locked(event, new_streams) or wake
            else:
                wake = self._on_other_event_locked(event, kind) or wake
        if active:
            self.last_activity = time.monotonic()
        if wake:
            self.cond.notify_all()
            self._submit_ready_locked()  # a window opened: the connection's share may be back

    def _on_request_locked(self, event: RequestReceived, new_streams: list[StreamExchange]) -> None:
        self.conn.used = True
        stream = StreamExchange(self, event)
        self.streams[event.stream_id] = stream
        if event.end_stream or not self.prebuffer:
            new_streams.append(stream)
        else:  # no thread until the body shows up (body_prebuffer)
            stream.wait_start = stream.last_data = time.monotonic()
            self.prebuffering[event.stream_id] = stream

    def _on_body_locked(self, event: BodyReceived, new_streams: list[StreamExchange]) -> bool:
        """True when a waiting app thread may have something to read."""
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.done:
            self.proto.acknowledge(event.stream_id, event.flow_controlled_length)
            return False
        stream.chunks.append(event)
        stream.received += len(event.data)
        if stream.wait_start:
            stream.last_data = time.monotonic()
            if stream.received >= self.prebuffer:
                self._start_prebuffered_locked(stream, new_streams)
        return True

    def _on_body_end_locked(self, event: BodyEnded, new_streams: list[StreamExchange]) -> bool:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return False
        stream.ended = True
        stream.trailers = event.trailers
        if stream.wait_start:
            self._start_prebuffered_locked(stream, new_streams)
        return True

    def _on_other_event_locked(self, event: Any, kind: type) -> bool:
        """Resets, window and priority changes, the connection's end, protocol
        errors. True when waiting app threads must look again."""
        streams = self.streams
        if kind is StreamReset:
            self.prebuffering.pop(event.stream_id, None)
            stream = streams.pop(event.stream_id, None)
            if stream is None:
                return False
            stream.reset = True
            self._return_credit_locked(stream)
            if stream.stream_id in self.parked and self._drop_parked_locked(stream):
                self.worker.call_soon(self.close_gracefully)
            return True
        if kind is WindowUpdated:
            # Queued bytes go once this read's replies are counted (on_readable):
            # DATA must not pass for replies to the client's frames.
            self.push_due = self.push_due or bool(self.parked)
            return True
        if kind is PriorityUpdated:
            stream = streams.get(event.stream_id)
            if stream is not None and stream.request.priority is not None:
                stream.request.priority.update(event.priority)
            return False
        if kind is ConnectionTerminated:
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
            return True
        if kind is ProtocolViolation:
            self._log_violation(event)
        return False

    def _log_violation(self, event: ProtocolViolation) -> None:
        # A flood of bad streams must not become a flood of log lines.
        self.stream_errors += event.stream_id != 0
        if event.stream_id == 0 or self.stream_errors <= LOGGED_STREAM_ERRORS:
            log.info("HTTP/2 protocol error from %s: %s", self.conn.peer_label, event.reason)
        elif self.stream_errors == LOGGED_STREAM_ERRORS + 1:
            log.info("HTTP/2 protocol error from %s: %s (further stream errors of this "
                     "connection are not logged)", self.conn.peer_label, event.reason)

    def _start_prebuffered_locked(self, stream: StreamExchange, new_streams: list[StreamExchange]) -> None:
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

    def _flush_locked(self, bulk_waits: bool = False) -> None:
        """Move the protocol's output to the socket. The poller writes at once; an
        app thread leaves it to the poller, so the frames of every stream that
        finished meanwhile go out in one TLS write instead of one each (an app
        thread that sends its own response, send_complete, writes it itself).
        With bulk_waits (output app threads left the poller), more than
        SMALL_WRITE waits for the connection's write turn (Worker._write_turn),
        which comes after the events of every other socket, one bulk
        connection a turn."""
        self._take_output_locked()
        # While a write turn is due (more_turns), the output goes at that turn:
        # a socket that is full never gets it, and the stall clock must not be
        # reset by a few bytes a full buffer still takes.
        if (not self.outbuf or self.wants_write or self.more_turns or self.dead
                or self.sending_now):
            return
        if get_ident() != self.worker.poller_ident:
            if not self.flush_scheduled:
                self.flush_scheduled = True
                self.worker.call_soon(self._scheduled_flush)
        elif bulk_waits and len(self.outbuf) > SMALL_WRITE:
            self._want_another_turn_locked()
        else:
            self._write_locked()

    def _take_output_locked(self) -> None:
        """The protocol's output joins outbuf (any thread, under the lock)."""
        data = self.proto.take_output()
        if data:
            if self.outbuf:
                self.outbuf += data
            else:
                self.outbuf = data

    def _scheduled_flush(self) -> None:
        with self.lock:
            self.flush_scheduled = False
            self._flush_locked(bulk_waits=True)

    def _write_locked(self) -> None:
        """Send what the socket takes now, at most WRITE_QUANTUM; the rest waits
        for the poller's EVENT_WRITE.

        A TLS write that would block must be retried with the same bytes first,
        so the buffer is only ever appended to until send() reports progress."""
        buf = self.outbuf
        send = self.sock.send
        progressed = False
        turn = 0
        while buf:
            if turn >= WRITE_QUANTUM:
                break
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
                piece.release()  # the traceback still holds send()'s frame and this view
                whole.release()
                self._send_failed_locked()
                return
            finally:
                piece.release()
                whole.release()
            del buf[:sent]
            self.sent_total += sent
            turn += sent
            progressed = True
        self.write_stalled_since = 0.0
        if buf:   # cut at WRITE_QUANTUM: the rest at the next turn (its clock starts now)
            self._want_another_turn_locked()
        self.cond.notify_all()

    def _send_failed_locked(self) -> None:
        """Any thread, under the lock: the socket is gone. Waiters give up and
        the poller releases the connection."""
        self.dead = True
        self.outbuf.clear()
        self.cond.notify_all()
        self.worker.call_soon(self.worker.release, self.conn)

    def _want_another_turn_locked(self) -> None:
        """Poller: output is left that the socket would take; send it at the next
        EVENT_WRITE, after the events of every other socket ready meanwhile.
        The stall clock runs from now unless it already does: if the socket
        is full, that turn never comes, and send_timeout must still apply
        (a write turn that sends anything stops the clock)."""
        if not self.write_stalled_since:
            self.write_stalled_since = time.monotonic()
        if not self.more_turns:
            self.more_turns = True
            if not self.wants_write:
                self.worker.want_write(self.conn, True)


def _inadequate(sock: ssl.SSLSocket) -> bool:
    from h2serve.transport.tls import inadequate_for_h2

    return inadequate_for_h2(sock)
