"""End to end over HTTP/1.1 and TLS: the real `h2serve` command, real clients.

Raw TLS sockets send the bytes a library would never send (smuggling shapes,
oversized heads, Expect: 100-continue timing); httpx and curl show that
ordinary clients get keep-alive, chunked bodies, early hints and trailers.
Everything runs on 127.0.0.1 with short timeouts.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.conftest import require_tool

IO_TIMEOUT = 5.0


# --------------------------------------------------------------------------- a raw client


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)
    chunked: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class ServerClosed(Exception):
    """The server closed the connection before a complete response."""


class RawTLS:
    """One TLS connection speaking HTTP/1.1 by hand, with a read buffer."""

    def __init__(self, server, timeout: float = IO_TIMEOUT) -> None:
        context = ssl.create_default_context(cafile=server.cafile)
        context.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection((server.host, server.port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "http/1.1"
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        if not data:
            raise ServerClosed(f"EOF with {self.buffer[:200]!r} buffered")
        self.buffer += data

    def _take_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_head(self) -> tuple[int, str, list[tuple[str, str]]]:
        lines = self._take_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return int(status), reason, headers

    def read_response(self, method: str = "GET") -> Response:
        """The next final response (1xx responses before it are kept in .interim)."""
        interim = []
        while True:
            status, reason, headers = self.read_head()
            if status >= 200:
                break
            interim.append((status, headers))
        response = Response(status, reason, headers, interim=interim)
        if method == "HEAD" or status in (204, 304):
            return response
        encoding = response.header("transfer-encoding")
        if encoding is not None:
            assert encoding.lower() == "chunked", encoding
            response.chunked = True
            parts = []
            while True:
                size = int(self._take_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    break
                parts.append(self._take(size))
                assert self._take(2) == b"\r\n"
            response.body = b"".join(parts)
            while True:
                line = self._take_until(b"\r\n").decode("latin-1")
                if not line:
                    break
                name, _, value = line.partition(":")
                response.trailers.append((name.strip().lower(), value.strip()))
            return response
        length = response.header("content-length")
        if length is not None:
            response.body = self._take(int(length))
            return response
        response.body = self.read_to_eof()  # delimited by close
        return response

    def read_to_eof(self, timeout: float = IO_TIMEOUT) -> bytes:
        """Everything until the server closes; a reset raises ConnectionResetError."""
        self.sock.settimeout(timeout)
        data, self.buffer = self.buffer, b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                return data
            if not chunk:
                return data
            data += chunk

    def assert_closed(self) -> None:
        """The server closed cleanly: EOF with nothing more, and no reset."""
        rest = self.read_to_eof()
        assert rest == b"", f"unexpected bytes after the response: {rest[:200]!r}"


def http1_client(server) -> httpx.Client:
    context = ssl.create_default_context(cafile=server.cafile)
    return httpx.Client(verify=context, http2=False, timeout=IO_TIMEOUT)


def request(path: str, method: str = "GET", headers: str = "", body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"
    return head.encode("latin-1") + body


def environ_of(response: Response) -> dict:
    assert response.status == 200, response
    return json.loads(response.body)


# --------------------------------------------------------------------------- keep-alive


def test_keep_alive_one_connection_serves_several_requests(h2serve_server):
    server = h2serve_server()
    client = RawTLS(server)
    try:
        ports = set()
        for _ in range(3):
            client.send(request("/environ"))
            response = client.read_response()
            assert response.header("connection") is None  # nothing says close
            environ = environ_of(response)
            assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
            assert environ["wsgi.url_scheme"] == "https"
            ports.add(environ["REMOTE_PORT"])
        # Pipelined: two requests in one write, two responses in order.
        client.send(request("/hello") + request("/status?code=201"))
        first, second = client.read_response(), client.read_response()
        assert (first.status, first.body) == (200, b"Hello, world!")
        assert second.status == 201
        assert len(ports) == 1, ports
        client.send(request("/hello", headers="Connection: close\r\n"))
        last = client.read_response()
        assert last.status == 200 and last.header("connection") == "close"
        client.assert_closed()
    finally:
        client.close()


def test_httpx_http1_reuses_its_connection(h2serve_server):
    server = h2serve_server()
    with http1_client(server) as client:
        responses = [client.get(f"{server.url}/environ") for _ in range(5)]
    assert all(r.http_version == "HTTP/1.1" and r.status_code == 200 for r in responses)
    assert len({r.json()["REMOTE_PORT"] for r in responses}) == 1


def test_curl_http1_reuses_its_connection(h2serve_server):
    curl = require_tool("curl")
    server = h2serve_server()
    result = subprocess.run(
        [curl, "-sS", "-v", "--http1.1", "--cacert", server.cafile,
         f"{server.url}/hello", f"{server.url}/hello"],
        capture_output=True, text=True, timeout=15)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, world!" * 2
    assert "Re-using existing connection" in result.stderr
    assert result.stderr.count("< HTTP/1.1 200") == 2


# --------------------------------------------------------------------------- chunked both ways


def test_chunked_request_with_trailers_and_chunked_response_raw(h2serve_server):
    server = h2serve_server()
    client = RawTLS(server)
    try:
        client.send(request("/echo?chunked=1", "POST",
                            "Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n"))
        pieces = [b"first piece,", b"x" * 20000, b",last"]
        for piece in pieces:  # each chunk in its own write, a little apart
            client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.02)
        client.send(b"0\r\nX-Checksum: abc123\r\n\r\n")
        response = client.read_response()
        assert response.status == 200
        assert response.chunked, response.headers  # the app streamed: chunked back
        assert response.header("content-length") is None
        assert response.body == b"".join(pieces)
        assert json.loads(response.header("x-request-trailers")) == [["x-checksum", "abc123"]]
        # The connection is still good for the next request.
        client.send(request("/hello"))
        assert client.read_response().body == b"Hello, world!"
    finally:
        client.close()


def test_httpx_http1_chunked_upload_and_chunked_download(h2serve_server):
    server = h2serve_server()
    payload = [b"a" * 1000, b"b" * 70000, b"c"]

    def upload():
        yield from payload

    with http1_client(server) as client:
        response = client.post(f"{server.url}/echo?chunked=1", content=upload())
        assert response.status_code == 200 and response.http_version == "HTTP/1.1"
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.content == b"".join(payload)
        assert response.headers["x-body-length"] == str(sum(map(len, payload)))

        with client.stream("GET", f"{server.url}/stream?n=4&delay=0.01") as streamed:
            assert streamed.headers["transfer-encoding"] == "chunked"
            text = b"".join(streamed.iter_bytes())
    assert text == b"".join(b"data: %d\n\n" % i for i in range(4))


def test_curl_http1_chunked_upload_and_chunked_download(h2serve_server, tmp_path):
    curl = require_tool("curl")
    server = h2serve_server()
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * 400)
    headers, body = tmp_path / "headers.txt", tmp_path / "body.bin"
    result = subprocess.run(
        [curl, "-sS", "-v", "--http1.1", "--cacert", server.cafile,
         "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{upload}",
         "-D", str(headers), "-o", str(body), f"{server.url}/echo?chunked=1"],
        capture_output=True, text=True, timeout=15)
    assert result.returncode == 0, result.stderr
    assert "> Transfer-Encoding: chunked" in result.stderr  # curl really sent chunks
    head = headers.read_text().lower()
    assert head.startswith("http/1.1 200")
    assert "transfer-encoding: chunked" in head and "content-length" not in head
    assert body.read_bytes() == upload.read_bytes()


# --------------------------------------------------------------------------- Expect: 100-continue


def test_100_continue_is_sent_only_when_the_app_reads(h2serve_server):
    server = h2serve_server()
    client = RawTLS(server)
    try:
        sent_at = time.monotonic()
        client.send(request("/read_later?delay=0.5", "POST",
                            "Content-Length: 5\r\nExpect: 100-continue\r\n"))
        client.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            client._fill()  # nothing while the app sleeps before reading
        client.sock.settimeout(IO_TIMEOUT)
        status, _, _ = client.read_head()
        waited = time.monotonic() - sent_at
        assert status == 100
        assert 0.45 <= waited < 3.0, waited
        client.send(b"hello")
        response = client.read_response()
        assert (response.status, response.body) == (200, b"read 5")
    finally:
        client.close()


def test_no_100_continue_when_the_app_never_reads(h2serve_server):
    server = h2serve_server()
    client = RawTLS(server)
    try:
        client.send(request("/hello", "POST", "Content-Length: 5\r\nExpect: 100-continue\r\n"))
        response = client.read_response()
        assert response.interim == []  # straight to the final answer
        assert (response.status, response.body) == (200, b"Hello, world!")
    finally:
        client.close()


# --------------------------------------------------------------------------- bodiless answers


def test_head_has_headers_but_no_body(h2serve_server):
    server = h2serve_server()
    client = RawTLS(server)
    try:
        client.send(request("/hello", "HEAD"))
        response = client.read_response("HEAD")
        assert response.status == 200 and response.header("content-length") == "13"
        client.send(request("/stream?n=3&delay=0", "HEAD"))  # a streaming app
        streamed = client.read_response("HEAD")
        assert streamed.status == 200
        # Had any body byte been sent, it would be read as the next status line.
        client.send(request("/hello"))
        assert client.read_response().body == b"Hello, world!"
    finally:
        client.close()


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_carry_no_body(h2serve_server, code):
    server = h2serve_server()
    client = RawTLS(server)
    try:
        client.send(request(f"/status?code={code}"))
        response = client.read_response()
        assert response.status == code
        assert response.header("transfer-encoding") is None
        if code == 204:
            assert response.header("content-length") is None
        client.send(request("/hello"))
        follow = client.read_response()
        assert (follow.status, follow.body) == (200, b"Hello, world!")
    finally:
        client.close()


# --------------------------------------------------------------------------- limits and bad input


def _rejected(server, data: bytes) -> Response:
    """Send data; expect one error response with Connection: close, then EOF."""
    client = RawTLS(server)
    try:
        client.send(data)
        response = client.read_response()
        assert response.header("connection") == "close", response.headers
        rest = client.read_to_eof()
        assert b"HTTP/1.1" not in rest, f"a second response was sent: {rest[:300]!r}"
        assert b"Hello, world!" not in response.body + rest
        return response
    finally:
        client.close()


LIMIT_CASES = {
    "request-line-too-long": (request("/" + "a" * 5000), 414),
    "field-too-large": (request("/hello", headers="X-Big: " + "b" * 9000 + "\r\n"), 431),
    "too-many-fields": (request("/hello", headers="".join(f"X-F{i}: v\r\n" for i in range(120))), 431),
    "garbage-request-line": (b"HELLO THERE\r\n\r\n", 400),
    "missing-host": (b"GET /hello HTTP/1.1\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", list(LIMIT_CASES))
def test_limits_and_bad_requests_answered_then_closed(h2serve_server, case):
    data, status = LIMIT_CASES[case]
    response = _rejected(h2serve_server(), data)
    assert response.status == status, (case, response)


SMUGGLED = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
SMUGGLING_CASES = {
    "content-length-with-transfer-encoding":
        request("/echo", "POST", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    "transfer-encoding-with-content-length":
        request("/echo", "POST", "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n", b"0\r\n\r\n"),
    "duplicate-content-length-differing":
        request("/echo", "POST", "Content-Length: 5\r\nContent-Length: 6\r\n", b"hello"),
    "duplicate-content-length-same": request("/echo", "POST", "Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
    "content-length-list": request("/echo", "POST", "Content-Length: 5, 5\r\n", b"hello"),
    "content-length-plus": request("/echo", "POST", "Content-Length: +5\r\n", b"hello"),
    "content-length-negative": request("/echo", "POST", "Content-Length: -5\r\n", b"hello"),
    "content-length-hex": request("/echo", "POST", "Content-Length: 0x5\r\n", b"hello"),
    "content-length-letters": request("/echo", "POST", "Content-Length: 5a\r\n", b"hello"),
    "double-transfer-encoding":
        request("/echo", "POST", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    "chunked-twice": request("/echo", "POST", "Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
    "space-before-colon": request("/echo", "POST", "Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
    "chunk-size-not-hex": request("/echo", "POST", "Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-0x": request("/echo", "POST", "Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-negative": request("/echo", "POST", "Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-overflow":
        request("/echo", "POST", "Transfer-Encoding: chunked\r\n", b"1" + b"0" * 40 + b"\r\nhello\r\n"),
    "chunk-size-space-inside": request("/echo", "POST", "Transfer-Encoding: chunked\r\n", b"5 5\r\nhello\r\n0\r\n\r\n"),
    "chunk-data-longer-than-size":
        request("/echo", "POST", "Transfer-Encoding: chunked\r\n", b"3\r\nhello\r\n0\r\n\r\n"),
    "chunk-bare-lf": request("/echo", "POST", "Transfer-Encoding: chunked\r\n", b"5\nhello\n0\n\n"),
    "obs-fold": request("/hello", headers="X-Folded: a\r\n  continued\r\n"),
    "bare-lf-in-head": b"GET /hello HTTP/1.1\nHost: localhost\n\n",
}


@pytest.mark.parametrize("case", list(SMUGGLING_CASES))
def test_smuggling_shapes_get_400_and_close(h2serve_server, case):
    response = _rejected(h2serve_server(), SMUGGLING_CASES[case] + SMUGGLED)
    assert response.status == 400, (case, response)


# --------------------------------------------------------------------------- extensions


def test_early_hints_103_before_200_with_curl(h2serve_server):
    curl = require_tool("curl")
    server = h2serve_server()
    result = subprocess.run(
        [curl, "-sS", "-v", "--http1.1", "--cacert", server.cafile, f"{server.url}/early_hints"],
        capture_output=True, text=True, timeout=15)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "with hints"
    lines = result.stderr.splitlines()
    hint = lines.index("< HTTP/1.1 103 Early Hints")
    final = lines.index("< HTTP/1.1 200 OK")
    assert hint < final
    assert "< Link: </style.css>; rel=preload; as=style" in lines[hint:final]


def test_early_hints_raw_and_not_to_http10(h2serve_server):
    server = h2serve_server()
    client = RawTLS(server)
    try:
        client.send(request("/early_hints"))
        response = client.read_response()
        assert [status for status, _ in response.interim] == [103]
        assert ("link", "</style.css>; rel=preload; as=style") in response.interim[0][1]
        assert (response.status, response.body) == (200, b"with hints")
    finally:
        client.close()
    old = RawTLS(server)
    try:
        old.send(b"GET /early_hints HTTP/1.0\r\n\r\n")
        data = old.read_to_eof()
        assert data.startswith(b"HTTP/1.1 200 "), data[:100]  # no 1xx to an HTTP/1.0 client
        assert data.endswith(b"with hints")
    finally:
        old.close()


def test_trailers_only_when_client_sent_te_trailers(h2serve_server):
    server = h2serve_server()
    client = RawTLS(server)
    try:
        client.send(request("/trailers", headers="TE: trailers\r\n"))
        with_te = client.read_response()
        assert with_te.status == 200 and with_te.chunked
        assert with_te.body == b"part one,part two"
        assert with_te.trailers == [("grpc-status", "0"), ("grpc-message", "ok")]

        client.send(request("/trailers"))
        without = client.read_response()
        assert without.status == 200 and without.body == b"part one,part two"
        assert without.trailers == []
    finally:
        client.close()


# --------------------------------------------------------------------------- access log


ACCESS_LINE = re.compile(
    r'^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
    r'"GET /hello\?from=e2e HTTP/1\.1" 200 13 "https://referrer\.example/page" "e2e-agent/1\.0"$')


def test_access_log_line_in_gunicorn_format(h2serve_server, tmp_path):
    logfile = tmp_path / "access.log"
    server = h2serve_server("tests.apps:router", "--access-logfile", str(logfile))
    client = RawTLS(server)
    try:
        client.send(request("/hello?from=e2e", headers="User-Agent: e2e-agent/1.0\r\n"
                                                       "Referer: https://referrer.example/page\r\n"))
        assert client.read_response().status == 200
    finally:
        client.close()
    deadline = time.monotonic() + 5
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = logfile.read_text().splitlines() if logfile.exists() else []
        if lines:
            break
        time.sleep(0.05)
    assert len(lines) == 1, lines
    assert ACCESS_LINE.match(lines[0]), lines[0]


# --------------------------------------------------------------------------- X-Forwarded-*


FORWARDED = "X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: http\r\n"


def _environ_with_forwarded(server) -> dict:
    client = RawTLS(server)
    try:
        client.send(request("/environ", headers=FORWARDED))
        return environ_of(client.read_response())
    finally:
        client.close()


def test_forwarded_headers_trusted_from_loopback_by_default(h2serve_server):
    environ = _environ_with_forwarded(h2serve_server())
    assert environ["REMOTE_ADDR"] == "198.51.100.7"
    assert environ["wsgi.url_scheme"] == "http"


def test_forwarded_headers_ignored_from_untrusted_peer(h2serve_server):
    server = h2serve_server("tests.apps:router", "--forwarded-allow-ips", "10.9.9.9")
    environ = _environ_with_forwarded(server)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_X_FORWARDED_FOR"] == "198.51.100.7"  # still visible as a header

