"""End to end: the HTTP/2 engine over TLS, seen by real clients and by raw frames.

httpx, curl, nghttp and h2load show that ordinary clients get what they
expect; tests/h2client.py sends exact frame sequences for the edge cases
(windows, resets, trailers, refusals, GOAWAY) and records every frame the
server answers with.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import ssl
import subprocess
import time

import httpx
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from tests.conftest import require_tool
from tests.h2client import (
    CANCEL,
    FLOW_CONTROL_ERROR,
    INADEQUATE_SECURITY,
    INTERNAL_ERROR,
    NO_ERROR,
    REFUSED_STREAM,
    H2Client,
)

INITIAL_WINDOW_SIZE = SettingsFrame.INITIAL_WINDOW_SIZE
PATTERN = bytes(range(256)) * 256          # what tests.apps:big repeats


def big_body(size: int) -> bytes:
    whole, rest = divmod(size, len(PATTERN))
    return PATTERN * whole + PATTERN[:rest]


def h2(server, **kwargs) -> H2Client:
    """A connected raw-frame client."""
    return H2Client(server.host, server.port, tls=server.tls, cafile=server.cafile, **kwargs).connect()


def tls_context(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.cafile)


def data_bytes(client: H2Client, stream_id: int) -> int:
    return sum(len(f.data) for f in client.frames_on(stream_id, DataFrame))


def run(args: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def assert_clean_log(server) -> None:
    assert "Traceback" not in server.log, server.log


# --------------------------------------------------------------------------
# httpx


def test_httpx_parallel_streams_share_one_connection(h2serve_server):
    """Four 0.5 s views on one connection, --threads 4: they run side by side."""
    server = h2serve_server("tests.apps:router", threads=4)

    async def scenario():
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(http2=True, verify=tls_context(server), limits=limits,
                                     timeout=10) as client:
            warm = await client.get(f"{server.url}/hello")
            started = time.perf_counter()
            responses = await asyncio.gather(
                *[client.get(f"{server.url}/sleep?s=0.5") for _ in range(4)])
            elapsed = time.perf_counter() - started
            peers = {r.extensions["network_stream"].get_extra_info("client_addr")
                     for r in [warm, *responses]}
            return warm, responses, elapsed, peers

    warm, responses, elapsed, peers = asyncio.run(scenario())
    print(f"four parallel /sleep?s=0.5 on one connection: {elapsed:.3f} s")
    assert warm.http_version == "HTTP/2"
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in responses)
    assert len(peers) == 1, f"more than one connection used: {peers}"
    assert len({r.extensions["stream_id"] for r in responses}) == 4
    assert all(b"peak 4" in r.content for r in responses), [r.content for r in responses]
    assert 0.5 <= elapsed < 1.2


def test_httpx_20mb_upload_and_download_intact(h2serve_server):
    server = h2serve_server()
    size = 20 * 1000 * 1000
    upload = os.urandom(size)
    with httpx.Client(http2=True, verify=tls_context(server), timeout=60) as client:
        started = time.perf_counter()
        up = client.post(f"{server.url}/digest", content=upload)
        upload_s = time.perf_counter() - started
        started = time.perf_counter()
        down = client.get(f"{server.url}/big?size={size}")
        download_s = time.perf_counter() - started
    print(f"20 MB over HTTP/2: upload {upload_s:.2f} s, download {download_s:.2f} s")
    assert up.http_version == "HTTP/2" and up.status_code == 200
    assert up.json() == {"length": size, "sha256": hashlib.sha256(upload).hexdigest()}
    assert down.http_version == "HTTP/2" and down.status_code == 200
    assert len(down.content) == size
    assert hashlib.sha256(down.content).hexdigest() == hashlib.sha256(big_body(size)).hexdigest()


def test_httpx_big_response_interleaves_with_small_ones(h2serve_server):
    """While a 5 MB body streams on one stream, small responses on the same
    connection finish long before it does."""
    server = h2serve_server()
    size = 5 * 1000 * 1000

    async def scenario():
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(http2=True, verify=tls_context(server), limits=limits,
                                     timeout=20) as client:
            await client.get(f"{server.url}/hello")
            first_chunk = asyncio.Event()
            progress = {"big": 0}
            finished: dict[str, float] = {}
            peers = set()

            async def big():
                async with client.stream("GET", f"{server.url}/big?size={size}") as response:
                    peers.add(response.extensions["network_stream"].get_extra_info("client_addr"))
                    async for chunk in response.aiter_raw():
                        progress["big"] += len(chunk)
                        first_chunk.set()
                        await asyncio.sleep(0.001)   # a reader slower than the server
                finished["big"] = time.perf_counter()

            async def small(index: int):
                await first_chunk.wait()
                response = await client.get(f"{server.url}/hello")
                assert response.status_code == 200 and response.content == b"Hello, world!"
                peers.add(response.extensions["network_stream"].get_extra_info("client_addr"))
                finished[f"small{index}"] = time.perf_counter()
                return progress["big"]

            results = await asyncio.gather(big(), *[small(i) for i in range(5)])
            return results[1:], progress["big"], finished, peers

    big_seen_at_small_end, big_total, finished, peers = asyncio.run(scenario())
    assert big_total == size
    assert len(peers) == 1
    for index, seen in enumerate(big_seen_at_small_end):
        assert finished[f"small{index}"] < finished["big"]
        assert seen < size, "a small response waited for the whole 5 MB body"
    print(f"big-body bytes received when the small responses finished: {big_seen_at_small_end}")


# --------------------------------------------------------------------------
# curl, nghttp, h2load


def test_curl_sees_trailers(h2serve_server):
    curl = require_tool("curl")
    server = h2serve_server()
    result = run([curl, "-sS", "-v", "--http2", "--cacert", server.cafile, f"{server.url}/trailers"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "part one,part two"
    assert "< HTTP/2 200" in result.stderr
    assert re.search(r"^< grpc-status: 0", result.stderr, re.M), result.stderr
    assert re.search(r"^< grpc-message: ok", result.stderr, re.M), result.stderr


def test_curl_early_hints_arrive_before_the_final_response(h2serve_server):
    curl = require_tool("curl")
    server = h2serve_server()
    result = run([curl, "-sS", "-v", "--http2", "--cacert", server.cafile,
                  f"{server.url}/early_hints"])
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "< HTTP/2 103" in err and "< HTTP/2 200" in err, err
    hints_at = err.index("< HTTP/2 103")
    assert hints_at < err.index("< link: </style.css>; rel=preload; as=style") < err.index("< HTTP/2 200")
    assert result.stdout == "with hints"


def test_nghttp_fetches(h2serve_server):
    nghttp = require_tool("nghttp")
    server = h2serve_server()
    result = run([nghttp, "-nv", f"{server.url}/hello", f"{server.url}/trailers"])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert len(re.findall(r"recv \(stream_id=\d+\) :status: 200", out)) == 2, out
    assert re.search(r"recv \(stream_id=\d+\) grpc-status: 0", out), out
    assert "recv GOAWAY" not in out or "error_code=NO_ERROR" in out


def test_h2load_has_no_failed_requests(h2serve_server):
    h2load = require_tool("h2load")
    server = h2serve_server()
    result = run([h2load, "-n", "5000", "-c", "8", "-m", "16", f"{server.url}/hello"], timeout=60)
    out = result.stdout
    line = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored, (\d+) timeout", out, re.M)
    assert line, out + result.stderr
    print(line.group(0), "|", re.search(r"^finished in .*$", out, re.M).group(0))
    total, started, done, succeeded, failed, errored, timed_out = map(int, line.groups())
    assert (total, done, succeeded) == (5000, 5000, 5000)
    assert failed == errored == timed_out == 0
    assert re.search(r"^status codes: 5000 2xx", out, re.M), out
    assert_clean_log(server)


# --------------------------------------------------------------------------
# Raw frames: resets and flow control


def test_client_reset_mid_response_stops_only_that_stream(h2serve_server):
    server = h2serve_server("tests.apps:router", "--log-level", "debug")
    with h2(server, auto_window=False) as client:
        big = client.request("/big?size=5000000")
        client.send_window_update(0, 4_000_000)
        client.send_window_update(big, 1_000_000)
        client.wait_for(lambda f: data_bytes(client, big) >= 300_000, what="300 kB of /big")
        client.send_rst(big, CANCEL)
        hello = client.request("/hello")
        response = client.response(hello)
        assert response.status == 200 and response.body == b"Hello, world!"
        sent = data_bytes(client, big)
        late = [f for f in client.collect(0.3) if f.stream_id == big]
        assert late == [], f"DATA kept coming after RST_STREAM: {client.describe()}"
        # Flow control was honoured: never more than the windows we opened.
        assert sent <= 65535 + 1_000_000
        assert client.stream_response(big).ended is False   # no END_STREAM: it was cut short
        again = client.request("/hello")
        assert client.response(again).status == 200
    server.wait_for_log(r"client went away during GET /big", timeout=5)
    assert_clean_log(server)


def test_zero_window_holds_data_until_window_update(h2serve_server):
    server = h2serve_server()
    with h2(server, settings={INITIAL_WINDOW_SIZE: 0}, auto_window=False) as client:
        stream = client.request("/hello")
        head = client.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == stream,
                               timeout=3, what="the response HEADERS")
        assert ("END_STREAM" not in head.flags) and dict(head.decoded)[":status"] == "200"
        client.collect(0.5)
        assert client.frames_on(stream, DataFrame) == [], client.describe()
        client.send_window_update(stream, 5)
        client.wait_for(lambda f: data_bytes(client, stream) == 5, what="5 bytes")
        client.collect(0.2)
        assert data_bytes(client, stream) == 5 and stream not in client.ended_streams
        client.send_window_update(stream, 100)
        response = client.response(stream)
        assert response.body == b"Hello, world!" and response.reset_code is None


def test_settings_initial_window_change_while_blocked(h2serve_server):
    """RFC 9113 6.9.2: a SETTINGS change moves every open stream's window by the
    difference, which may make it negative."""
    server = h2serve_server()
    size = 50_000
    with h2(server, settings={INITIAL_WINDOW_SIZE: 1000}, auto_window=False) as client:
        stream = client.request(f"/big?size={size}")

        def settle(expected: int) -> None:
            client.wait_for(lambda f: data_bytes(client, stream) >= expected, include_seen=True,
                            what=f"{expected} body bytes")
            client.collect(0.3)
            assert data_bytes(client, stream) == expected, client.describe()

        settle(1000)
        client.send_settings({INITIAL_WINDOW_SIZE: 5000})      # window 1000 -> 4000
        settle(5000)
        client.send_settings({INITIAL_WINDOW_SIZE: 1000})      # window 0 -> -4000
        client.send_window_update(stream, 3000)                # -1000: still closed
        client.collect(0.4)
        assert data_bytes(client, stream) == 5000, client.describe()
        client.send_window_update(stream, 3000)                # 2000
        settle(7000)
        client.send_settings({INITIAL_WINDOW_SIZE: 60_000})    # 2000 + 59000: the rest fits
        response = client.response(stream)
        assert response.status == 200 and response.body == big_body(size)


def test_request_trailers_reach_the_app(h2serve_server):
    server = h2serve_server()
    with h2(server) as client:
        stream = client.new_stream_id()
        client.send_headers(stream, [(":method", "POST"), (":scheme", "https"),
                                     (":authority", server.authority), (":path", "/echo")])
        client.send_data(stream, b"payload with trailers")
        client.send_headers(stream, [("x-checksum", "abc123"), ("x-count", "2")], end_stream=True)
        response = client.response(stream)
    assert response.status == 200 and response.body == b"payload with trailers"
    assert json.loads(response.header("x-request-trailers")) == [["x-checksum", "abc123"],
                                                                  ["x-count", "2"]]


def test_request_body_beyond_the_advertised_window_is_flow_control_error(h2serve_server):
    server = h2serve_server("tests.apps:router", "--http2-initial-window-size", "16384")
    with h2(server) as client:
        window = client.server_settings[INITIAL_WINDOW_SIZE]
        assert window == 16384
        stream = client.request("/sleep?s=1", "POST", end_stream=False)
        client.send_data(stream, b"x" * (window + 1000))    # ignores the window on purpose
        error = client.wait_for(
            lambda f: isinstance(f, GoAwayFrame) or (isinstance(f, RstStreamFrame)
                                                     and f.stream_id == stream),
            what="GOAWAY or RST_STREAM")
        assert error.error_code == FLOW_CONTROL_ERROR, client.describe()


def test_request_body_within_the_window_gets_window_updates(h2serve_server):
    server = h2serve_server()
    body = os.urandom(300_000)
    with h2(server) as client:
        window = client.server_settings.get(INITIAL_WINDOW_SIZE, 65535)
        assert window < len(body)
        stream = client.request("/digest", "POST", end_stream=False)
        client.send_body(stream, body, timeout=10)
        response = client.response(stream)
        updates = [f for f in client.frames if f.stream_id == stream and type(f).__name__ ==
                   "WindowUpdateFrame"]
    assert response.status == 200, client.describe()
    assert json.loads(response.body) == {"length": len(body),
                                         "sha256": hashlib.sha256(body).hexdigest()}
    # the body is 4.6 windows long: it only got through because credit came back
    assert sum(f.window_increment for f in updates) >= len(body) - window, updates


def test_send_window_never_opened_is_cancelled_after_send_timeout(h2serve_server):
    server = h2serve_server("tests.apps:router", "--send-timeout", "1")
    with h2(server, settings={INITIAL_WINDOW_SIZE: 0}, auto_window=False) as client:
        started = time.monotonic()
        stream = client.request("/hello")
        reset = client.wait_for(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == stream,
                                timeout=5, what="RST_STREAM")
        elapsed = time.monotonic() - started
        assert reset.error_code == CANCEL
        assert 0.8 <= elapsed <= 2.5, elapsed
        assert client.frames_on(stream, DataFrame) == []
        # The connection itself is fine.
        client.send_settings({INITIAL_WINDOW_SIZE: 65535})
        client.auto_window = True
        assert client.response(client.request("/hello")).body == b"Hello, world!"


# --------------------------------------------------------------------------
# Application errors and bodiless responses


def test_app_error_before_the_response_is_a_500(h2serve_server):
    server = h2serve_server()
    with h2(server) as client:
        response = client.response(client.request("/fail"))
        assert response.status == 500 and response.body == b"Internal Server Error\n"
        assert client.response(client.request("/hello")).status == 200
    server.wait_for_log("boom before start")


def test_app_error_after_the_response_started_resets_the_stream(h2serve_server):
    server = h2serve_server()
    with h2(server) as client:
        response = client.response(client.request("/fail?after=1"))
        assert response.status == 200 and response.body == b"first"
        assert response.reset_code == INTERNAL_ERROR, client.describe()
        assert client.response(client.request("/hello")).status == 200
    server.wait_for_log("boom after start")


@pytest.mark.parametrize("method, path", [("HEAD", "/hello"), ("GET", "/status?code=204"),
                                          ("GET", "/status?code=304"), ("HEAD", "/big?size=1000")])
def test_bodiless_responses_send_no_data_frames(h2serve_server, method, path):
    server = h2serve_server()
    with h2(server) as client:
        stream = client.request(path, method)
        response = client.response(stream)
        client.collect(0.1)
        assert response.status in (200, 204, 304)
        assert client.frames_on(stream, DataFrame) == [], client.describe()
        (head,) = client.frames_on(stream, HeadersFrame)
        assert "END_STREAM" in head.flags
        if method == "HEAD" and path == "/hello":
            assert response.header("content-length") == "13"


# --------------------------------------------------------------------------
# Limits and refusals


def test_streams_beyond_max_concurrent_are_refused(h2serve_server):
    server = h2serve_server("tests.apps:router", "--http2-max-concurrent-streams", "2")
    with h2(server) as client:
        assert client.server_settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 2
        first = client.request("/sleep?s=0.5")
        second = client.request("/sleep?s=0.5")
        third = client.request("/hello")
        refused = client.response(third, timeout=2)
        assert refused.reset_code == REFUSED_STREAM and refused.status is None
        assert client.response(first).status == 200
        assert client.response(second).status == 200
        assert client.response(client.request("/hello")).status == 200


def two_goaways(client, timeout=3.0):
    """A graceful close (RFC 9113 §6.8): GOAWAY with the largest stream id, then
    GOAWAY with the real last stream id."""
    first = client.wait_for(lambda f: isinstance(f, GoAwayFrame), timeout=timeout, what="GOAWAY")
    final = client.wait_for(lambda f: isinstance(f, GoAwayFrame) and f is not first,
                            timeout=timeout, what="final GOAWAY")
    assert first.error_code == NO_ERROR and first.last_stream_id == 2**31 - 1
    assert final.error_code == NO_ERROR
    return first, final


def test_sigterm_sends_goaway_to_every_connection(h2serve_server):
    server = h2serve_server()
    busy = h2(server)
    served = h2(server)
    idle = h2(server)
    try:
        assert served.response(served.request("/hello")).status == 200
        sleeping = busy.request("/sleep?s=1.5")
        time.sleep(0.3)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        for client in (busy, served, idle):
            first = client.wait_for(lambda f: isinstance(f, GoAwayFrame), timeout=2, what="GOAWAY")
            assert first.error_code == NO_ERROR and first.last_stream_id == 2**31 - 1
        assert time.monotonic() - signalled < 1.0
        for client, last in ((busy, sleeping), (served, 1), (idle, 0)):
            final = client.wait_for(
                lambda f: isinstance(f, GoAwayFrame) and f.last_stream_id != 2**31 - 1,
                timeout=3, what="final GOAWAY")
            assert final.error_code == NO_ERROR and final.last_stream_id == last
        assert sleeping not in busy.ended_streams, "GOAWAY came only after the in-flight stream"
        # A stream opened after the final GOAWAY is not served; the in-flight one is.
        late = busy.request("/hello")
        assert busy.response(late, timeout=3).reset_code == REFUSED_STREAM
        response = busy.response(sleeping, timeout=5)
        assert response.status == 200 and response.body.startswith(b"slept 1.5")
        for client in (busy, served, idle):
            assert client.read_until_closed(5), client.describe()
    finally:
        for client in (busy, served, idle):
            client.close()
    assert server.proc.wait(10) == 0
    assert_clean_log(server)


def test_slow_reader_gets_its_whole_response_across_shutdown(h2serve_server):
    """Frames still queued for a peer that reads slowly are written before the
    connection closes: closing used to drop whatever the socket had not taken."""
    server = h2serve_server("tests.apps:router", "--graceful-timeout", "20")
    size = 40_000_000   # several times what loopback's socket buffers hold
    with h2(server, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1},
            auto_window=False) as client:
        client.send_window_update(0, 2**31 - 1 - 65535)
        stream = client.request(f"/big?size={size}")
        time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        received, ended = 0, False
        while not ended:
            frame = client.read_frame(timeout=10)
            assert frame is not None, "the response stalled"
            if isinstance(frame, DataFrame) and frame.stream_id == stream:
                received += len(frame.data)
                ended = "END_STREAM" in frame.flags
                time.sleep(0.001)  # at most 16 MB/s: the body outlives the final GOAWAY
            assert not (isinstance(frame, RstStreamFrame) and frame.stream_id == stream)
        assert received == size
        assert client.read_until_closed(5)
    assert server.proc.wait(10) == 0


def test_idle_connection_gets_goaway_after_keepalive(h2serve_server):
    server = h2serve_server("tests.apps:router", "--keep-alive", "1")
    with h2(server) as client:
        assert client.response(client.request("/hello")).status == 200
        done = time.monotonic()
        first, final = two_goaways(client, timeout=4)
        waited = time.monotonic() - done
        assert final.last_stream_id == 1
        assert 0.8 <= waited <= 4.0, waited
        assert client.read_until_closed(4)


# --------------------------------------------------------------------------
# Headers


def test_request_headers_map_to_the_environ(h2serve_server):
    server = h2serve_server()
    with h2(server) as client:
        stream = client.request(
            "/environ", authority="example.test:8443", scheme="http",
            headers=[("cookie", "a=1"), ("x-plain", "ok"), ("cookie", "b=2"), ("x_under", "evil"),
                     ("cookie", "c=3")])
        response = client.response(stream)
    assert response.status == 200
    environ = json.loads(response.body)
    assert environ["HTTP_HOST"] == "example.test:8443"
    assert environ["SERVER_NAME"] == "example.test"
    assert environ["HTTP_COOKIE"] == "a=1; b=2; c=3"
    assert environ["HTTP_X_PLAIN"] == "ok"
    assert not [key for key in environ if "UNDER" in key], environ
    assert environ["wsgi.url_scheme"] == "https"       # :scheme http does not downgrade TLS
    assert environ["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert environ["h2serve.stream_id"] == stream
    assert environ["h2serve.alpn"] == "h2"


def test_too_many_request_fields_get_431(h2serve_server):
    server = h2serve_server("tests.apps:router", "--limit-request-fields", "10")
    with h2(server) as client:
        many = client.request("/hello", headers=[(f"x-field-{i}", "v") for i in range(20)])
        assert client.response(many).status == 431
        enough = client.request("/hello", headers=[(f"x-field-{i}", "v") for i in range(10)])
        assert client.response(enough).status == 200


def test_connection_specific_response_headers_are_dropped(h2serve_server):
    server = h2serve_server()
    with h2(server) as client:
        stream = client.request("/hop_headers")
        response = client.response(stream)
        (head,) = client.frames_on(stream, HeadersFrame)
        names = {name for name, _ in head.decoded}
        assert response.status == 200 and response.body == b"ok" and response.reset_code is None
        assert response.header("x-kept") == "yes"
        assert not names & {"connection", "keep-alive", "transfer-encoding", "upgrade",
                            "proxy-connection"}, head.decoded
        assert client.response(client.request("/hello")).status == 200   # connection unharmed


# --------------------------------------------------------------------------
# Priority


def test_priority_header_and_priority_update_frame(h2serve_server):
    server = h2serve_server()
    with h2(server) as client:
        by_header = client.request("/environ", headers=[("priority", "u=1, i")])
        priority = json.loads(client.response(by_header).body)["h2serve.priority"]
        assert priority["urgency"] == 1 and priority["incremental"] is True

        # PRIORITY_UPDATE for a stream not opened yet applies when it opens.
        client.send_priority_update(3, "u=5")
        ahead = client.request("/environ", headers=[("priority", "u=2")])
        assert ahead == 3
        priority = json.loads(client.response(ahead).body)["h2serve.priority"]
        assert priority["urgency"] == 5 and priority["incremental"] is False

        # ... and to an open stream, visible to the app afterwards.
        during = client.request("/priority_after_body", "POST", end_stream=False,
                                headers=[("priority", "u=4")])
        client.send_priority_update(during, "u=0, i")
        client.send_data(during, b"body", end_stream=True)
        priority = json.loads(client.response(during).body)
        assert priority["urgency"] == 0 and priority["incremental"] is True


def test_rfc7540_priority_flag_on_headers(h2serve_server):
    server = h2serve_server()
    with h2(server) as client:
        first = client.request("/hello")
        client.response(first)
        stream = client.request("/environ", priority=(first, 32, False))
        priority = json.loads(client.response(stream).body)["h2serve.priority"]
    assert priority["weight"] == 32 and priority["depends_on"] == first
    assert priority["urgency"] == 3          # RFC 9218 default when no Priority header


# --------------------------------------------------------------------------
# Protocol selection and TLS requirements


def test_h2_only_server_refuses_http11_cleanly(h2serve_server):
    curl = require_tool("curl")
    server = h2serve_server("tests.apps:router", "--http-protocols", "h2")
    old = run([curl, "-sS", "--http1.1", "--cacert", server.cafile, "-w", "\n%{http_code}",
               f"{server.url}/hello"])
    assert old.returncode == 0, old.stderr          # read a response: no reset, no TLS failure
    body, _, code = old.stdout.rpartition("\n")
    assert code == "505" and "HTTP/2 only" in body
    new = run([curl, "-sS", "--http2", "--cacert", server.cafile, "-w", "\n%{http_version}",
               f"{server.url}/hello"])
    assert new.returncode == 0 and new.stdout == "Hello, world!\n2", new.stdout + new.stderr


@pytest.fixture(scope="module")
def rsa_cert(tmp_path_factory):
    """A self-signed RSA certificate for 127.0.0.1: AES128-SHA needs RSA key exchange,
    which the (ECDSA) development certificate cannot do."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("rsa")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def _tls12_blocklisted_client(cafile: str) -> ssl.SSLContext:
    """TLS 1.2 at most, AES128-SHA only (RSA key exchange, CBC: RFC 9113 Appendix A), ALPN h2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.set_ciphers("AES128-SHA")
    except ssl.SSLError:
        pytest.skip("the local OpenSSL security level refuses AES128-SHA")
    context.set_alpn_protocols(["h2"])
    return context


def test_blocklisted_cipher_is_refused_at_handshake_by_default(h2serve_server, rsa_cert):
    cert, key = rsa_cert
    server = h2serve_server("tests.apps:router", "--certfile", cert, "--keyfile", key)
    client = H2Client(server.host, server.port, ssl_context=_tls12_blocklisted_client(cert))
    with pytest.raises(ssl.SSLError):
        client.connect()
    client.close()
    # a normal client on the same server is fine
    with H2Client(server.host, server.port, cafile=cert).connect() as ok:
        assert ok.response(ok.request("/hello")).status == 200


def test_blocklisted_cipher_gets_goaway_inadequate_security(h2serve_server, rsa_cert):
    cert, key = rsa_cert
    server = h2serve_server("tests.apps:router", "--certfile", cert, "--keyfile", key,
                            "--ciphers", "ECDHE+AESGCM:AES128-SHA")
    client = H2Client(server.host, server.port, ssl_context=_tls12_blocklisted_client(cert))
    try:
        try:
            client.connect(wait_settings=False)
        except ssl.SSLError as exc:
            pytest.skip(f"this OpenSSL will not negotiate AES128-SHA at all: {exc}")
        assert client.sock.cipher()[0] == "AES128-SHA" and client.alpn == "h2"
        goaway = client.wait_for(lambda f: isinstance(f, GoAwayFrame), what="GOAWAY")
        assert goaway.error_code == INADEQUATE_SECURITY
        assert client.read_until_closed(5)
        assert not [f for f in client.frames if isinstance(f, HeadersFrame)]
    finally:
        client.close()
