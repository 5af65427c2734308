"""The pool-thread side of an HTTP/2 connection: what a stream's app thread
does through the driver. Body reads that return flow-control credit as the
app consumes bytes; response heads and bodies written within flow control
and the output buffer's high-water mark; what does not fit queued for the
poller (within the connection's and the worker's budgets), so the thread
moves on; each wait bounded (send_timeout, send_min_rate, the scheduler's
squeeze); and complete small responses sent by their own thread when the
stream is the connection's only one in the pool, else handed off to the
poller.

AppThreadSide is a part of HTTP2Driver (http2.py), split out by job: every
method here runs on a pool thread unless its name says otherwise (the poller
runs _frame_handoffs, _scheduled_push, _push_parked_locked and _expire_parked),
under the driver's lock where its name ends in _locked.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import deque

from h2serve import metrics
from h2serve.config import Config
from h2serve.connection.common import WOULD_BLOCK, add_default_fields, pacing_limit
from h2serve.connection.contracts import Link, WorkerHost
from h2serve.connection.h2_scheduling import StreamScheduler
from h2serve.protocol.events import BodyReceived, Headers, RequestReceived
from h2serve.protocol.h2_frames import CANCEL, INTERNAL_ERROR
from h2serve.protocol.h2_responses import response_head
from h2serve.protocol.http2 import HTTP2Protocol
from h2serve.wsgi import ClientDisconnected, serve_request

HIGH_WATER = 512 * 1024           # app writers wait while more than this is unsent
LOW_WATER = 128 * 1024            # ... and resume below this
SEND_PIECE = 64 * 1024            # body bytes framed per step, so HIGH_WATER really bounds
HANDOFF_MAX = 16 * 1024           # complete responses up to this size are framed by the poller
HANDOFF_BACKLOG = 32              # ... while fewer than this many wait for it (else as before)
QUEUE_LIMIT = 32 * 1024 * 1024    # body bytes one connection may keep queued for the poller
STALLED_QUEUE_LIMIT = 256 * 1024  # ... while its client holds it back (_stalled_locked)
PUSH_QUANTUM = 256 * 1024         # queued bytes the poller frames for one connection per turn


class StreamExchange:
    """One request stream of an HTTP/2 connection: its state in the driver,
    and the Exchange (h2serve.wsgi) the WSGI adapter talks to. Every method
    runs on the stream's pool thread and goes through the driver."""

    __slots__ = ("driver", "stream_id", "request", "chunks", "carry", "carry_credit", "ended",
                 "trailers", "reset", "done", "protocol", "received", "waited", "wait_start",
                 "last_data", "in_pool", "handed_off", "sent", "send_waited", "squeezed_at",
                 "squeezed_total", "queued", "queued_bytes", "end_queued", "end_trailers",
                 "window_bound", "parked_at", "progress_at")

    def __init__(self, driver: AppThreadSide, request: RequestReceived) -> None:
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
        # Body bytes queued for the poller (the window or the socket was full), and
        # whether the response ends after them (with trailers): see _queue_locked.
        self.queued: deque[memoryview] | None = None
        self.queued_bytes = 0
        self.end_queued = False
        self.end_trailers: list[tuple[str, str]] | None = None
        self.window_bound = False  # the poller's last turn stopped at the client's window
        self.parked_at = 0.0       # queued since then ...
        self.progress_at = 0.0     # ... and the client last let bytes of it through then

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


def _lowered(fields: Headers) -> Headers:
    """Field names lower-cased, as HTTP/2 sends them."""
    return [(name.lower(), value) for name, value in fields]


def _response_headers(headers: Headers) -> Headers:
    """Lower-cased names, plus Date and Server when the app set none."""
    out = _lowered(headers)
    add_default_fields(out, title_case=False)
    return out


class AppThreadSide:
    """What a stream's pool thread calls (part of HTTP2Driver)."""

    # HTTP2Driver's state this part works on (set up in its __init__).
    conn: Link
    worker: WorkerHost
    cfg: Config
    lock: threading.Lock
    cond: threading.Condition
    proto: HTTP2Protocol
    sched: StreamScheduler
    streams: dict[int, StreamExchange]
    parked: dict[int, StreamExchange]
    parked_bytes: int
    push_scheduled: bool
    more_turns: bool
    handoffs: list[tuple[StreamExchange, list[tuple[bytes, bytes]], bytes]]
    handoff_scheduled: bool
    sock: socket.socket
    outbuf: bytearray
    sent_total: int
    dead: bool
    wants_write: bool
    write_stalled_since: float
    sending_now: bool
    last_activity: float

    def run_stream(self, stream: StreamExchange) -> None:
        worker = self.worker
        if stream.reset or self.dead:
            self._finish(stream)
            return
        serve_request(worker.app, stream, stream.request, self.base_environ(), worker.forwarded,
                      worker.access_log, hooks=worker.request_hooks)
        worker.request_done()
        if not stream.done and not stream.handed_off:
            self._finish(stream)

    def _finish(self, stream: StreamExchange) -> None:
        with self.lock:
            close_now = self._finish_locked(stream)
        if close_now:
            self.worker.call_soon(self.close_gracefully)

    def _finish_locked(self, stream: StreamExchange) -> bool:
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

    def _release_slot_locked(self, stream: StreamExchange) -> None:
        """The stream's app is done: its place in the pool goes to this
        connection's next stream."""
        if self.sched.release(stream):
            self._submit_ready_locked()

    def _response_sent_locked(self, stream: StreamExchange) -> None:
        """The last frame of the response is queued: when the request is complete
        too, finish the stream now rather than taking the lock again later."""
        if stream.ended and not stream.reset and self._finish_locked(stream):
            self.worker.call_soon(self.close_gracefully)

    def _return_credit_locked(self, stream: StreamExchange) -> None:
        """Give back the window held by body bytes the app never read."""
        stream.chunks.clear()
        stream.carry = b""
        stream.carry_credit = 0
        if not self.dead:
            self.proto.acknowledge_unread(stream.stream_id)

    def _wait_locked(self, deadline: float, what: str, stream: StreamExchange) -> None:
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

    def _check_alive_locked(self, stream: StreamExchange) -> None:
        if stream.reset or self.dead:
            raise ClientDisconnected("stream reset" if stream.reset else "connection closed")

    def read_body(self, stream: StreamExchange, size: int) -> bytes:
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
                # body_min_rate: the waiting allowed grows with the bytes received
                deadline = min(deadline, started + pacing_limit(grace, rate, stream.received,
                                                                stream.waited))
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

    def send_informational(self, stream: StreamExchange, status: int, headers: Headers) -> None:
        with self.lock:
            self._check_alive_locked(stream)
            self.proto.send_informational(stream.stream_id, status,
                                          _lowered(headers))
            self._flush_locked()

    def send_head(self, stream: StreamExchange, status: int, headers: Headers, end_stream: bool) -> None:
        with self.lock:
            self._check_alive_locked(stream)
            self.proto.send_response(stream.stream_id, status, _response_headers(headers),
                                     end_stream=end_stream)
            self._flush_locked()

    def send_body(self, stream: StreamExchange, data: bytes, end_stream: bool = False) -> None:
        with self.lock:
            if self._send_data_locked(stream, memoryview(data), end_stream, None):
                self._hand_over_locked(stream)

    def _send_deadline(self, stream: StreamExchange, started: float, progress_at: float) -> float:
        """When a write waiting since `started` gives up. With send_min_rate the
        whole response may wait send_timeout plus a second per send_min_rate
        bytes sent, so a client dribbling window credit cannot renew it."""
        timeout, rate = self.cfg.send_timeout, self.cfg.send_min_rate
        if rate:
            return started + timeout + stream.sent / rate - stream.send_waited
        return progress_at + timeout

    def _send_data_locked(self, stream: StreamExchange, view: memoryview, end_stream: bool,
                          trailers: list[tuple[str, str]] | None) -> bool:
        """Frame the body bytes (and the end of the response, with end_stream)
        that the window and the output buffer take now, and queue the rest for
        the poller, so an app whose response ends here moves on at once. A
        streaming app is kept one write ahead of its client: a write that finds
        the previous one still queued waits for it (back-pressure reaches the
        app's generator), and any write waits when the queue budgets are spent.
        True when the response's end was queued: the poller finishes the stream."""
        progress_at = time.monotonic()
        proto, sid = self.proto, stream.stream_id
        while True:
            self._check_alive_locked(stream)
            if sid in self.parked and not end_stream:
                self._wait_for_client_locked(stream, max(progress_at, stream.progress_at),
                                             "the client to read")
                continue
            if sid not in self.parked:   # nothing queued before these bytes: frame them now
                while len(self.outbuf) <= HIGH_WATER:
                    last = len(view) <= SEND_PIECE
                    taken = proto.send_body(sid, view if last else view[:SEND_PIECE],
                                            end_stream=end_stream and last and trailers is None)
                    if taken:
                        stream.sent += taken
                        view = view[taken:]
                        progress_at = time.monotonic()
                    self._flush_locked()  # HEADERS queued by send_complete must not wait either
                    if not view or not taken:
                        if view:
                            metrics.count(metrics.H2_FLOW_CONTROL_STALLS)
                        break
                if not view:
                    if end_stream and trailers is not None:
                        proto.end_stream(sid, trailers)
                        self._flush_locked()
                    return False
            if self._queue_locked(stream, view, end_stream, trailers):
                return end_stream
            progress_at = max(progress_at, stream.progress_at)
            self._wait_for_client_locked(stream, progress_at,
                                         "the client to read" if len(self.outbuf) > HIGH_WATER
                                         else "flow-control window")

    def _queue_locked(self, stream: StreamExchange, view: memoryview, end_stream: bool,
                      trailers: list[tuple[str, str]] | None, force: bool = False) -> bool:
        """Leave body bytes (and the response's end) to the poller, which frames
        them as the window and the socket let it (_push_parked_locked), so the
        app thread need not wait for its client. False, queueing nothing, when
        the connection's limit (QUEUE_LIMIT; STALLED_QUEUE_LIMIT while its client
        reads nothing or keeps its window shut) or the worker's budget would be
        passed: a client that does not read cannot make the server hold much."""
        size = len(view)
        limit = STALLED_QUEUE_LIMIT if self._stalled_locked() else QUEUE_LIMIT
        if not force and self.parked_bytes + size > limit:
            return False
        if not self.worker.queued_bodies.take(size, force):
            return False
        if size and not isinstance(view.obj, bytes):
            view = memoryview(bytes(view))   # the app may reuse a buffer it wrote
        if stream.queued is None:
            stream.queued = deque()
        if size:
            stream.queued.append(view)
            stream.queued_bytes += size
            self.parked_bytes += size
        if end_stream:
            stream.end_queued = True
            stream.end_trailers = trailers
        if stream.stream_id not in self.parked:
            self.parked[stream.stream_id] = stream
            stream.parked_at = stream.progress_at = time.monotonic()
        if not self.push_scheduled:
            self.push_scheduled = True
            self.worker.call_soon(self._scheduled_push)
        return True

    def _hand_over_locked(self, stream: StreamExchange) -> None:
        """The app is done and the poller ends its response: the thread moves on."""
        stream.handed_off = True
        self._release_slot_locked(stream)

    def _wait_for_client_locked(self, stream: StreamExchange, progress_at: float, what: str) -> None:
        started = time.monotonic()
        try:
            self._wait_locked(self._send_deadline(stream, started, progress_at), what, stream)
        finally:
            stream.send_waited += time.monotonic() - started

    def send_end(self, stream: StreamExchange, trailers: Headers | None) -> None:
        with self.lock:
            self._check_alive_locked(stream)
            lowered = _lowered(trailers) if trailers else None
            if stream.stream_id in self.parked:   # after the queued bytes
                self._queue_locked(stream, memoryview(b""), True, lowered, force=True)
                self._hand_over_locked(stream)
                return
            self.proto.end_stream(stream.stream_id, lowered)
            self._response_sent_locked(stream)
            self._flush_locked()

    def send_complete(self, stream: StreamExchange, status: int, headers: Headers, body: bytes,
                      trailers: Headers | None) -> None:
        if (trailers or len(body) > HANDOFF_MAX or len(self.handoffs) >= HANDOFF_BACKLOG
                or self.parked_bytes + len(body) > STALLED_QUEUE_LIMIT):
            # (a backlog means the client reads nothing: this thread then frames
            # and queues what it can itself, and the bodies held stay bounded)
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
            close_now = False
            try:
                if self._may_send_now_locked(stream):
                    self.sending_now = True
                    try:
                        close_now = self._frame_handoff_locked(stream, head, body)
                    finally:
                        self.sending_now = False
                    self._send_now_locked()
                    schedule = False
                else:
                    self._release_slot_locked(stream)
                    self.handoffs.append(item)
                    schedule = not self.handoff_scheduled
                    self.handoff_scheduled = True
            finally:
                self.lock.release()
            if close_now:
                self.worker.call_soon(self.close_gracefully)
        else:
            self.handoffs.append(item)
            schedule = True
        if schedule:
            self.worker.call_soon(self._frame_handoffs)

    def _may_send_now_locked(self, stream: StreamExchange) -> bool:
        """Whether this app thread frames and sends its small response itself:
        when it is the connection's only stream in the pool (no other response
        is coming to share a TLS write with) and the socket has nothing queued
        before it. The poller is then not on the response's path, so the
        response does not wait behind other connections' bulk writes, and the
        worker saves a wake-up of the poller per request."""
        return (self.sched.in_pool == 1 and stream.in_pool and not self.handoffs
                and not self.outbuf and not self.parked and not self.wants_write
                and not self.more_turns and not self.dead)

    def _send_now_locked(self) -> None:
        """App thread, under the lock (so no other thread uses the socket):
        one non-blocking send of outbuf. What the socket does not take waits
        for the poller's EVENT_WRITE, as after any write; the selector itself
        is only ever touched by the poller (call_soon)."""
        self._take_output_locked()
        buf = self.outbuf
        if not buf:   # (the stream was reset meanwhile: nothing was framed)
            return
        try:
            sent = self.sock.send(buf)
        except WOULD_BLOCK:
            sent = 0
        except (ssl.SSLError, OSError):
            self._send_failed_locked()
            return
        del buf[:sent]
        self.sent_total += sent
        if buf:
            self.wants_write = True
            self.write_stalled_since = time.monotonic()
            self.worker.call_soon(self.worker.want_write, self.conn, True)

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
                    if self.wants_write or self.more_turns:
                        break
                stream, head, body = handoffs.pop(0)
                close_now = self._frame_handoff_locked(stream, head, body) or close_now
            self._flush_locked()
        if close_now:
            self.close_gracefully()

    def _frame_handoff_locked(self, stream: StreamExchange, head: list[tuple[bytes, bytes]],
                              body: bytes) -> bool:
        self._release_slot_locked(stream)
        if not stream.reset:
            taken = self.proto.send_whole_response(stream.stream_id, head, body)
            stream.sent += taken
            if taken < len(body):
                # The client's window is short: the rest waits in the queue, framed
                # by the poller as WINDOW_UPDATEs come (no thread waits for them).
                metrics.count(metrics.H2_FLOW_CONTROL_STALLS)
                self._queue_locked(stream, memoryview(body)[taken:], True, None, force=True)
                return False
        return self._finish_locked(stream)

    def _scheduled_push(self) -> None:
        """Poller: a turn of the connection's queued bytes (after an app thread
        queued some, or after the last turn used its whole quantum)."""
        with self.lock:
            self.push_scheduled = False
            if self.dead or not self.parked:
                return
            self._push_parked_locked()
            self._flush_locked(bulk_waits=True)

    def _push_parked_locked(self) -> None:
        """Poller: frame what the windows let through of the queued bytes, at most
        PUSH_QUANTUM a turn and never past HIGH_WATER in the output buffer. When
        bytes the window would let through are left, the connection asks for
        EVENT_WRITE: its next turn comes when the selector says so, among every
        other socket's events, so one bulk transfer cannot hold the poller.
        A response whose queue ends is finished here; a running app's stream
        leaves the queue when it empties."""
        allowance = min(PUSH_QUANTUM, HIGH_WATER - len(self.outbuf))
        close_now = False
        drained = False
        budget = self.worker.queued_bodies
        proto = self.proto
        for stream in list(self.parked.values()):
            if stream.reset or self.dead:
                close_now = self._drop_parked_locked(stream) or close_now
                continue
            queued = stream.queued
            sid = stream.stream_id
            ended = False
            stream.window_bound = False
            while queued and allowance > 0:
                piece = queued[0]
                part = piece if len(piece) <= allowance else piece[:allowance]
                ended = (part is piece and len(queued) == 1 and stream.end_queued
                         and stream.end_trailers is None)
                taken = proto.send_body(sid, part, end_stream=ended)
                if taken:
                    queued[0] = piece[taken:]
                    if taken == len(piece):
                        queued.popleft()
                    stream.queued_bytes -= taken
                    self.parked_bytes -= taken
                    budget.give(taken)
                    stream.sent += taken
                    stream.progress_at = time.monotonic()
                    allowance -= taken
                    drained = True
                if taken < len(part):
                    ended = False
                    stream.window_bound = True
                    break
            if queued:
                if allowance <= 0:   # its turn is over: the next one goes to the others first
                    del self.parked[sid]
                    self.parked[sid] = stream
                continue
            if stream.end_queued and not ended:
                proto.end_stream(sid, stream.end_trailers)
            self._unpark_locked(stream)
            if stream.end_queued:
                close_now = self._finish_locked(stream) or close_now
        if drained:
            self.cond.notify_all()   # app threads waiting for the queue budget
        if self.parked and allowance <= 0:
            self._want_another_turn_locked()
        if close_now:
            self.worker.call_soon(self.close_gracefully)

    def _unpark_locked(self, stream: StreamExchange) -> None:
        """Out of the queue; bytes still queued (a reset stream's) are dropped."""
        self.parked.pop(stream.stream_id, None)
        if stream.queued_bytes:
            self.parked_bytes -= stream.queued_bytes
            self.worker.queued_bodies.give(stream.queued_bytes)
            stream.queued_bytes = 0
        if stream.queued:
            stream.queued.clear()
        stream.window_bound = False

    def _drop_parked_locked(self, stream: StreamExchange) -> bool:
        """Poller: a reset, expired or dead stream's queue goes; one whose app
        handed it over is finished here (a running app sees the reset at its
        next write). True when the connection should now close."""
        self._unpark_locked(stream)
        return stream.handed_off and self._finish_locked(stream)

    def _expire_parked(self, now: float) -> None:
        """Poller: reset (CANCEL) queued responses whose client let too little of
        them through (send_timeout since the last progress, or the send_min_rate
        rule counted from when they were queued)."""
        with self.lock:
            expired = [stream for stream in self.parked.values()
                       if stream.reset
                       or now >= self._send_deadline(stream, stream.parked_at, stream.progress_at)]
            close_now = False
            for stream in expired:
                if not stream.reset and not self.dead:
                    self.proto.reset_stream(stream.stream_id, CANCEL)
                    stream.reset = True
                close_now = self._drop_parked_locked(stream) or close_now
            if expired:
                self.cond.notify_all()
                self._flush_locked()
                self._submit_ready_locked()
        if close_now:
            self.close_gracefully()

    def _send_complete_now(self, stream: StreamExchange, status: int, headers: Headers, body: bytes,
                           trailers: Headers | None) -> None:
        with self.lock:
            self._check_alive_locked(stream)
            only_head = not body and not trailers
            self.proto.send_response(stream.stream_id, status, _response_headers(headers),
                                     end_stream=only_head)
            if not only_head:
                lowered = _lowered(trailers) if trailers else None
                if self._send_data_locked(stream, memoryview(body), True, lowered):
                    self._hand_over_locked(stream)
                    return
            self._response_sent_locked(stream)
            self._flush_locked()

    def reset(self, stream: StreamExchange, code: int) -> None:
        with self.lock:
            if not self.dead and not stream.reset:
                self.proto.reset_stream(stream.stream_id, code)
                stream.reset = True
                self._flush_locked()
