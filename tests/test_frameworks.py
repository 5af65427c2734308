"""The Flask and Django examples, served by h2serve over HTTP/2 and HTTP/1.1.

Each example uses early hints, response trailers and a streamed body. httpx
checks what an ordinary client sees; a raw HTTP/2 client and a raw HTTP/1.1
socket check the parts httpx hides (the 103 and the trailers).
"""

from __future__ import annotations

import hashlib
import importlib
import socket
import ssl
import time

import httpx
import pytest

from tests.conftest import IN_CI
from tests.h2client import H2Client

FRAMEWORK_APPS = {
    "flask": "examples.flask_app:app",
    "django": "examples.django_project.wsgi:application",
}
PRELOAD = "</static/site.css>; rel=preload; as=style"


def require_module(name: str) -> None:
    """Skip (fail in CI) when a framework from the test extras is missing."""
    try:
        importlib.import_module(name)
    except ImportError:
        message = f"{name} is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def expected_checksum(size: int) -> str:
    block = bytes(range(256)) * 64
    body = (block * (size // len(block) + 1))[:size]
    return "sha256=" + hashlib.sha256(body).hexdigest()


# --- raw HTTP/1.1 over TLS, to see the 103 and the chunked trailers -----------------------------


def http1_exchange(server, target: str, extra_headers: str = "") -> bytes:
    context = ssl.create_default_context(cafile=server.cafile)
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server.host) as sock:
            assert sock.selected_alpn_protocol() == "http/1.1"
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {server.authority}\r\n{extra_headers}"
                         "Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    return data


def split_http1_chunked(message: bytes) -> tuple[bytes, bytes, dict[str, str]]:
    """(head, body, trailers) of a chunked HTTP/1.1 response."""
    head, _, rest = message.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = b""
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body, rest = body + rest[:size], rest[size + 2:]
    trailer_block, _, _ = rest.partition(b"\r\n\r\n")
    trailers = {}
    for line in trailer_block.split(b"\r\n"):
        if line:
            name, _, value = line.decode().partition(":")
            trailers[name.strip().lower()] = value.strip()
    return head, body, trailers


# --- the checks, per protocol ----------------------------------------------------------------------


def check_over_http2(server) -> None:
    context = ssl.create_default_context(cafile=server.cafile)
    with httpx.Client(http2=True, verify=context, timeout=10) as client:
        page = client.get(f"{server.url}/")
        assert page.status_code == 200 and page.http_version == "HTTP/2"
        assert "Served over HTTP/2.0." in page.text
        check_streaming(client, server.url)
        download = client.get(f"{server.url}/checksum", params={"size": "300000"})
        assert hashlib.sha256(download.content).hexdigest() == expected_checksum(300_000)[7:]

    with H2Client(server.host, server.port, cafile=server.cafile) as raw:
        index = raw.response(raw.request("/"), timeout=10)
        assert [dict(hints).get(":status") for hints in index.informational] == ["103"]
        assert dict(index.informational[0])["link"] == PRELOAD
        assert index.status == 200
        checksum = raw.response(raw.request("/checksum?size=300000"), timeout=10)
        assert checksum.status == 200 and len(checksum.body) == 300_000
        assert dict(checksum.trailers or [])["x-checksum"] == expected_checksum(300_000)


def check_over_http1(server) -> None:
    context = ssl.create_default_context(cafile=server.cafile)
    with httpx.Client(http2=False, verify=context, timeout=10) as client:
        page = client.get(f"{server.url}/")
        assert page.status_code == 200 and page.http_version == "HTTP/1.1"
        assert "Served over HTTP/1.1." in page.text
        check_streaming(client, server.url)

    index = http1_exchange(server, "/")
    assert index.startswith(b"HTTP/1.1 103 "), index[:200]
    hints_head, _, final = index.partition(b"\r\n\r\n")
    assert PRELOAD.encode() in hints_head
    assert final.startswith(b"HTTP/1.1 200 ")

    response = http1_exchange(server, "/checksum?size=300000", "TE: trailers\r\n")
    head, body, trailers = split_http1_chunked(response)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert len(body) == 300_000
    assert trailers["x-checksum"] == expected_checksum(300_000)
    # Without TE: trailers the client gets the body and no trailer section.
    _, plain_body, no_trailers = split_http1_chunked(http1_exchange(server, "/checksum?size=1000"))
    assert len(plain_body) == 1000 and not no_trailers


def check_streaming(client: httpx.Client, url: str) -> None:
    """Events arrive as the view yields them, not when it finishes."""
    started = time.monotonic()
    arrivals = []
    with client.stream("GET", f"{url}/stream", params={"n": "3", "delay": "0.4"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = ""
        for piece in response.iter_text():
            text += piece
            arrivals.append(time.monotonic() - started)
    assert text == "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n"
    assert arrivals[0] < 0.35, arrivals          # the first event did not wait for the rest
    assert arrivals[-1] >= 0.75, arrivals


@pytest.mark.parametrize("framework", sorted(FRAMEWORK_APPS))
def test_framework_example_over_both_protocols(h2serve_server, framework):
    require_module(framework)
    server = h2serve_server(FRAMEWORK_APPS[framework], threads=4)
    check_over_http2(server)
    check_over_http1(server)
    assert "Traceback" not in server.log
    assert "Error handling request" not in server.log
