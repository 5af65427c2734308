"""systemd socket activation, done the way systemd does it.

The test plays systemd: it binds and listens, then starts h2serve through a tiny
wrapper that puts the sockets at fd 3, 4, ... and sets LISTEN_FDS and
LISTEN_PID to its own pid before exec'ing h2serve (systemd sets LISTEN_PID in
the child after fork, so it names the very process that runs h2serve).
"""

from __future__ import annotations

import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import ROOT
from tests.test_nginx import doc_block

WRAPPER = r"""
import fcntl, os, sys
count = int(sys.argv[1])
inherited = [int(fd) for fd in sys.argv[2:2 + count]]
args = sys.argv[2 + count:]
# Move the sockets to 3, 4, ...: park them above 100 first, so no dup2 clobbers another.
parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in inherited]
for fd in inherited:
    os.close(fd)
for index, fd in enumerate(parked):
    os.dup2(fd, 3 + index)
    os.close(fd)
mode = os.environ.pop("TEST_LISTEN_MODE", "systemd")
if mode == "systemd":
    os.environ["LISTEN_FDS"] = str(count)
    os.environ["LISTEN_PID"] = str(os.getpid())
elif mode == "wrong-pid":
    os.environ["LISTEN_FDS"] = str(count)
    os.environ["LISTEN_PID"] = str(os.getpid() + 100000)
os.execv(sys.executable, [sys.executable, "-m", "h2serve", *args])
"""


class ActivatedServer:
    """h2serve started with inherited listening sockets; its stderr collected."""

    def __init__(self, sockets: list[socket.socket], args: list[str], mode: str = "systemd"):
        fds = [sock.fileno() for sock in sockets]
        env = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TEST_LISTEN_MODE": mode,
               "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(len(fds)), *map(str, fds), *args],
            pass_fds=fds, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if re.search(pattern, line)]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} (x{count}) in the log:\n{self.log}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode


@pytest.fixture
def activated():
    started: list[ActivatedServer] = []

    def start(sockets: list[socket.socket], *args: str, mode: str = "systemd") -> ActivatedServer:
        server = ActivatedServer(sockets, list(args), mode)
        started.append(server)
        for sock in sockets:
            sock.close()   # like systemd, keep no copy that could accept
        return server

    yield start
    for server in started:
        server.stop()


def listening_socket() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock, sock.getsockname()[1]


def test_socket_activation_serves_every_passed_socket(activated, dev_certs):
    first, first_port = listening_socket()
    second, second_port = listening_socket()
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    unused_port = unused.getsockname()[1]
    unused.close()
    server = activated([first, second], "--bind", f"127.0.0.1:{unused_port}",
                       "--certfile", str(dev_certs.cert), "--keyfile", str(dev_certs.key),
                       "--workers", "2", "tests.apps:router")
    server.wait_for_log(r"Booting worker with pid", count=2)
    # The passed sockets replace --bind.
    assert server.wait_for_log(rf"Listening at: https://127\.0\.0\.1:{first_port} ")
    assert server.wait_for_log(rf"Listening at: https://127\.0\.0\.1:{second_port} ")
    assert f":{unused_port}" not in server.log
    context = ssl.create_default_context(cafile=str(dev_certs.ca_cert))
    with httpx.Client(http2=True, verify=context, timeout=10) as client:
        for port in (first_port, second_port):
            response = client.get(f"https://127.0.0.1:{port}/hello")
            assert response.status_code == 200 and response.text == "Hello, world!"
            assert response.http_version == "HTTP/2"
            # The variables were for the master only: workers and the app never see them.
            environ = client.get(f"https://127.0.0.1:{port}/environ").json()
            assert "LISTEN_FDS" not in str(environ)
    assert server.stop() == 0


def test_bind_fd_uses_an_inherited_descriptor(activated):
    sock, port = listening_socket()
    server = activated([sock], "--bind", "fd://3", "--plaintext", "tests.apps:router",
                       mode="plain-inherit")
    server.wait_for_log(r"Booting worker with pid")
    response = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=10)
    assert response.status_code == 200 and response.text == "Hello, world!"
    assert server.stop() == 0


def test_listen_pid_of_another_process_is_ignored(activated):
    sock, port = listening_socket()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    bind_port = free.getsockname()[1]
    free.close()
    server = activated([sock], "--bind", f"127.0.0.1:{bind_port}", "--plaintext",
                       "tests.apps:router", mode="wrong-pid")
    server.wait_for_log(rf"Listening at: http://127\.0\.0\.1:{bind_port} ")
    server.wait_for_log(r"Booting worker with pid")
    assert httpx.get(f"http://127.0.0.1:{bind_port}/hello", timeout=10).text == "Hello, world!"


def test_the_documented_unit_runs_under_socket_activation(activated, dev_certs):
    """docs/deploy.md's h2serve.service ExecStart, with the test's certificate and app."""
    unit = doc_block("systemd-service")
    socket_unit = doc_block("systemd-socket")
    assert "ListenStream=" in socket_unit and "[Socket]" in socket_unit
    assert re.search(r"^Requires=h2serve\.socket$", unit, re.M)
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M).group(1)
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/bin/h2serve")
    replacements = {"/etc/h2serve/cert.pem": str(dev_certs.cert),
                    "/etc/h2serve/key.pem": str(dev_certs.key),
                    "myapp.wsgi:application": "tests.apps:router"}
    for documented in replacements:
        assert documented in argv, f"ExecStart no longer has {documented}"
    args = [replacements.get(arg, arg) for arg in argv[1:]]
    workers = int(args[args.index("--workers") + 1])
    sock, port = listening_socket()
    server = activated([sock], *args)
    server.wait_for_log(r"Booting worker with pid", count=workers)
    context = ssl.create_default_context(cafile=str(dev_certs.ca_cert))
    with httpx.Client(http2=True, verify=context, timeout=10) as client:
        assert client.get(f"https://127.0.0.1:{port}/hello").text == "Hello, world!"
    # ExecReload sends HUP: new workers come up, old ones leave, the socket stays.
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Booting worker with pid", count=2 * workers)
    server.wait_for_log(r"Worker exiting", count=workers)
    with httpx.Client(http2=True, verify=context, timeout=10) as client:
        assert client.get(f"https://127.0.0.1:{port}/hello").text == "Hello, world!"
    assert server.stop() == 0
