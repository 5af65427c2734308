"""Control bytes a client sends never reach a log raw (issue: terminal escapes
and forged lines through the access and error logs)."""

from __future__ import annotations

import json
import re
import socket
import ssl

import pytest

from h2serve.logs import escape_controls
from tests.h2client import H2Client

# A control byte, DEL or C1 character that is not a log file's own newline.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def test_escape_controls_writes_every_control_as_hex() -> None:
    assert escape_controls("a\x1b[31m\x07\x08\x7f\x9b\nz") == "a\\x1b[31m\\x07\\x08\\x7f\\x9b\\x0az"
    assert escape_controls("plain é ü") == "plain é ü"


def _h1_get(server, raw_request: bytes) -> bytes:
    ctx = ssl.create_default_context(cafile=server.cafile)
    with socket.create_connection((server.host, server.port), timeout=5) as sock, \
            ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(raw_request)
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
        return reply


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_client_control_bytes_are_escaped_in_both_logs(h2serve_server, tmp_path, fmt, workers) -> None:
    access = tmp_path / "access.log"
    extra = ["--access-logfile", str(access)]  # the error log is the server's stderr
    if fmt == "json":
        extra += ["--access-logformat", "json"]
    server = h2serve_server("tests.apps:router", *extra, workers=workers)

    with H2Client(server.host, server.port, cafile=server.cafile) as client:
        client.connect()
        agent = ("user-agent", "evil\x1b]0;owned\x07\x08\x7f")
        ok = client.request("/hello?x=\x1b[2J\x07", headers=[agent])
        failed = client.request("/fail?y=\x1b[31m\x7f", headers=[agent])
        assert client.response(ok, timeout=10).status == 200
        assert client.response(failed, timeout=10).status == 500
    # HTTP/1.1: obs-text (here a C1 byte as latin-1) is a valid field value.
    reply = _h1_get(server, b"GET /hello HTTP/1.1\r\nHost: localhost\r\n"
                            b"User-Agent: one\x9btwo\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200")

    server.stop()
    access_text = access.read_text("utf-8")
    error_text = server.log
    assert RAW_CONTROL.search(access_text) is None, access_text
    assert RAW_CONTROL.search(error_text) is None, error_text
    # What was sent is still readable, as \xHH (or \u00XX inside JSON strings).
    if fmt == "json":
        records = [json.loads(line) for line in access_text.splitlines()]
        agents = {record["user_agent"] for record in records}
        assert "evil\x1b]0;owned\x07\x08\x7f" in agents and "one\x9btwo" in agents
    else:
        assert "evil\\x1b]0;owned\\x07\\x08\\x7f" in access_text
        assert "/hello?x=\\x1b[2J\\x07" in access_text
        assert "one\\x9btwo" in access_text
    assert "Error handling request GET /fail?y=\\x1b[31m\\x7f" in error_text
    # Tracebacks keep their own line breaks.
    assert "Traceback (most recent call last):\n" in error_text
