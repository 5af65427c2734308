"""The HTTP/2 driver hands small complete responses to the poller.

A real Worker and HTTP2Driver over a loopback TCP pair; the test thread plays
the poller (it runs the method queue and the socket events by hand), h2 plays
the client, and the pool is a recorder, so each step happens when the test
says and can be asserted on.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import pytest

from h2serve.config import Config
from h2serve.connection.h2_app_side import HANDOFF_BACKLOG, HIGH_WATER, STALLED_QUEUE_LIMIT
from h2serve.connection.http2 import HTTP2Driver
from h2serve.connection.setup import Connection
from h2serve.worker import Worker

REQUEST = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", "/")]
TEXT = [("Content-Type", "text/plain")]


class RecordingPool:
    """Stands in for the ThreadPool: jobs wait here until the test runs them."""

    size = 4

    def __init__(self) -> None:
        self.jobs: list[tuple] = []

    def submit(self, fn, *args) -> None:
        self.jobs.append((fn, args))


class Rig:
    """One server-side HTTP/2 connection and its h2 client, stepped by hand."""

    def __init__(self, client_settings: dict | None = None) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.client_sock = socket.socket()
        # small buffers, so a client that stops reading blocks the server soon
        self.client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.client_sock.connect(listener.getsockname())
        server_sock, peer = listener.accept()
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        listener.close()
        self.client_sock.setblocking(False)
        self.worker = Worker(Config(), [], app=None)
        self.pool = self.worker.pool = RecordingPool()
        self.conn = Connection(self.worker, server_sock, peer)
        self.conn.alpn = "h2"
        self.conn.stage = "h2"
        self.worker.connections.add(self.conn)
        self.driver = self.conn.driver = HTTP2Driver(self.conn)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self._send_client()
        self.driver.start(b"")
        self.events: list = []
        self.pump()

    def _send_client(self) -> None:
        self.client_sock.setblocking(True)
        self.client_sock.sendall(self.client.data_to_send())
        self.client_sock.setblocking(False)

    def request(self) -> int:
        """Send a GET and let the poller read it; the stream's id."""
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, REQUEST, end_stream=True)
        self._send_client()
        self.pump(until=lambda: stream_id in self.driver.streams)
        return stream_id

    def pump(self, until=None, timeout: float = 3.0) -> None:
        """Run the poller's work (method queue, socket events) and read what the
        client got, until `until()` holds (or once, without it)."""
        deadline = time.monotonic() + timeout
        while True:
            self.worker._run_calls()
            for key, mask in self.worker.selector.select(0.01):
                driver = key.data.driver
                if mask & selectors.EVENT_WRITE:
                    driver.on_writable()
                if mask & selectors.EVENT_READ:
                    driver.on_readable()
            self.read_client()
            if until is None or until():
                return
            assert time.monotonic() < deadline, f"timed out; client saw {self.events}"

    def read_client(self) -> None:
        while True:
            try:
                data = self.client_sock.recv(65536)
            except BlockingIOError:
                break
            if not data:
                break
            self.events += self.client.receive_data(data)
            self._send_client()   # ACKs and window updates

    def response(self, stream_id: int) -> tuple[dict, bytes, bool]:
        head: dict = {}
        body = b""
        ended = False
        for event in self.events:
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                head = {n.decode(): v.decode() for n, v in event.headers}
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                self.client.acknowledge_received_data(event.flow_controlled_length, stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        return head, body, ended

    def serve_one(self, body: bytes) -> bytes:
        """A new request answered with body through the hand-off: the body the
        client got (the connection still works)."""
        stream_id = self.request()
        self.driver.streams[stream_id].send_complete(200, "OK", TEXT, body, None)
        self.pump(until=lambda: self.ended(stream_id))
        return self.response(stream_id)[1]

    def ended(self, stream_id: int) -> bool:
        return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id
                   for e in self.events)

    def close(self) -> None:
        self.worker.release(self.conn)
        self.client_sock.close()


@pytest.fixture
def rig():
    made: list[Rig] = []

    def make(**kwargs) -> Rig:
        made.append(Rig(**kwargs))
        return made[-1]

    yield make
    for one in made:
        one.close()


def send_in_thread(stream, body: bytes = b"hello") -> threading.Thread:
    thread = threading.Thread(target=stream.send_complete, args=(200, "OK", TEXT, body, None))
    thread.start()
    return thread


def test_app_thread_hands_a_small_response_over_without_the_connection_lock(rig):
    r = rig()
    stream_id = r.request()
    stream = r.driver.streams[stream_id]
    with r.driver.lock:   # the poller is busy with this connection
        app_thread = send_in_thread(stream)
        app_thread.join(2)
        assert not app_thread.is_alive(), "the app thread waited for the connection lock"
    r.pump(until=lambda: r.ended(stream_id))
    head, body, _ = r.response(stream_id)
    assert head[":status"] == "200" and head["content-type"] == "text/plain"
    assert body == b"hello"
    assert stream.done and stream_id not in r.driver.streams and r.driver.sched.in_pool == 0


def test_pool_slot_goes_to_the_next_stream_at_hand_off(rig):
    r = rig()
    r.pool.size = 1   # one slot for this connection's streams
    first, second = r.request(), r.request()
    assert [args[0].stream_id for _, args in r.pool.jobs] == [first]
    r.driver.streams[first].send_complete(200, "OK", TEXT, b"one", None)
    # the slot was free to take, so the next stream is queued before any framing
    assert [args[0].stream_id for _, args in r.pool.jobs] == [first, second]
    assert not r.ended(first)
    r.pump(until=lambda: r.ended(first))
    assert r.response(first)[1] == b"one"


def test_bad_response_field_raises_in_the_app_thread(rig):
    r = rig()
    stream_id = r.request()
    stream = r.driver.streams[stream_id]
    with pytest.raises(ValueError):
        stream.send_complete(200, "OK", [("X-Bad", "a\x00b")], b"hello", None)
    assert not r.driver.handoffs and not stream.handed_off
    stream.abort()   # what the WSGI adapter does after the error
    r.pump(until=lambda: any(isinstance(e, h2.events.StreamReset) for e in r.events))
    assert r.serve_one(b"fine") == b"fine"


def test_stream_reset_before_framing_sends_nothing_for_it(rig):
    r = rig()
    stream_id = r.request()
    stream = r.driver.streams[stream_id]
    with r.driver.lock:
        send_in_thread(stream).join(2)
        r.client.reset_stream(stream_id)
        r._send_client()
        time.sleep(0.05)
    r.driver.on_readable()   # the reset is read before the hand-off is framed
    assert stream.reset
    r.pump()
    assert r.response(stream_id) == ({}, b"", False)
    assert stream.done and stream_id not in r.driver.streams
    assert r.serve_one(b"next") == b"next"


def test_short_send_window_parks_the_rest_with_the_poller(rig):
    """A handed-off response the client's window cuts short waits in the
    connection (bounded by QUEUE_LIMIT), framed by the poller as the window
    opens: no pool thread waits for the client (it did, outside the
    connection's share of the pool, so 100 such streams took every thread)."""
    r = rig(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 3})
    r.pump()
    stream_id = r.request()
    r.pool.jobs.clear()
    r.driver.streams[stream_id].send_complete(200, "OK", TEXT, b"hello", None)
    r.pump(until=lambda: r.response(stream_id)[1] == b"hel")
    assert not r.ended(stream_id)
    assert r.pool.jobs == []              # nothing waits for the window in the pool
    assert stream_id in r.driver.parked and r.driver.parked_bytes == 2
    r.client.increment_flow_control_window(10, stream_id)
    r._send_client()
    r.pump(until=lambda: r.ended(stream_id))
    assert r.response(stream_id)[1] == b"hello"
    assert stream_id not in r.driver.streams and not r.driver.parked
    assert r.driver.parked_bytes == 0


def test_hand_offs_wait_while_the_client_is_not_reading(rig):
    r = rig(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    r.client.increment_flow_control_window(2**31 - 1 - 65535)
    r._send_client()
    r.pump()
    big, small = r.request(), r.request()
    # The client reads nothing while a big body is framed: the socket fills
    # and the rest stays in outbuf, past HIGH_WATER.
    with r.driver.lock:
        r.driver.proto.send_response(big, 200, [("content-type", "text/plain")])
        r.driver.proto.send_body(big, b"x" * (2 * HIGH_WATER), end_stream=True)
        r.driver._flush_locked()
    assert r.driver.wants_write and len(r.driver.outbuf) > HIGH_WATER
    r.driver.streams[small].send_complete(200, "OK", TEXT, b"small", None)
    r.worker._run_calls()
    assert len(r.driver.handoffs) == 1, "framed past HIGH_WATER while the client reads nothing"
    assert r.driver.streams[small].handed_off and not r.driver.streams[small].done
    r.pump(until=lambda: r.ended(small), timeout=10)   # the client reads again
    assert r.response(small)[1] == b"small"
    assert len(r.response(big)[1]) == 2 * HIGH_WATER


def test_hand_off_backlog_is_bounded_for_a_client_that_does_not_read(rig):
    """Past HANDOFF_BACKLOG responses waiting for the poller, an app thread
    frames its own response and waits at HIGH_WATER, as any writer does: a
    client that reads nothing cannot make the server hold every stream's body."""
    r = rig(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    r.client.increment_flow_control_window(2**31 - 1 - 65535)
    r._send_client()
    r.pump()
    big = r.request()
    small = [r.request() for _ in range(HANDOFF_BACKLOG + 1)]
    with r.driver.lock:
        r.driver.proto.send_response(big, 200, [("content-type", "text/plain")])
        r.driver.proto.send_body(big, b"x" * (2 * HIGH_WATER), end_stream=True)
        r.driver._flush_locked()
    for stream_id in small[:HANDOFF_BACKLOG]:
        r.driver.streams[stream_id].send_complete(200, "OK", TEXT, b"small", None)
    r.worker._run_calls()
    assert len(r.driver.handoffs) == HANDOFF_BACKLOG
    # Beyond the backlog the thread frames and queues what it can itself, but a
    # connection whose client reads nothing keeps at most STALLED_QUEUE_LIMIT queued.
    last_body = b"L" * (STALLED_QUEUE_LIMIT + 1)
    last = send_in_thread(r.driver.streams[small[-1]], last_body)
    last.join(0.5)
    assert last.is_alive(), "a response beyond the backlog did not wait for the client"
    assert len(r.driver.handoffs) == HANDOFF_BACKLOG
    assert r.driver.parked_bytes <= STALLED_QUEUE_LIMIT
    r.pump(until=lambda: all(r.ended(s) for s in small), timeout=10)
    last.join(5)
    assert not last.is_alive()
    assert [r.response(s)[1] for s in small] == [b"small"] * HANDOFF_BACKLOG + [last_body]
    assert r.worker.queued_bodies.used == 0 and r.driver.parked_bytes == 0


def wide_open(r: Rig) -> None:
    """Every window of the client at its largest: only the socket holds bytes back."""
    r.client.increment_flow_control_window(2**31 - 1 - 65535)
    r._send_client()
    r.pump()


MIB = 1024 * 1024
BIG = bytes(range(256)) * (5 * MIB // 256)   # a 5 MiB export


def test_a_large_complete_response_is_queued_and_its_thread_moves_on(rig):
    """A view returning 5 MiB: its thread frames what the output buffer takes,
    queues the rest for the poller and returns before the client read a byte,
    so bulk downloads do not hold the pool; the poller sends the rest as the
    client reads, and the budgets are whole again after."""
    r = rig(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    wide_open(r)
    stream_id = r.request()
    thread = send_in_thread(r.driver.streams[stream_id], BIG)
    thread.join(2)
    assert not thread.is_alive(), "the app thread waited for its client"
    stream = r.driver.streams[stream_id]
    assert stream.handed_off and stream_id in r.driver.parked
    assert r.worker.queued_bodies.used == r.driver.parked_bytes > 3 * MIB
    r.pump(until=lambda: r.ended(stream_id), timeout=20)
    assert r.response(stream_id)[1] == BIG
    assert stream_id not in r.driver.streams and not r.driver.parked
    assert r.worker.queued_bodies.used == 0 and r.driver.parked_bytes == 0


def test_past_the_workers_budget_a_thread_waits_for_its_client(rig):
    """The worker's budget of queued bytes bounds what a crowd of slow readers
    makes it hold: past it, an app thread waits for its client as before."""
    r = rig(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    wide_open(r)
    r.worker.queued_bodies.limit = MIB
    stream_id = r.request()
    thread = send_in_thread(r.driver.streams[stream_id], BIG)
    thread.join(1)
    assert thread.is_alive(), "queued past the worker's budget"
    assert r.worker.queued_bodies.used == 0
    r.pump(until=lambda: r.ended(stream_id), timeout=20)
    thread.join(5)
    assert not thread.is_alive() and r.response(stream_id)[1] == BIG


def test_a_streaming_app_stays_one_write_ahead_of_its_client(rig):
    """Back-pressure reaches a generator: with the client's window shut, its
    first write is queued, the next one waits until the client reads."""
    r = rig(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    r.pump()
    stream_id = r.request()
    stream = r.driver.streams[stream_id]
    writes: list[int] = []

    def app() -> None:
        stream.send_head(200, "OK", TEXT, False)
        for i in range(5):
            stream.send_body(b"x" * 3000)
            writes.append(i)
        stream.send_end([("x-checksum", "done")])

    thread = threading.Thread(target=app)
    thread.start()
    for _ in range(20):
        r.pump()
        time.sleep(0.02)
    assert writes == [0] and thread.is_alive()
    assert r.driver.parked_bytes == 2000          # the first write, less the 1000 let through
    r.client.increment_flow_control_window(10**6)
    r.client.increment_flow_control_window(10**6, stream_id)
    r._send_client()
    r.pump(until=lambda: r.ended(stream_id), timeout=10)
    thread.join(5)
    assert writes == [0, 1, 2, 3, 4] and r.response(stream_id)[1] == b"x" * 15000
    trailers = [e for e in r.events if isinstance(e, h2.events.TrailersReceived)]
    assert [(n, v) for n, v in trailers[0].headers] == [(b"x-checksum", b"done")]
    assert r.worker.queued_bodies.used == 0


def test_a_reset_drops_the_queued_bytes(rig):
    r = rig(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    wide_open(r)
    stream_id = r.request()
    thread = send_in_thread(r.driver.streams[stream_id], BIG)
    thread.join(2)
    assert r.worker.queued_bodies.used > 0
    r.client.reset_stream(stream_id)
    r._send_client()
    r.pump(until=lambda: stream_id not in r.driver.parked)
    assert r.worker.queued_bodies.used == 0 and r.driver.parked_bytes == 0
    assert stream_id not in r.driver.streams
    assert r.serve_one(b"next") == b"next"      # the connection goes on


def test_frames_left_by_a_turn_are_read_at_the_next_turn_without_new_bytes(rig, monkeypatch):
    """A turn that ends with frames still buffered (its time slice passed)
    schedules the connection's next turn itself: the rest is read although
    the client sends nothing more and no timer sweep runs (this rig never
    calls on_tick, which the worker runs only every SWEEP_S)."""
    import h2serve.connection.http2 as driver_module

    monkeypatch.setattr(driver_module, "READ_SLICE_S", 0.0)   # one frame per turn
    one = rig()
    one.worker.connections.add(object())   # not alone: turns are sliced
    ids = []
    for _ in range(5):
        stream_id = one.client.get_next_available_stream_id()
        one.client.send_headers(stream_id, REQUEST, end_stream=True)
        ids.append(stream_id)
    one._send_client()   # all five in one write
    one.pump(until=lambda: all(sid in one.driver.streams for sid in ids))
    assert one.driver.more_to_read is False


def _client_got(r: Rig, stream_id: int, timeout: float = 2.0) -> bool:
    """Read the client's socket only (the poller does nothing meanwhile) until
    the stream's response has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r.read_client()
        if r.ended(stream_id):
            return True
        time.sleep(0.005)
    return False


def test_the_only_stream_in_the_pool_sends_its_small_response_itself(rig):
    """A connection with one request at a time (most API clients) gets its
    response from the app thread: the poller, which may be busy with other
    connections' bulk writes, is not on the response's path, and it is not
    even woken for it."""
    r = rig()
    stream_id = r.request()
    r.worker._run_calls()   # nothing left over from setting up
    send_in_thread(r.driver.streams[stream_id], b"direct").join(2)
    assert r.worker._calls.empty(), "the poller was asked to do something"
    assert _client_got(r, stream_id), "the response waited for the poller"
    assert r.response(stream_id)[1] == b"direct"
    assert stream_id not in r.driver.streams and r.driver.sched.in_pool == 0
    assert not r.driver.outbuf and not r.driver.wants_write
    assert r.serve_one(b"next") == b"next"   # and the poller's path still works


def test_streams_running_side_by_side_leave_their_responses_to_the_poller(rig):
    """With other streams of the connection in the pool, responses are framed
    by the poller, so those that finish together share one TLS write."""
    r = rig()
    first, second = r.request(), r.request()
    send_in_thread(r.driver.streams[first], b"one").join(2)
    assert not _client_got(r, first, timeout=0.2)
    assert r.driver.handoffs or not r.worker._calls.empty()
    r.pump(until=lambda: r.ended(first))
    assert r.response(first)[1] == b"one"
    send_in_thread(r.driver.streams[second], b"two").join(2)   # alone now
    assert _client_got(r, second)
    assert r.response(second)[1] == b"two"


def test_a_response_the_socket_cannot_take_now_waits_for_the_poller(rig):
    """The app thread's send is a single non-blocking one: what a full socket
    does not take stays in the output buffer, and the poller writes it at its
    EVENT_WRITE (the selector is only ever changed by the poller)."""
    r = rig()
    stream_id = r.request()
    r.worker._run_calls()
    real = r.driver.sock

    class FullSocket:
        """The server's socket while its send buffer is full."""

        def send(self, data):
            raise BlockingIOError

    r.driver.sock = FullSocket()
    send_in_thread(r.driver.streams[stream_id], b"later").join(2)
    assert r.driver.outbuf and r.driver.wants_write
    assert not _client_got(r, stream_id, timeout=0.1)
    r.driver.sock = real   # the client reads: room again
    r.pump(until=lambda: r.ended(stream_id))
    assert r.response(stream_id)[1] == b"later"
    assert not r.driver.outbuf and not r.driver.wants_write


class _WriteRecorder:
    """Stands in for a connection in Worker._write_turn."""

    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls, self.closed = name, calls, False
        self.driver = self
        self.write_turn = 0

    def on_writable(self) -> None:
        self.calls.append(("write", self.name))

    def on_readable(self) -> None:
        self.calls.append(("read", self.name))


def test_one_connection_with_output_waiting_writes_per_turn_each_in_its_turn():
    """However many bulk connections are writable, a poller turn writes for
    one of them (so a small request waits for one WRITE_QUANTUM at most), the
    one that has waited longest."""
    worker = Worker(Config(), [], app=None)
    calls: list = []
    a, b, c = (_WriteRecorder(name, calls) for name in "abc")
    for _ in range(6):
        worker._write_turn([(a, selectors.EVENT_WRITE), (b, selectors.EVENT_WRITE),
                            (c, selectors.EVENT_WRITE | selectors.EVENT_READ)])
    assert [name for kind, name in calls if kind == "write"] == list("abcabc")
    assert [name for kind, name in calls if kind == "read"] == ["c", "c"]  # with its write
    calls.clear()
    for _ in range(4):   # b always first in select()'s list: a, which waited longer, still goes first
        worker._write_turn([(b, selectors.EVENT_WRITE), (a, selectors.EVENT_WRITE)])
    assert calls == [("write", "a"), ("write", "b"), ("write", "a"), ("write", "b")]


def test_a_poller_call_that_queues_another_runs_once_a_turn():
    """The method queue runs what was queued before the turn began: a call
    that queues its own next step (a connection's next read turn) cannot keep
    the poller from select() and the other sockets (it did: a flooding
    client's reads ran back to back for 1.6 s while another's request waited)."""
    worker = Worker(Config(), [], app=None)
    runs: list[int] = []

    def again() -> None:
        runs.append(1)
        worker.call_soon(again)

    worker.call_soon(again)
    worker._run_calls()
    assert runs == [1]
    worker._run_calls()
    assert runs == [1, 1]
