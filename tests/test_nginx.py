"""h2serve behind a real nginx, configured with the blocks from docs/deploy.md.

Each test starts h2serve, then an nginx of its own (temporary prefix, pid and
error log, loopback ports, stopped by pid), built from a named configuration
block of docs/deploy.md with only addresses and certificate paths replaced. So
the documented configurations are the tested ones and cannot drift apart.

Clients connect from 127.0.0.2 (still loopback) so that the address nginx
reports in X-Forwarded-For differs from nginx's own 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI, ROOT, require_tool
from tests.h2client import H2Client

DEPLOY_DOC = ROOT / "docs" / "deploy.md"
CLIENT_ADDRESS = "127.0.0.2"
DOC_CERT = "/etc/ssl/example/fullchain.pem"
DOC_KEY = "/etc/ssl/example/privkey.pem"
DOC_CA = "/etc/h2serve/ca.pem"
DOC_CLIENT_LISTEN = "listen 443 ssl http2;"


def doc_block(name: str) -> str:
    """The fenced block that follows `<!-- test: NAME -->` in docs/deploy.md."""
    text = DEPLOY_DOC.read_text()
    match = re.search(rf"<!-- test: {re.escape(name)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"docs/deploy.md has no block marked {name!r}"
    return match.group(1)


def render(name: str, replacements: list[tuple[str, str]]) -> str:
    """The doc block with test addresses; each replaced text must still be in the doc."""
    block = doc_block(name)
    for old, new in replacements:
        assert old in block, f"docs/deploy.md block {name!r} no longer contains {old!r}"
        block = block.replace(old, new)
    return block


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    return found or require_tool("nginx")


def _stream_module_line(binary: str) -> str:
    """'' when stream is built in, a load_module line when it is a dynamic module;
    skips (fails in CI) when nginx has no stream module at all."""
    version = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10).stderr
    if re.search(r"--with-stream(\s|$)", version):
        return ""
    if "--with-stream=dynamic" in version:
        modules = re.search(r"--modules-path=(\S+)", version)
        directory = Path(modules.group(1)) if modules else Path("/usr/lib/nginx/modules")
        module = directory / "ngx_stream_module.so"
        if module.exists():
            return f"load_module {module};"
        reason = f"nginx's stream module is not installed ({module}; Debian: libnginx-mod-stream)"
    else:
        reason = "nginx was built without the stream module (--with-stream)"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


class Nginx:
    """An nginx master started for one test, in its own temporary prefix."""

    def __init__(self, binary: str, directory: Path, http_blocks: str = "",
                 main_blocks: str = "", preamble: str = "") -> None:
        self.directory = directory
        self.error_log = directory / "error.log"
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        user = "user root;" if os.geteuid() == 0 else ""   # workers must reach tmp-dir sockets
        conf = f"""
{preamble}
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
{http_blocks}
}}
{main_blocks}
"""
        self.conf_path = directory / "nginx.conf"
        self.conf_path.write_text(conf)
        self.proc = subprocess.Popen(
            [binary, "-p", str(directory), "-c", str(self.conf_path), "-e", str(self.error_log),
             "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_listening(self, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited ({self.proc.returncode}): "
                                     f"{self.proc.stderr.read()}\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx is not listening on {port}:\n{self.log()}")

    def log(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # fast shutdown: the master stops its workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def nginx(tmp_path):
    """Factory: nginx(http_blocks=..., main_blocks=..., listen_port=...) -> Nginx."""
    binary = _nginx_binary()
    started: list[Nginx] = []

    def start(*, listen_port: int, http_blocks: str = "", main_blocks: str = "",
              preamble: str = "") -> Nginx:
        server = Nginx(binary, tmp_path / f"nginx{len(started)}", http_blocks, main_blocks,
                       preamble)
        started.append(server)
        server.wait_listening(listen_port)
        return server

    start.binary = binary
    yield start
    for server in started:
        server.stop()


def client_facing(port: int, dev_certs) -> list[tuple[str, str]]:
    return [(DOC_CLIENT_LISTEN, f"listen 127.0.0.1:{port} ssl http2;"),
            (DOC_CERT, str(dev_certs.cert)), (DOC_KEY, str(dev_certs.key))]


def http2_client(dev_certs) -> httpx.Client:
    """An HTTP/2 client that connects from CLIENT_ADDRESS and trusts the dev CA."""
    context = ssl.create_default_context(cafile=str(dev_certs.ca_cert))
    transport = httpx.HTTPTransport(verify=context, http2=True, local_address=CLIENT_ADDRESS)
    return httpx.Client(transport=transport, timeout=10)


def get_environ(client: httpx.Client, url: str, **kwargs) -> tuple[httpx.Response, dict]:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, response.text
    return response, response.json()


# --- proxy_pass https:// with upstream keep-alive -----------------------------------------------


def test_proxy_pass_https_with_upstream_keepalive(h2serve_server, nginx, dev_certs):
    server = h2serve_server("tests.apps:router")
    front = free_port()
    conf = render("nginx-https-upstream", client_facing(front, dev_certs) + [
        ("127.0.0.1:8443", f"127.0.0.1:{server.port}"), (DOC_CA, str(dev_certs.ca_cert))])
    proxy = nginx(listen_port=front, http_blocks=conf)
    url = f"https://127.0.0.1:{front}"
    with http2_client(dev_certs) as client:
        upstream_ports = set()
        for _ in range(5):
            response, environ = get_environ(client, f"{url}/environ")
            assert response.http_version == "HTTP/2"             # client <-> nginx
            assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"      # nginx <-> h2serve
            assert environ["h2serve.alpn"] == "http/1.1"
            assert environ["wsgi.url_scheme"] == "https"
            assert environ["REMOTE_ADDR"] == CLIENT_ADDRESS      # from X-Forwarded-For
            upstream_ports.add(environ["REMOTE_PORT"])
        # Upstream keep-alive: every request reused nginx's one TLS connection to h2serve.
        assert len(upstream_ports) == 1, upstream_ports

        body = os.urandom(300_000)
        echoed = client.post(f"{url}/echo", content=body)
        assert echoed.status_code == 200 and echoed.content == body
        streamed = client.get(f"{url}/stream", params={"n": "3", "delay": "0"})
        assert streamed.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert "[error]" not in proxy.log()


# --- proxy_pass http:// to --plaintext, and X-Forwarded-* ------------------------------------


def _plaintext_proxy(h2serve_server, nginx, dev_certs, *extra: str):
    server = h2serve_server("tests.apps:router", *extra, plaintext=True)
    front = free_port()
    conf = render("nginx-plaintext-upstream", client_facing(front, dev_certs) + [
        ("127.0.0.1:8000", f"127.0.0.1:{server.port}")])
    nginx(listen_port=front, http_blocks=conf)
    return f"https://127.0.0.1:{front}"


def test_proxy_pass_http_to_plaintext_honours_forwarded_headers(h2serve_server, nginx, dev_certs):
    url = _plaintext_proxy(h2serve_server, nginx, dev_certs)
    with http2_client(dev_certs) as client:
        # The client's own X-Forwarded-For is kept, but it is not the nearest untrusted hop.
        _, environ = get_environ(client, f"{url}/environ",
                                 headers={"X-Forwarded-For": "203.0.113.9"})
    assert environ["HTTP_X_FORWARDED_FOR"] == f"203.0.113.9, {CLIENT_ADDRESS}"
    assert environ["REMOTE_ADDR"] == CLIENT_ADDRESS
    assert environ["wsgi.url_scheme"] == "https"        # X-Forwarded-Proto over a plain upstream
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_forwarded_headers_ignored_from_a_peer_not_allowed(h2serve_server, nginx, dev_certs):
    url = _plaintext_proxy(h2serve_server, nginx, dev_certs, "--forwarded-allow-ips", "10.9.9.9")
    with http2_client(dev_certs) as client:
        _, environ = get_environ(client, f"{url}/environ",
                                 headers={"X-Forwarded-For": "203.0.113.9"})
    assert environ["REMOTE_ADDR"] == "127.0.0.1"        # nginx itself
    assert environ["wsgi.url_scheme"] == "http"         # the listener's scheme


# --- proxy_pass to a unix: listener ----------------------------------------------------------


def test_proxy_pass_to_unix_socket(h2serve_server, nginx, dev_certs, tmp_path):
    socket_path = tmp_path / "h2serve.sock"
    h2serve_server("tests.apps:router", plaintext=True, bind=f"unix:{socket_path}")
    front = free_port()
    conf = render("nginx-unix-upstream", client_facing(front, dev_certs) + [
        ("/run/h2serve/h2serve.sock", str(socket_path))])
    nginx(listen_port=front, http_blocks=conf)
    with http2_client(dev_certs) as client:
        hello = client.get(f"https://127.0.0.1:{front}/hello")
        assert hello.status_code == 200 and hello.text == "Hello, world!"
        assert hello.http_version == "HTTP/2"
        _, environ = get_environ(client, f"https://127.0.0.1:{front}/environ")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REMOTE_ADDR"] == ""                  # a unix-socket peer has no address


# --- grpc_pass over h2c and over TLS -------------------------------------------------------------


def _grpc_exchange(front: int, dev_certs) -> tuple:
    """A gRPC-shaped POST through nginx with a raw HTTP/2 client, so trailers are visible."""
    with H2Client("127.0.0.1", front, tls=True, cafile=str(dev_certs.ca_cert)) as client:
        assert client.alpn == "h2"
        stream_id = client.request(
            "/trailers", method="POST",
            headers=[("content-type", "application/grpc"), ("te", "trailers")],
            body=b"\x00\x00\x00\x00\x00")
        call = client.response(stream_id, timeout=10)
        environ_id = client.request("/environ", headers=[("te", "trailers")])
        environ = json.loads(client.response(environ_id, timeout=10).body)
    return call, environ


@pytest.mark.parametrize("upstream", ["h2c", "tls"])
def test_grpc_pass_carries_trailers(h2serve_server, nginx, dev_certs, upstream):
    server = h2serve_server("tests.apps:router", plaintext=upstream == "h2c")
    front = free_port()
    if upstream == "h2c":
        conf = render("nginx-grpc-h2c", client_facing(front, dev_certs) + [
            ("127.0.0.1:8000", f"127.0.0.1:{server.port}")])
    else:
        conf = render("nginx-grpc-tls", client_facing(front, dev_certs) + [
            ("127.0.0.1:8443", f"127.0.0.1:{server.port}"), (DOC_CA, str(dev_certs.ca_cert))])
    proxy = nginx(listen_port=front, http_blocks=conf)
    call, environ = _grpc_exchange(front, dev_certs)
    assert call.status == 200 and call.reset_code is None
    assert call.body == b"part one,part two"
    assert call.trailers is not None, "no trailers reached the client"
    trailers = dict(call.trailers)
    assert trailers.get("grpc-status") == "0" and trailers.get("grpc-message") == "ok"
    assert environ["SERVER_PROTOCOL"] == "HTTP/2.0"           # HTTP/2 all the way to h2serve
    assert environ["h2serve.alpn"] == upstream.replace("tls", "h2")   # "h2c" or "h2"
    assert environ["wsgi.url_scheme"] == ("http" if upstream == "h2c" else "https")
    assert "[error]" not in proxy.log()


# --- PROXY protocol from nginx's stream module ---------------------------------------------------


def _stream_proxy(h2serve_server, nginx, *extra: str):
    stream_module = _stream_module_line(nginx.binary)
    server = h2serve_server("tests.apps:router", "--proxy-protocol", *extra)
    front = free_port()
    conf = render("nginx-stream-proxy-protocol", [
        ("listen 443;", f"listen 127.0.0.1:{front};"),
        ("127.0.0.1:8443", f"127.0.0.1:{server.port}")])
    nginx(listen_port=front, main_blocks=conf, preamble=stream_module)
    return server, front


def test_proxy_protocol_v1_from_nginx_stream(h2serve_server, nginx, dev_certs):
    server, front = _stream_proxy(h2serve_server, nginx)
    with http2_client(dev_certs) as client:
        response, environ = get_environ(client, f"https://127.0.0.1:{front}/environ")
    # TLS and ALPN went through nginx untouched: h2serve negotiated h2 with the client.
    assert response.http_version == "HTTP/2"
    assert environ["h2serve.alpn"] == "h2"
    assert environ["REMOTE_ADDR"] == CLIENT_ADDRESS     # the client as nginx saw it
    assert environ["REMOTE_PORT"] != ""

    # A client that skips nginx sends no header: closed and logged.
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            context = ssl.create_default_context(cafile=str(dev_certs.ca_cert))
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                if not tls.recv(100):
                    raise ConnectionResetError("closed")
    server.wait_for_log(r"PROXY protocol error from 127\.0\.0\.1:\d+: the connection does not "
                        r"start with a PROXY protocol header")


def test_proxy_protocol_peer_outside_allow_list_is_closed(h2serve_server, nginx, dev_certs):
    server, front = _stream_proxy(h2serve_server, nginx, "--proxy-allow-from", "10.9.9.9")
    with http2_client(dev_certs) as client, pytest.raises(httpx.TransportError):
        client.get(f"https://127.0.0.1:{front}/environ")
    server.wait_for_log(r"refusing connection from 127\.0\.0\.1:\d+: PROXY protocol not allowed")
