"""Metrics and stuck-request reports, end to end: a real server, real clients,
a real UDP socket for StatsD, a real scrape of --metrics-bind parsed by
prometheus_client's own parser, real stacks in the real error log."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import httpx
import pytest
from hyperframe.frame import RstStreamFrame
from prometheus_client.parser import text_string_to_metric_families

from h2serve import metrics
from h2serve.statsd import StatsdClient, normalize_prefix, parse_address
from h2serve.stuck import escape
from tests.conftest import require_tool
from tests.h2client import CANCEL, REFUSED_STREAM, H2Client

APP = "tests.metrics_apps:app"


def _verify(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.cafile)


# --- units --------------------------------------------------------------------------


def test_statsd_addresses_as_gunicorn_reads_them():
    assert parse_address("localhost:9125") == (socket.AF_INET, ("localhost", 9125))
    assert parse_address("10.0.0.1") == (socket.AF_INET, ("10.0.0.1", 8125))
    assert parse_address("[::1]:9000") == (socket.AF_INET6, ("::1", 9000))
    assert parse_address("unix:/run/statsd.sock") == (socket.AF_UNIX, "/run/statsd.sock")
    assert parse_address("unix:///run/statsd.sock") == (socket.AF_UNIX, "/run/statsd.sock")
    assert parse_address("unix:8125") == (socket.AF_INET, ("unix", 8125))  # gunicorn's reading
    for bad in ("host:port", "host:70000", "unix:", ""):
        with pytest.raises(ValueError):
            parse_address(bad)
    assert [normalize_prefix(p) for p in ("", "app", "app.", "app...")] == ["", "app.", "app.", "app."]


def test_statsd_over_a_unix_socket_and_drops_when_nobody_listens(tmp_path):
    path = str(tmp_path / "statsd.sock")
    client = StatsdClient(f"unix:{path}", "app.", "")
    client.request(201, 1.5)                      # nobody listens yet: dropped, no error
    assert client.dropped == 1
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(2)
    try:
        client.request(201, 1.5)
        assert receiver.recv(65535).decode().split("\n") == [
            "app.gunicorn.request.duration:1.5|ms", "app.gunicorn.requests:1|c|@1.0",
            "app.gunicorn.request.status.201:1|c|@1.0"]
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        started = time.monotonic()
        for _ in range(2000):                     # a full receive buffer never blocks the sender
            client.counter("gunicorn.http2.resets.received")
        assert time.monotonic() - started < 2 and client.dropped > 1
    finally:
        receiver.close()
        client.close()


def test_a_dead_workers_counts_are_kept_and_its_gauges_dropped():
    table = metrics.MetricsTable(slots=2)
    first, second = table.take_slot(), table.take_slot()
    for slot, status in ((first, 200), (second, 503)):
        recorder = metrics.Recorder(table.numbers(slot), None)
        recorder.request("HTTP/2", status, 0.02)
        recorder.count(metrics.H2_RESETS_RECEIVED)
        recorder.gauges((5, 4, 3, 2, 1, 0))
    table.release_slot(first)                     # reaped: folded, cleared, reusable
    assert table.take_slot() == first and not any(table.numbers(first))
    snapshot = table.snapshot([second])
    assert snapshot.counter(metrics.REQUESTS) == 2
    assert snapshot.counter(metrics.H2_RESETS_RECEIVED) == 2
    assert snapshot.statuses() == [(200, 1), (503, 1)]
    assert snapshot.gauge(metrics.G_CONNECTIONS) == 5   # the live worker's only
    counts, total = snapshot.histogram(1, 1)      # h2, 2xx
    assert sum(counts) == 1 and counts[metrics.BUCKETS.index(0.025)] == 1 and total == pytest.approx(0.02)


# --- StatsD ---------------------------------------------------------------------------


class StatsdCollector:
    """A UDP socket on loopback that keeps every line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                datagram = self.sock.recv(65535)
            except OSError:
                continue
            self.lines.extend(datagram.decode().split("\n"))

    def wait_for(self, wanted: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.lines:
            assert time.monotonic() < deadline, f"no {wanted!r} among {self.lines}"
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_statsd_lines_have_gunicorns_names_types_prefix_and_tags(h2serve_server):
    collector = StatsdCollector()
    try:
        server = h2serve_server(APP, "--statsd-host", collector.address, "--statsd-prefix", "web",
                                "--dogstatsd-tags", "env:test,app:h2", "--http2-max-concurrent-streams", "2",
                                workers=1, threads=4)
        with httpx.Client(http2=True, verify=_verify(server), timeout=10) as client:
            assert client.get(f"{server.url}/hello").status_code == 200
            assert client.get(f"{server.url}/status?code=404").status_code == 404
        tags = "|#env:test,app:h2"
        collector.wait_for(f"web.gunicorn.requests:1|c|@1.0{tags}")
        collector.wait_for(f"web.gunicorn.request.status.200:1|c|@1.0{tags}")
        collector.wait_for(f"web.gunicorn.request.status.404:1|c|@1.0{tags}")
        timers = [line for line in collector.lines if line.startswith("web.gunicorn.request.duration:")]
        assert timers and all(re.fullmatch(r"web\.gunicorn\.request\.duration:\d+(\.\d+)?\|ms"
                                           + re.escape(tags), line) for line in timers)
        collector.wait_for(f"web.gunicorn.workers:1|g{tags}")   # from the arbiter, once a second

        # HTTP/2 events: a stream the client resets, one refused over the limit of 2,
        # a response held by a small window, and the GOAWAY of a graceful stop.
        with H2Client(server.host, server.port, cafile=server.cafile,
                      settings={4: 100}) as raw:   # SETTINGS_INITIAL_WINDOW_SIZE 100
            napping = raw.request("/nap?s=1")
            reset_me = raw.request("/nap?s=1")
            raw.send_rst(reset_me, CANCEL)
            time.sleep(0.2)
            also_napping = raw.request("/nap?s=1")
            refused = raw.request("/hello")          # a third open stream: over the limit
            raw.wait_for(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == refused
                         and f.error_code == REFUSED_STREAM, what="REFUSED_STREAM")
            raw.response(napping, timeout=5)
            raw.response(also_napping, timeout=5)
            raw.response(napping, timeout=5)
            small_window = raw.request("/big?size=1000")
            assert len(raw.response(small_window, timeout=5).body) == 1000
            server.send_signal(signal.SIGTERM)
            collector.wait_for(f"web.gunicorn.http2.goaways.sent:1|c|@1.0{tags}")
        collector.wait_for(f"web.gunicorn.http2.resets.received:1|c|@1.0{tags}")
        collector.wait_for(f"web.gunicorn.http2.streams.refused:1|c|@1.0{tags}")
        collector.wait_for(f"web.gunicorn.http2.resets.sent:1|c|@1.0{tags}")
        collector.wait_for(f"web.gunicorn.http2.flow_control.stalls:1|c|@1.0{tags}")
        gauges = {line.split(":")[0] for line in collector.lines if line.endswith(f"|g{tags}")}
        assert {f"web.{name}" for name, _ in metrics.GAUGES} <= gauges
        server.stop()
    finally:
        collector.close()


# --- Prometheus -----------------------------------------------------------------------


def _scrape(address: str) -> dict:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict, family: str, sample: str, **labels: str) -> float:
    for found in families[family].samples:
        if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
            return found.value
    return 0.0


def test_prometheus_scrape_sums_all_workers_and_keeps_recycled_workers_counts(h2serve_server):
    server = h2serve_server(APP, "--metrics-bind", "127.0.0.1:0", "--max-requests", "4",
                            workers=2, threads=2)
    address = server.wait_for_log(r"Metrics at: http://(\S+)/metrics")[0].group(1)
    curl = require_tool("curl")
    pids, made = set(), {"h1": 0, "h2": 0}

    def get(path: str, protocol: str) -> tuple[str, str]:
        # curl, not httpx: httpx gives up on a GOAWAY that still admits its stream,
        # which a worker retiring at --max-requests sends.
        done = subprocess.run([curl, "-sS", "--cacert", server.cafile, "--max-time", "10",
                               "--http2" if protocol == "h2" else "--http1.1",
                               "-w", "\n%{http_version} %{http_code}", f"{server.url}{path}"],
                              capture_output=True, text=True, timeout=15)
        body, _, outcome = done.stdout.rpartition("\n")
        return body, outcome

    for number in range(10):                  # a new connection each: both workers serve
        protocol = "h2" if number % 2 else "h1"
        body, outcome = get("/sleep?s=0", protocol)
        assert outcome == ("2 200" if protocol == "h2" else "1.1 200"), (outcome, body)
        pids.add(body.split(" pid ")[1].split()[0])
        made[protocol] += 1
    assert get("/no-such-route", "h2")[1] == "2 404"
    # 11 requests at most 4 per worker: at least one worker was recycled on the way.
    assert len(pids) >= 3, pids
    server.wait_for_log(r"Worker exiting \(pid: \d+\)|Worker \(pid:\d+\) exited|Worker exiting", timeout=15)
    deadline = time.monotonic() + 10
    while True:
        families = _scrape(address)
        if _value(families, "gunicorn_requests", "gunicorn_requests_total") == 11 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert _value(families, "gunicorn_requests", "gunicorn_requests_total") == 11
    assert _value(families, "gunicorn_request_status", "gunicorn_request_status_total", status="200") == 10
    assert _value(families, "gunicorn_request_status", "gunicorn_request_status_total", status="404") == 1
    histogram = "gunicorn_request_duration_seconds"
    assert families[histogram].type == "histogram"
    for protocol, count in made.items():
        assert _value(families, histogram, f"{histogram}_count", protocol=protocol, status_class="2xx") == count
        assert _value(families, histogram, f"{histogram}_bucket", protocol=protocol, status_class="2xx",
                      le="+Inf") == count
    assert _value(families, histogram, f"{histogram}_count", protocol="h2", status_class="4xx") == 1
    assert _value(families, "gunicorn_workers", "gunicorn_workers") >= 2
    for name, _ in metrics.COUNTERS + metrics.GAUGES:
        assert name.replace(".", "_") in families, name
    with pytest.raises(urllib.error.HTTPError) as not_found:
        urllib.request.urlopen(f"http://{address}/other", timeout=5)
    assert not_found.value.code == 404


def test_request_lines_are_escaped_in_reports():
    assert escape('GET /a"b\x01\\ HTTP/2\r\n\u00e9') == 'GET /a\\"b\\x01\\\\ HTTP/2\\r\\n\\xe9'


# --- stuck requests ----------------------------------------------------------------------


def _in_background(fn) -> threading.Thread:
    def run() -> None:
        try:
            fn()
        except httpx.HTTPError:
            pass   # the server cut the request off: that is what the test is about
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_stuck_request_is_logged_once_with_its_stack(h2serve_server):
    server = h2serve_server(APP, "--stuck-request-timeout", "0.5", workers=1, threads=1)
    with httpx.Client(http2=True, verify=_verify(server), timeout=10) as client:
        assert client.get(f"{server.url}/nap?s=1.6").text == "woke up"
    report = server.wait_for_log(r"\[WARNING\] Stuck request: \"GET /nap\?s=1\.6 HTTP/2(\.0)?\" from 127\.0\.0\.1 "
                                 r"has run 0\.\d s \(stuck_request_timeout 0\.5 s\) on thread h2serve-pool-\d")
    assert len(report) == 1    # once, though it stayed stuck for another second
    stack = server.log.split("Stuck request:", 1)[1]
    assert 'metrics_apps.py", line' in stack and "in stuck_view_sleeping_here" in stack
    assert "time.sleep(seconds)" in stack
    # One frame per line, as in a traceback (newlines in the stack were once escaped to \x0a).
    assert "\\x0a" not in stack and "\n    time.sleep(seconds)\n" in stack
    server.wait_for_log(r"\[ERROR\] All 1 pool threads of worker are running stuck requests")
    server.wait_for_log(r"A pool thread is free again")


def test_worker_timeout_names_the_requests_in_flight_and_dumps_stacks(h2serve_server):
    server = h2serve_server(APP, "--timeout", "2", "--stuck-request-timeout", "30", workers=1, threads=2)
    pid = server.worker_pids()[0]
    with httpx.Client(http2=True, verify=_verify(server), timeout=15) as client:
        _in_background(lambda: client.get(f"{server.url}/hold?s=20"))
        server.wait_for_log(rf"WORKER TIMEOUT \(pid:{pid}\)", timeout=15)
        named = server.wait_for_log(
            rf"\[ERROR\] Timed-out worker \(pid:{pid}\) was running, \d+\.\d s ago: "
            r"\"GET /hold\?s=20 HTTP/2(\.0)?\" from 127\.0\.0\.1, running \d+\.\d s on h2serve-pool-\d")
        assert len(named) == 1
        # SIGUSR2 before SIGKILL: faulthandler wrote every thread's stack, the
        # one holding the interpreter lock included.
        server.wait_for_log(r'File ".*metrics_apps\.py", line \d+ in hold_the_interpreter')
        server.wait_for_log(r"Booting worker with pid", count=2, timeout=15)   # replaced


def test_graceful_timeout_names_the_requests_it_cuts_off(h2serve_server):
    server = h2serve_server(APP, "--graceful-timeout", "1", "--stuck-request-timeout", "0.2",
                            workers=1, threads=2)
    with H2Client(server.host, server.port, cafile=server.cafile) as raw:   # stays after GOAWAY
        raw.request("/nap?s=6")
        server.wait_for_log(r"Stuck request: \"GET /nap\?s=6")
        server.send_signal(signal.SIGTERM)
        cut = server.wait_for_log(r"\[WARNING\] graceful_timeout \(1 s\) cut off a request: "
                                  r"\"GET /nap\?s=6 HTTP/2(\.0)?\" from 127\.0\.0\.1, "
                                  r"running (\d\.\d) s on h2serve-pool-\d")
        assert float(cut[0].group(2)) >= 1.0
        assert server.proc.wait(10) == 0
