"""Slow and stalling clients against the real `h2serve` command on 127.0.0.1.

Slow readers (CVE-2019-9517, and the reader half of CVE-2019-9511), HTTP/2
stream exhaustion with stalled bodies, HTTP/1.1 slowloris on heads and bodies,
a connection flood, garbage and renegotiating TLS clients. Every attack test
shows three things:

1. the attacking connection gets the answer it should (RST_STREAM CANCEL, a
   408, a close at the deadline) within bounded time;
2. the worker's memory stays bounded: VmRSS of the worker before the attack
   and its peak during it, sampled every 50 ms;
3. a well-behaved httpx client on another connection keeps being served:
   p50/max latency of fresh-connection requests during the attack against a
   baseline taken just before.

The figures are printed (run with -s to see them). Timeouts are shortened
with the settings the defences use, so every test ends within a few seconds.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import shutil
import socket
import ssl
import statistics
import subprocess
import threading
import time
from urllib.parse import parse_qs

import httpx
import pytest
from hyperframe.frame import RstStreamFrame, SettingsFrame

from tests.h2client import CANCEL, ConnectionClosed, H2Client

APP = "tests.test_attacks_slow:attack_app"
HELLO = b"Hello, world!"
MAX_WINDOW = 2**31 - 1
IO_TIMEOUT = 5.0


# --------------------------------------------------------------------------- the app


_stats = {"released": 0}
_stats_lock = threading.Lock()
_PATTERN = bytes(range(256)) * 256   # 64 KiB


def attack_app(environ, start_response):
    """/read reads the whole body (and counts reads that failed), /big streams
    ?size= bytes in 64 KiB chunks, /onebig returns them as one bytes object (its
    pages stay untouched until the server copies them), /stats reports the
    counters, anything else says hello."""
    path = environ.get("PATH_INFO", "/")
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/read":
        total = 0
        try:
            while True:
                block = environ["wsgi.input"].read(16384)
                if not block:
                    break
                total += len(block)
        except OSError:
            with _stats_lock:
                _stats["released"] += 1
            raise
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"length": total}).encode()]
    if path == "/big":
        size = int(query.get("size", "100000000"))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])

        def chunks():
            left = size
            while left > 0:
                piece = _PATTERN[:min(left, len(_PATTERN))]
                left -= len(piece)
                yield piece

        return chunks()
    if path == "/onebig":
        size = int(query.get("size", "64000000"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [bytes(size)]
    if path == "/stats":
        with _stats_lock:
            body = json.dumps(_stats).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [HELLO]


# --------------------------------------------------------------------------- measuring


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class RssPeak:
    """The worker's VmRSS before an attack and its peak while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = rss_kb(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except (OSError, AssertionError):
                return

    def stop(self) -> float:
        """Growth in MB from before to the peak."""
        self._stop.set()
        self._thread.join(2)
        self.peak = max(self.peak, rss_kb(self.pid))
        return (self.peak - self.before) / 1024


class Legit:
    """A well-behaved client: each request on a fresh httpx connection (TCP, TLS
    handshake, request), so accept, handshake and app threads are all exercised."""

    def __init__(self, server, http2: bool) -> None:
        self.url = f"{server.url}/hello"
        self.http2 = http2
        self.context = ssl.create_default_context(cafile=server.cafile)

    def once(self) -> float:
        started = time.perf_counter()
        with httpx.Client(verify=self.context, http2=self.http2, timeout=IO_TIMEOUT) as client:
            response = client.get(self.url)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200 and response.content == HELLO
        assert response.http_version == ("HTTP/2" if self.http2 else "HTTP/1.1")
        return elapsed

    def run(self, count: int, spacing: float = 0.02) -> list[float]:
        times = []
        for _ in range(count):
            times.append(self.once())
            time.sleep(spacing)
        return times

    def baseline(self) -> list[float]:
        self.run(3, 0)  # warm up
        return self.run(8, 0)


def report(name: str, baseline: list[float], during: list[float], rss_mb: float,
           extra: str = "") -> tuple[float, float]:
    base_p50 = statistics.median(baseline)
    p50, worst = statistics.median(during), max(during)
    print(f"\n[{name}] legit p50 {p50 * 1000:.1f} ms / max {worst * 1000:.1f} ms "
          f"(baseline p50 {base_p50 * 1000:.1f} ms / max {max(baseline) * 1000:.1f} ms); "
          f"worker RSS +{rss_mb:.1f} MB{'; ' + extra if extra else ''}")
    return p50, worst


def assert_legit_normal(baseline: list[float], during: list[float], max_s: float = 1.0) -> None:
    """Generous bounds: the median stays near the baseline, no request waits long."""
    base_p50 = statistics.median(baseline)
    assert statistics.median(during) <= max(3 * base_p50, base_p50 + 0.15), (baseline, during)
    assert max(during) <= max_s, during


def assert_clean_log(server) -> None:
    """Defences answer attacks without a traceback in the server's log."""
    assert "Traceback" not in server.log, server.log[-3000:]


def attacker_h2(server, **kwargs) -> H2Client:
    return H2Client(server.host, server.port, cafile=server.cafile, timeout=IO_TIMEOUT,
                    **kwargs).connect()


def tls_socket(server, timeout: float = IO_TIMEOUT) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=server.cafile)
    context.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection((server.host, server.port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="localhost")


def read_until_eof(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or timeout passes (False)."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(data), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(262144)
        except (TimeoutError, BlockingIOError):
            return bytes(data), False
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError):
            return bytes(data), True
        except ssl.SSLError:
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk


def resets_by_stream(clients: list[H2Client], wanted: int, timeout: float) -> dict[int, float]:
    """Read every client until `wanted` streams in all got RST_STREAM; returns
    (client index, stream id) -> seconds after the call when the reset arrived."""
    started = time.monotonic()
    arrived: dict = {}
    selector = selectors.DefaultSelector()
    for index, client in enumerate(clients):
        selector.register(client.sock, selectors.EVENT_READ, index)
    try:
        while len(arrived) < wanted and time.monotonic() - started < timeout:
            ready = selector.select(0.05)
            for key, _ in ready:
                client = clients[key.data]
                try:
                    while True:
                        frame = client.read_frame(0.0 if client._buffer else 0.01)
                        if frame is None:
                            break
                        if isinstance(frame, RstStreamFrame):
                            arrived[(key.data, frame.stream_id)] = (time.monotonic() - started,
                                                                   frame.error_code)
                except ConnectionClosed:
                    selector.unregister(client.sock)
    finally:
        selector.close()
    return arrived


# --------------------------------------------------------------------------- HTTP/2 slow readers


def test_h2_reader_that_stops_is_cut_at_send_timeout(h2serve_server):
    """CVE-2019-9517 shape: huge windows, big responses, the client never reads.
    The output buffer stays at its bound, and once the socket took nothing for
    send_timeout the whole connection is cut, freeing its app threads at once."""
    server = h2serve_server(APP, "--send-timeout", "1.5", "--keep-alive", "30", threads=4)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=True)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    attacker = attacker_h2(server, settings={SettingsFrame.INITIAL_WINDOW_SIZE: MAX_WINDOW},
                           auto_window=False)
    try:
        attacker.send_window_update(0, MAX_WINDOW - 65535)
        streams = [attacker.request("/big?size=200000000") for _ in range(2)]
        started = time.monotonic()
        time.sleep(0.3)   # the socket buffers fill; the app threads block
        during = legit.run(10)
        server.wait_for_log(r"closing .*: it read none of our output for send_timeout", timeout=5)
        cut_after = time.monotonic() - started
        # What reached the client's socket ends in EOF, long before 2 x 200 MB.
        attacker.sock.settimeout(3)
        closed = attacker.read_until_closed(5)
        received = sum(len(f.data) for s in streams for f in attacker.frames_on(s)
                       if hasattr(f, "data"))
    finally:
        attacker.close()
    growth = rss.stop()
    report("h2 reader stops", baseline, during, growth,
           f"connection cut {cut_after:.2f} s after the requests (send_timeout 1.5 s), "
           f"{received / 1e6:.1f} MB delivered of 400 MB")
    assert closed, "the stalled connection was not closed"
    assert 1.4 <= cut_after <= 3.0, cut_after
    assert received < 50_000_000
    assert growth < 24, f"worker RSS grew {growth:.1f} MB"
    assert_legit_normal(baseline, during)
    assert_clean_log(server)


def test_h2_huge_window_single_write_stays_within_the_output_bound(h2serve_server):
    """With windows of 2 GB, one 64 MB app write must not be framed into the
    output buffer whole: framing goes 64 KiB at a time under HIGH_WATER. The
    body's own pages are never touched (bytes(n) is calloc'd), so RSS growth is
    the server's copies only."""
    server = h2serve_server(APP, "--send-timeout", "2", "--keep-alive", "30", threads=4)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=True)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    attacker = attacker_h2(server, settings={SettingsFrame.INITIAL_WINDOW_SIZE: MAX_WINDOW},
                           auto_window=False)
    try:
        attacker.send_window_update(0, MAX_WINDOW - 65535)
        for _ in range(3):
            attacker.request("/onebig?size=64000000")
        time.sleep(0.5)
        during = legit.run(10)
        time.sleep(0.3)
    finally:
        attacker.close()
    growth = rss.stop()
    report("h2 one 64 MB write, 3 streams, reader stops", baseline, during, growth)
    assert growth < 24, f"worker RSS grew {growth:.1f} MB for 3 x 64 MB never read"
    assert_legit_normal(baseline, during)
    assert_clean_log(server)


# --------------------------------------------------------------------------- HTTP/2 stream exhaustion


def _open_stalled_streams(client: H2Client, count: int, body: bytes) -> list[int]:
    """count POST streams to /read, each with `body` and no END_STREAM, in one write."""
    from hpack import Encoder  # noqa: F401  (client.encoder is an hpack Encoder)
    from hyperframe.frame import DataFrame, HeadersFrame

    out = bytearray()
    ids = []
    for _ in range(count):
        stream_id = client.new_stream_id()
        ids.append(stream_id)
        frame = HeadersFrame(stream_id)
        frame.data = client.encoder.encode([
            (b":method", b"POST"), (b":scheme", b"https"),
            (b":authority", client_authority(client)), (b":path", b"/read"),
            (b"content-length", b"1000000")])
        frame.flags.add("END_HEADERS")
        out += frame.serialize()
        if body:
            out += DataFrame(stream_id, body).serialize()
    client.send_raw(bytes(out))
    return ids


def client_authority(client: H2Client) -> bytes:
    return f"{client.host}:{client.port}".encode()


def test_h2_stalled_bodies_on_every_connection_hold_no_thread(h2serve_server):
    """Stream exhaustion + slowloris over h2: every connection the worker allows
    but one opens max streams whose bodies stall after 10 bytes. They wait in the
    poller (body_prebuffer), take no thread, and are reset with CANCEL at
    client_data_timeout; a legit client on the last free connection is served
    normally meanwhile."""
    connections, streams_each = 19, 100
    server = h2serve_server(APP, "--client-data-timeout", "2", "--worker-connections",
                            str(connections + 1), "--keep-alive", "30", threads=4)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=True)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    attackers = []
    try:
        for _ in range(connections):
            attackers.append(attacker_h2(server))
        opened_at = time.monotonic()
        for client in attackers:
            _open_stalled_streams(client, streams_each, b"0123456789")
        time.sleep(0.2)
        during = legit.run(10)
        spent = time.monotonic() - opened_at
        resets = resets_by_stream(attackers, connections * streams_each, timeout=4)
    finally:
        for client in attackers:
            client.close()
    growth = rss.stop()
    times = sorted(t for t, _ in resets.values())
    codes = {code for _, code in resets.values()}
    report(f"h2 {connections} conns x {streams_each} stalled bodies", baseline, during, growth,
           f"{len(resets)} streams reset {times[0]:.2f}..{times[-1]:.2f} s after the legit "
           f"run began (client_data_timeout 2 s, legit run took {spent:.2f} s)" if times else "")
    assert spent < 1.5, "the legit requests did not all run inside the stall window"
    assert_legit_normal(baseline, during)
    assert_clean_log(server)
    assert len(resets) == connections * streams_each, f"only {len(resets)} streams were reset"
    assert codes == {CANCEL}, codes
    assert growth < 48, f"worker RSS grew {growth:.1f} MB"


def test_h2_app_blocked_reading_a_stalled_body_is_released_and_reset(h2serve_server):
    """A body that got past body_prebuffer and then stalls: the app blocked in
    wsgi.input.read gets an error at client_data_timeout, the stream is reset
    with CANCEL, and the thread serves others again."""
    server = h2serve_server(APP, "--client-data-timeout", "1", "--keep-alive", "30", threads=2)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=True)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    attacker = attacker_h2(server)
    try:
        ids = _open_stalled_streams(attacker, 2, b"")
        for stream_id in ids:     # the whole prebuffer: the apps start, read it, then block
            attacker.send_data(stream_id, b"x" * 65536)
        sent_at = time.monotonic()
        resets = resets_by_stream([attacker], 2, timeout=4)
        elapsed = time.monotonic() - sent_at
        during = legit.run(8)
    finally:
        attacker.close()
    growth = rss.stop()
    stats = httpx.get(f"{server.url}/stats", verify=ssl.create_default_context(
        cafile=server.cafile)).json()
    report("h2 app blocked on a stalled body", baseline, during, growth,
           f"{len(resets)} resets after {elapsed:.2f} s, apps released {stats['released']}")
    assert {code for _, code in resets.values()} == {CANCEL}
    assert len(resets) == 2
    assert 0.8 <= elapsed <= 2.5, elapsed
    assert stats["released"] == 2
    assert_legit_normal(baseline, during)
    assert_clean_log(server)
    assert growth < 16


@pytest.mark.parametrize("prebuffer", ["65536", "0"])
def test_h2_body_dribble_is_cut_by_the_minimum_rate(h2serve_server, prebuffer):
    """One byte every 0.2 s never trips the 1 s per-wait timeout; body_min_rate
    (500 B/s after the 1 s grace) cuts it: in the poller while prebuffering, in
    the app's read when the app started at the head (body_prebuffer 0)."""
    server = h2serve_server(APP, "--client-data-timeout", "1", "--body-min-rate", "500",
                            "--body-prebuffer", prebuffer, "--keep-alive", "30", threads=2)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=True)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    attacker = attacker_h2(server)
    during: list[float] = []
    try:
        (stream_id,) = _open_stalled_streams(attacker, 1, b"")
        started = time.monotonic()
        reset_after = None
        while time.monotonic() - started < 3.5:
            try:
                attacker.send_data(stream_id, b"x")
            except OSError:
                break
            during.append(legit.once())
            frame = attacker.read_frame(0.2)
            while frame is not None:
                if isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id:
                    reset_after = (time.monotonic() - started, frame.error_code)
                    break
                frame = attacker.read_frame(0.0)
            if reset_after:
                break
    finally:
        attacker.close()
    growth = rss.stop()
    report(f"h2 body dribble, prebuffer {prebuffer}", baseline, during, growth,
           f"reset after {reset_after}")
    assert reset_after is not None, "the dribbling stream was never cut"
    assert reset_after[1] == CANCEL
    assert 0.9 <= reset_after[0] <= 2.0, reset_after
    assert_legit_normal(baseline, during)
    assert_clean_log(server)
    assert growth < 16


@pytest.mark.parametrize("prebuffer", ["65536", "0"])
def test_h2_body_prebuffer_decides_when_the_app_starts(h2serve_server, prebuffer):
    """The trade-off body_prebuffer makes: by default an app whose request body
    is still coming starts once 64 KiB (or the end) arrived, so an app that
    answers before reading the body (streaming request and response) needs
    --body-prebuffer 0 to answer early."""
    server = h2serve_server(APP, "--body-prebuffer", prebuffer, threads=2)
    client = attacker_h2(server)
    try:
        stream_id = client.new_stream_id()
        client.send_headers(stream_id, [(":method", "POST"), (":scheme", "https"),
                                        (":authority", server.authority), (":path", "/hello")])
        client.send_data(stream_id, b"first part")
        early = client.collect(0.5)
        client.send_data(stream_id, b"", end_stream=True)
        response = client.response(stream_id)
    finally:
        client.close()
    answered_early = any(f.stream_id == stream_id for f in early)
    assert response.status == 200 and response.body == HELLO
    assert answered_early == (prebuffer == "0")


# --------------------------------------------------------------------------- HTTP/1.1 slow readers


def test_h1_reader_that_stops_is_cut_at_send_timeout(h2serve_server):
    """A client that asks for 200 MB and never reads: the app thread is blocked
    in a write for send_timeout at most, then the connection is closed."""
    server = h2serve_server(APP, "--send-timeout", "1", threads=2)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=False)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    sock = tls_socket(server)
    try:
        sock.sendall(b"GET /big?size=200000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        started = time.monotonic()
        during = legit.run(8)
        time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
        data, closed = read_until_eof(sock, 4)
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    growth = rss.stop()
    report("h1 reader stops", baseline, during, growth,
           f"closed {closed} after {elapsed:.2f} s with {len(data) / 1e6:.1f} MB delivered")
    assert closed and len(data) < 50_000_000
    assert data.startswith(b"HTTP/1.1 200 ")
    assert_legit_normal(baseline, during)
    assert_clean_log(server)
    assert growth < 16


def test_h1_single_big_write_is_neither_copied_nor_one_deadline(h2serve_server):
    """A 64 MB single-chunk response to a client that never reads: sent from the
    app's buffer (no head+body copy), so RSS barely moves; still cut at send_timeout."""
    server = h2serve_server(APP, "--send-timeout", "1", threads=2)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=False)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    socks = []
    try:
        for _ in range(2):
            sock = tls_socket(server)
            sock.sendall(b"GET /onebig?size=64000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            socks.append(sock)
        time.sleep(1.6)   # past send_timeout: both writes gave up
        growth_stalled = (rss_kb(worker) - rss.before) / 1024
        results = [read_until_eof(sock, 3) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    during = legit.run(8)
    growth = rss.stop()
    report("h1 one 64 MB write x 2, reader stops", baseline, during, growth,
           f"RSS +{growth_stalled:.1f} MB while stalled")
    assert all(closed and len(data) < 64_000_000 for data, closed in results), [(len(d), c) for d, c in results]
    assert growth < 24, f"worker RSS grew {growth:.1f} MB for 2 x 64 MB never read"
    assert_legit_normal(baseline, during)
    assert_clean_log(server)


def test_h1_slow_reader_gets_a_deadline_per_piece_not_per_response(h2serve_server):
    """send_timeout bounds each blocked write, not a whole 20 MB body: a client
    that reads steadily but slower than 20 MB per send_timeout gets it all."""
    server = h2serve_server(APP, "--send-timeout", "1", threads=2)
    sock = tls_socket(server)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /onebig?size=20000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = 0
        started = time.monotonic()
        sock.settimeout(IO_TIMEOUT)
        while received < 20_000_000 + 100:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += len(chunk)
            ahead = received / 10e6 - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)   # read at 10 MB/s: 2 s for the body
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    print(f"\n[h1 slow steady reader] {received / 1e6:.1f} MB in {elapsed:.2f} s "
          f"with send_timeout 1 s")
    assert elapsed > 1.2, "the reader was not slower than send_timeout per body"
    assert received > 20_000_000, f"cut after {received} bytes"


# --------------------------------------------------------------------------- HTTP/1.1 slowloris


def test_h1_slowloris_heads_are_cut_at_the_head_deadline(h2serve_server):
    """40 connections send a request head one byte every 0.3 s. Each waits in the
    poller between bytes (no thread), and is closed, without a response, at
    client_data_timeout after its first byte."""
    server = h2serve_server(APP, "--client-data-timeout", "1.5", threads=2)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=False)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    head = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100
    socks = [tls_socket(server) for _ in range(40)]
    first_byte: dict[ssl.SSLSocket, float] = {}
    closed_after: dict[ssl.SSLSocket, float] = {}
    answered = 0
    during: list[float] = []
    try:
        for sock in socks:
            sock.setblocking(False)
        position = 0
        started = time.monotonic()
        while len(closed_after) < len(socks) and time.monotonic() - started < 4.0:
            for sock in socks:
                if sock in closed_after:
                    continue
                try:
                    sock.send(head[position:position + 1])
                    first_byte.setdefault(sock, time.monotonic())
                except (ssl.SSLWantWriteError, BlockingIOError):
                    pass
                except OSError:
                    closed_after[sock] = time.monotonic() - first_byte[sock]
            position += 1
            if len(during) < 8:
                during.append(legit.once())
            pause_until = time.monotonic() + 0.3
            while time.monotonic() < pause_until:
                for sock in socks:
                    if sock in closed_after:
                        continue
                    try:
                        data = sock.recv(4096)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    except OSError:
                        data = b""
                    if data:
                        answered += 1
                    closed_after[sock] = time.monotonic() - first_byte[sock]
                time.sleep(0.02)
    finally:
        for sock in socks:
            sock.close()
    growth = rss.stop()
    times = sorted(closed_after.values())
    report("h1 slowloris heads x 40", baseline, during, growth,
           f"{len(times)} closed {times[0]:.2f}..{times[-1]:.2f} s after their first byte"
           if times else "none closed")
    assert len(closed_after) == len(socks), f"{len(socks) - len(closed_after)} never closed"
    assert answered == 0, "a slowloris head got a response"
    assert 1.3 <= times[0] and times[-1] <= 2.6, times
    assert_legit_normal(baseline, during)
    assert_clean_log(server)
    assert growth < 16


def test_h1_stalled_oversized_heads_get_431_and_cost_bounded_memory(h2serve_server):
    """100 connections each send 300 KB of valid header lines (within the field
    count and field size limits) and stall. limit_request_head (64 KiB) answers
    each with 431 and a close as soon as it is passed, so no connection holds
    more than 64 KiB of unfinished head (without it, ~800 KB each could wait
    for client_data_timeout)."""
    server = h2serve_server(APP, "--client-data-timeout", "3", threads=2)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=False)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    head = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n" + b"".join(
        b"X-Field-%02d: %s\r\n" % (i, b"v" * 3000) for i in range(99))   # no final CRLF
    socks = []
    answers: list[bytes] = []
    try:
        started = time.monotonic()
        for _ in range(100):
            sock = tls_socket(server)
            try:
                sock.sendall(head)
            except OSError:
                pass   # the server may answer and close before taking it all
            socks.append(sock)
        during = legit.run(8)
        for sock in socks:
            data, closed = read_until_eof(sock, 2)
            answers.append(data if closed else b"still open")
        elapsed = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    growth = rss.stop()
    statuses = {data[:12] for data in answers}
    report("h1 100 stalled 300 KB heads", baseline, during, growth,
           f"answers {sorted(statuses)} within {elapsed:.2f} s")
    assert statuses == {b"HTTP/1.1 431"}, statuses
    assert elapsed < 2.5
    assert growth < 16, f"worker RSS grew {growth:.1f} MB"
    assert_legit_normal(baseline, during)
    assert_clean_log(server)


def _dribble_bodies(server, count: int, headers: str, step: float, limit: float,
                    legit: Legit) -> tuple[dict, list[float]]:
    """count connections POST /read and dribble their body one byte per step;
    returns socket index -> (seconds until the server answered or closed, the
    bytes it sent), and the legit latencies measured meanwhile."""
    socks = []
    for _ in range(count):
        sock = tls_socket(server)
        sock.sendall(f"POST /read HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n"
                     f"{headers}\r\n".encode())
        socks.append(sock)
    for sock in socks:
        sock.setblocking(False)
    outcome: dict[int, tuple[float, bytes]] = {}
    received = {index: b"" for index in range(count)}
    during: list[float] = []
    started = time.monotonic()
    while len(outcome) < count and time.monotonic() - started < limit:
        for index, sock in enumerate(socks):
            if index in outcome:
                continue
            try:
                sock.send(b"x")
            except (ssl.SSLWantWriteError, BlockingIOError):
                pass
            except OSError:
                outcome[index] = (time.monotonic() - started, received[index])
        if len(during) < 8:
            during.append(legit.once())
        pause_until = time.monotonic() + step
        while time.monotonic() < pause_until and len(outcome) < count:
            for index, sock in enumerate(socks):
                if index in outcome:
                    continue
                try:
                    data = sock.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                except OSError:
                    data = b""
                if data:
                    received[index] += data
                    continue
                outcome[index] = (time.monotonic() - started, received[index])
            time.sleep(0.02)
    for sock in socks:
        sock.close()
    return outcome, during


def test_h1_body_dribbles_wait_in_the_poller_and_are_cut(h2serve_server):
    """20 connections (threads: 2) dribble a 1000-byte body a byte every 0.2 s.
    Below body_prebuffer, their apps never start: no thread is held, the legit
    client is served normally, and body_min_rate cuts them at about the 1 s
    grace (client_data_timeout)."""
    server = h2serve_server(APP, "--client-data-timeout", "1", "--body-min-rate", "500",
                            threads=2)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=False)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    outcome, during = _dribble_bodies(server, 20, "", 0.2, 4.0, legit)
    growth = rss.stop()
    times = sorted(t for t, _ in outcome.values())
    report("h1 body dribble x 20, prebuffered", baseline, during, growth,
           f"{len(times)} cut {times[0]:.2f}..{times[-1]:.2f} s after the head" if times else "")
    assert len(outcome) == 20
    assert 0.9 <= times[0] and times[-1] <= 2.5, times
    for _, data in outcome.values():
        assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert_legit_normal(baseline, during)
    assert_clean_log(server)
    assert growth < 16


@pytest.mark.parametrize("how", ["prebuffer-off", "expect-100-continue"])
def test_h1_body_dribble_into_a_reading_app_gets_408(h2serve_server, how):
    """When the app does start at the head (body_prebuffer 0, or Expect:
    100-continue), the app's read fails once the dribble falls below
    body_min_rate after the grace, and the client gets 408 and a close."""
    extra = ["--body-prebuffer", "0"] if how == "prebuffer-off" else []
    headers = "Expect: 100-continue\r\n" if how == "expect-100-continue" else ""
    server = h2serve_server(APP, "--client-data-timeout", "1", "--body-min-rate", "500",
                            *extra, threads=2)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=False)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    outcome, during = _dribble_bodies(server, 1, headers, 0.2, 4.0, legit)
    growth = rss.stop()
    stats = httpx.get(f"{server.url}/stats", verify=ssl.create_default_context(
        cafile=server.cafile)).json()
    elapsed, data = outcome.get(0, (None, b""))
    report(f"h1 body dribble, {how}", baseline, during, growth,
           f"answered after {elapsed} s: {data[:40]!r}")
    assert elapsed is not None, "the dribble was never cut"
    assert 0.9 <= elapsed <= 2.5, elapsed
    final = data.split(b"HTTP/1.1 100 Continue\r\n\r\n")[-1]
    assert final.startswith(b"HTTP/1.1 408 "), data[:200]
    assert b"connection: close" in final.lower()
    assert stats["released"] == 1
    assert_legit_normal(baseline, during)
    assert_clean_log(server)


# --------------------------------------------------------------------------- floods and TLS


def test_connection_flood_shares_worker_connections_and_clears_at_the_deadline(h2serve_server):
    """worker_connections caps what one worker holds; past it, a new client takes
    the place of the silent connection idle longest, so a legit client does not
    wait for the flood to expire (it waited client_data_timeout before). The
    rest expire at client_data_timeout. Memory stays flat."""
    cap = 30
    server = h2serve_server(APP, "--worker-connections", str(cap), "--client-data-timeout", "1",
                            threads=2)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=True)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    flood = []
    try:
        for _ in range(cap):
            flood.append(socket.create_connection((server.host, server.port), timeout=IO_TIMEOUT))
        time.sleep(0.2)
        first = legit.once()          # an idle flood connection makes room at once
        during = legit.run(8)
        evicted = 0
        for sock in flood:
            sock.settimeout(2.0)    # those not evicted close at client_data_timeout
            try:
                evicted += sock.recv(1) == b""
            except (TimeoutError, ConnectionResetError):
                pass
    finally:
        for sock in flood:
            sock.close()
    growth = rss.stop()
    report(f"connection flood of {cap} (= worker_connections)", baseline, during, growth,
           f"first legit request during the flood took {first:.2f} s; {evicted} flood "
           "connections closed by the server")
    assert first <= 2 * max(baseline) + 0.1, first
    assert evicted == cap
    assert_legit_normal(baseline, during)
    assert_clean_log(server)
    assert growth < 16


GARBAGE = {
    "random": lambda rng: rng.randbytes(rng.randrange(1, 3000)),
    "plain-http": lambda rng: b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "huge-record": lambda rng: b"\x16\x03\x01\xff\xff" + rng.randbytes(200),
    "alert": lambda rng: b"\x15\x03\x03\x00\x02\x02\x28",
    "sslv2-hello": lambda rng: b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + rng.randbytes(37),
}


def test_garbage_tls_handshakes_close_cleanly_and_hold_no_thread(h2serve_server):
    """100 connections send bytes that are not a TLS handshake (random, plain
    HTTP, a record header claiming 64 KiB, an alert, an SSLv2 hello). Each is
    closed promptly (well before handshake_timeout), with a TLS alert at most
    and never an HTTP response, except plain HTTP, which gets a readable 400
    (tests/test_plain_http_on_tls.py); the only pool thread still serves the legit client."""
    server = h2serve_server(APP, "--handshake-timeout", "3", threads=1)
    worker = server.worker_pids()[0]
    legit = Legit(server, http2=True)
    baseline = legit.baseline()
    rss = RssPeak(worker)
    rng = random.Random(9517)
    kinds = list(GARBAGE)
    closed_after: list[float] = []
    replies: list[tuple[str, bytes]] = []
    during: list[float] = []
    for index in range(100):
        kind = kinds[index % len(kinds)]
        sock = socket.create_connection((server.host, server.port), timeout=IO_TIMEOUT)
        try:
            started = time.monotonic()
            try:
                sock.sendall(GARBAGE[kind](rng))
            except OSError:
                pass
            data, closed = read_until_eof(sock, 2.5)
            if kind == "huge-record" and not closed:
                sock.sendall(rng.randbytes(70000))   # complete the claimed record: garbage
                data, closed = read_until_eof(sock, 2.5)
            assert closed, f"{kind}: still open after {time.monotonic() - started:.1f} s"
            closed_after.append(time.monotonic() - started)
            replies.append((kind, data))
        finally:
            sock.close()
        if index % 12 == 0:
            during.append(legit.once())
    growth = rss.stop()
    report("garbage handshakes x 100", baseline, during, growth,
           f"closed after {min(closed_after):.3f}..{max(closed_after):.3f} s")
    for kind, data in replies:
        if kind == "plain-http":
            assert data.startswith(b"HTTP/1.1 400 "), data[:40]
            continue
        assert b"HTTP/" not in data
        assert data == b"" or data[0] == 0x15, data[:20]   # nothing, or a TLS alert record
    assert max(closed_after) < 1.0, max(closed_after)
    assert_legit_normal(baseline, during)
    assert_clean_log(server)
    assert growth < 16


def test_tls12_renegotiation_is_refused(h2serve_server):
    """Client-initiated renegotiation (a CPU lever for handshake floods) is
    refused: OP_NO_RENEGOTIATION. Python's ssl cannot renegotiate, so openssl
    s_client -tls1_2 sends its `R` command; the connection then still serves."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot initiate a TLS 1.2 renegotiation")
    server = h2serve_server(APP, threads=2)
    legit = Legit(server, http2=False)
    proc = subprocess.Popen(
        [openssl, "s_client", "-tls1_2", "-connect", f"{server.host}:{server.port}",
         "-servername", "localhost", "-CAfile", server.cafile, "-alpn", "http/1.1",
         "-no_ign_eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        try:
            proc.stdin.write(b"R\n")
            proc.stdin.flush()
            time.sleep(0.8)
            proc.stdin.write(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass   # s_client already gave up: the server refused
        output, _ = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    text = output.decode("latin-1")
    after = text.split("RENEGOTIATING", 1)[-1]
    print(f"\n[tls renegotiation] s_client after R: {after.strip()[:300]!r}")
    assert "RENEGOTIATING" in text, text[-800:]
    assert "no renegotiation" in after.lower(), after
    assert "Hello, world!" not in after
    worker = server.worker_pids()[0]
    assert legit.once() < 1.0
    assert os.path.exists(f"/proc/{worker}")
