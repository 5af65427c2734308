"""What docs/deploy.md tells an operator: the log lines to grep for exist, the
documented grep commands find them, and the container command is valid."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys

from tests.conftest import ROOT
from tests.h2client import H2Client
from tests.test_nginx import doc_block


def _bad_http1_request(server) -> bytes:
    context = ssl.create_default_context(cafile=server.cafile)
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server.host) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n")
            return sock.recv(1024)


def test_operator_log_lines_and_the_documented_greps(h2serve_server, tmp_path):
    server = h2serve_server("tests.apps:router", "--timeout", "1")
    first_worker = server.worker_pids()[0]

    # Protocol errors, one per protocol.
    assert _bad_http1_request(server).startswith(b"HTTP/1.1 400")
    with H2Client(server.host, server.port, cafile=server.cafile) as client:
        client.send_headers(2, [(":method", "GET"), (":scheme", "https"),
                                (":authority", server.authority), (":path", "/")],
                            end_stream=True)            # clients never use even stream ids
        assert client.read_until_closed(5)
        assert client.goaway is not None and client.goaway.error_code == 0x1

    # A hung worker: stopped, so its heartbeat stops; the master kills and replaces it.
    os.kill(first_worker, signal.SIGSTOP)
    server.wait_for_log(r"Booting worker with pid", count=2)
    assert server.stop(signal.SIGTERM) == 0
    text = server.log
    error_log = tmp_path / "error.log"      # what --error-logfile would hold
    error_log.write_text(text + "\n")
    assert f"WORKER TIMEOUT (pid:{first_worker})" in text
    assert f"Worker (pid:{first_worker}) was sent SIGKILL! Perhaps out of memory?" in text
    assert re.search(r"\] \[\d+\] \[INFO\] Worker exiting \(pid: \d+\)", text)
    assert re.search(r"\[INFO\] bad request from 127\.0\.0\.1:\d+: ", text)
    assert re.search(r"\[INFO\] HTTP/2 protocol error from 127\.0\.0\.1:\d+: ", text)
    assert re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[CRITICAL\] "
                     r"WORKER TIMEOUT", text, re.M)

    # Every documented grep finds its lines in this log.
    commands = [line for line in doc_block("operator-greps").splitlines() if line.strip()]
    assert len(commands) >= 3
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "grep" and argv[-1] == "/var/log/h2serve/error.log", command
        result = subprocess.run([*argv[:-1], str(error_log)], capture_output=True, text=True,
                                timeout=10)
        assert result.returncode == 0 and result.stdout.strip(), command


def test_the_documented_container_command_is_valid(dev_certs, tmp_path):
    dockerfile = doc_block("dockerfile")
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert cmd[0] == "h2serve"
    assert re.search(r"^ENV TMPDIR=/dev/shm$", dockerfile, re.M)
    replacements = {"/run/secrets/tls.crt": str(dev_certs.cert),
                    "/run/secrets/tls.key": str(dev_certs.key)}
    args = [replacements.get(arg, arg) for arg in cmd[1:]]
    result = subprocess.run([sys.executable, "-m", "h2serve", *args, "--print-config"],
                            capture_output=True, text=True, cwd=str(ROOT), timeout=30)
    assert result.returncode == 0, result.stderr
    assert "bind = ['0.0.0.0:8443']" in result.stdout
    assert "access_logfile = '-'" in result.stdout
    assert "wsgi_app = 'myapp.wsgi:application'" in result.stdout
