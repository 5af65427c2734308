"""End to end: cleartext HTTP/2 (h2c) on a --plaintext server.

Two ways in: prior knowledge (the client opens with the HTTP/2 preface) and
the HTTP/1.1 ``Upgrade: h2c`` dance, where the upgrading request becomes
stream 1 of the new HTTP/2 connection (RFC 7540 section 3.2).
"""

from __future__ import annotations

import json
import re
import subprocess

import httpx
from hyperframe.frame import HeadersFrame, SettingsFrame

from tests.conftest import require_tool
from tests.h2client import H2Client


def run(args: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_curl_prior_knowledge(h2serve_server):
    curl = require_tool("curl")
    server = h2serve_server(plaintext=True)
    assert server.url.startswith("http://")
    result = run([curl, "-sS", "-v", "--http2-prior-knowledge", f"{server.url}/environ"])
    assert result.returncode == 0, result.stderr
    assert "< HTTP/2 200" in result.stderr
    assert "101 Switching Protocols" not in result.stderr
    environ = json.loads(result.stdout)
    assert environ["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["h2serve.stream_id"] == 1


def test_httpx_prior_knowledge(h2serve_server):
    server = h2serve_server(plaintext=True)
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        responses = [client.get(f"{server.url}/hello"),
                     client.post(f"{server.url}/echo", content=b"x" * 200_000)]
        environ = client.get(f"{server.url}/environ").json()
    assert [r.http_version for r in responses] == ["HTTP/2", "HTTP/2"]
    assert responses[0].text == "Hello, world!"
    assert responses[1].content == b"x" * 200_000
    assert environ["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert environ["h2serve.stream_id"] == 5          # third stream of one connection


def test_curl_upgrade_h2c(h2serve_server):
    curl = require_tool("curl")
    server = h2serve_server(plaintext=True)
    result = run([curl, "-sS", "-v", "--http2", f"{server.url}/environ"])
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert re.search(r"^> Upgrade: h2c", err, re.M | re.I), err
    assert "< HTTP/1.1 101 Switching Protocols" in err, err
    assert err.index("< HTTP/1.1 101") < err.index("< HTTP/2 200"), err
    environ = json.loads(result.stdout)
    assert environ["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert environ["h2serve.stream_id"] == 1
    assert environ["h2serve.alpn"] == "h2c"


def test_raw_upgrade_answers_on_stream_1_then_serves_more_streams(h2serve_server):
    server = h2serve_server(plaintext=True)
    # A non-empty HTTP2-Settings header, as real clients send.
    client = H2Client(server.host, server.port, tls=False,
                      settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 50,
                                SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 20})
    try:
        head = client.connect_upgrade("/environ")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert re.search(rb"(?im)^upgrade: h2c$", head), head
        response = client.response(1)
        assert response.status == 200
        environ = json.loads(response.body)
        assert environ["SERVER_PROTOCOL"] == "HTTP/2.0" and environ["h2serve.stream_id"] == 1
        assert environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"] == "/environ"
        (first,) = [f for f in client.frames if isinstance(f, HeadersFrame)]
        assert first.stream_id == 1
        # The connection is now ordinary HTTP/2.
        stream = client.request("/echo", "POST", body=b"after the upgrade")
        assert stream == 3
        assert client.response(stream).body == b"after the upgrade"
    finally:
        client.close()


def test_upgrade_not_offered_for_requests_with_a_body(h2serve_server):
    """RFC 9113 dropped Upgrade; we take it only for bodiless requests, and anything
    else is simply served over HTTP/1.1."""
    curl = require_tool("curl")
    server = h2serve_server(plaintext=True)
    result = run([curl, "-sS", "-v", "--http2", "--data-binary", "body", f"{server.url}/echo"])
    assert result.returncode == 0, result.stderr
    assert "101 Switching Protocols" not in result.stderr
    assert "< HTTP/1.1 200" in result.stderr
    assert result.stdout == "body"


def test_http2_cleartext_modes_as_gunicorn_27(h2serve_server):
    """--http2-cleartext upgrade: the Upgrade dance only (the preface is not HTTP/2
    here); prior-knowledge: the preface only (Upgrade: h2c is ignored)."""
    curl = require_tool("curl")
    server = h2serve_server("tests.apps:router", "--http2-cleartext", "upgrade", plaintext=True)
    upgraded = run([curl, "-sS", "-v", "--http2", f"{server.url}/environ"])
    assert "< HTTP/1.1 101 Switching Protocols" in upgraded.stderr, upgraded.stderr
    prior = run([curl, "-sS", "-v", "--http2-prior-knowledge", f"{server.url}/environ"])
    assert "< HTTP/2 200" not in prior.stderr
    server = h2serve_server("tests.apps:router", "--http2-cleartext", "prior-knowledge",
                            plaintext=True)
    plain = run([curl, "-sS", "-v", "--http2", f"{server.url}/environ"])
    assert "101 Switching Protocols" not in plain.stderr and "< HTTP/1.1 200" in plain.stderr
    prior = run([curl, "-sS", "-v", "--http2-prior-knowledge", f"{server.url}/environ"])
    assert "< HTTP/2 200" in prior.stderr, prior.stderr
