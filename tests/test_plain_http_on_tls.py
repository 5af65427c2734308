"""Plain HTTP sent to the TLS listener (a proxy or health check using http://)
gets a readable 400 naming the mistake, not a reset, and the server log one
warning naming --plaintext however many arrive."""

from __future__ import annotations

import socket
import subprocess

import pytest

from h2serve.transport.tls import looks_like_plain_http
from tests.conftest import require_tool


@pytest.mark.parametrize("first, plain", [
    (b"GET / HTTP/1.1\r\n", True), (b"POST /x HTTP/1.0", True), (b"OPTIONS * ", True),
    (b"PRI * HTTP/2.0", True), (b"\x16\x03\x01\x02\x00\x01", False), (b"\x80\x2e\x01", False),
    (b"get / HTTP/1.1", False), (b"", False), (b"G", True),
])
def test_plain_http_is_told_from_tls_by_its_first_bytes(first, plain) -> None:
    assert looks_like_plain_http(first) is plain


def test_plain_http_to_the_tls_port_gets_400_and_one_warning(h2serve_server) -> None:
    server = h2serve_server("tests.apps:hello")
    curl = require_tool("curl")
    answers = []
    for _ in range(3):
        done = subprocess.run([curl, "-sS", "-i", f"http://{server.authority}/"],
                              capture_output=True, text=True, timeout=20)
        answers.append(done.stdout)
    for answer in answers:
        assert answer.startswith("HTTP/1.1 400 "), answer
        assert "https://" in answer and "--plaintext" in answer
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(b"HEAD /health HTTP/1.0\r\n\r\n")
        head = b""
        while chunk := raw.recv(4096):
            head += chunk
        assert head.startswith(b"HTTP/1.1 400 ") and head.endswith(b"\r\n\r\n")   # HEAD: no body
    server.wait_for_log(r"plain HTTP request\(s\) on a TLS listener")
    assert server.log.count("plain HTTP request(s) on a TLS listener") == 1
    # TLS clients are served as before.
    done = subprocess.run([curl, "-sS", "--cacert", server.cafile, f"{server.url}/"],
                          capture_output=True, text=True, timeout=20)
    assert done.stdout == "Hello, world!"
