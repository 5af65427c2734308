"""The examples, served by a real h2serve, behave as their docstrings say.

Each example runs under the `h2serve` command (tests/conftest.py) and is
queried with httpx over HTTP/2, the raw-frame client where timing or exact
frames matter, and curl where the docs tell readers to use curl. The README's
first command is run too: no certificate flags, a fresh certificate
directory, and curl trusting the ca.pem h2serve created there.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from hyperframe.frame import HeadersFrame

from examples.download import expected_bytes
from examples.early_hints import BUILD_PAGE_S, CSS, PAGE, PRELOAD
from examples.trailers_grpc import frame
from tests.conftest import require_tool
from tests.h2client import H2Client
from tests.test_docs import README_CURL, README_SERVE, ROOT, DocServer, run_doc_curl

EXAMPLES = ("early_hints", "trailers_grpc", "sse", "download")


def tls_context(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.cafile)


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("curl"), "-sS", *args], capture_output=True, timeout=30)


def raw_h2(server) -> H2Client:
    return H2Client(server.host, server.port, tls=True, cafile=server.cafile).connect()


# --------------------------------------------------------------------------
# README


def test_readme_serve_command(tmp_path, monkeypatch):
    """The README's serve command, as a fresh machine runs it: no cert flags."""
    from h2serve.transport.devcert import default_cert_dir

    readme = (ROOT / "README.md").read_text()
    assert README_SERVE in readme and README_CURL in readme
    serve = README_SERVE.rsplit("&&", 1)[1].strip()
    assert serve == ".venv/bin/h2serve examples.hello:app"
    # The README's curl names the default directory: check that it is the default.
    monkeypatch.delenv("H2SERVE_CERT_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_cert_dir() == Path.home() / ".local/share/h2serve/certs"
    assert "~/.local/share/h2serve/certs/ca.pem" in README_CURL

    cert_dir = tmp_path / "fresh-certs"
    server = DocServer(serve, ROOT, cert_dir)  # H2SERVE_CERT_DIR=cert_dir, bind 127.0.0.1:0
    try:
        server.wait_for(re.escape(f"Trust its CA to connect: curl --cacert {cert_dir}/ca.pem"))
        assert (cert_dir / "ca.pem").is_file() and (cert_dir / "localhost.pem").is_file()
        result = run_doc_curl(README_CURL, server.port, cert_dir, tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"Hello from h2serve over HTTP/2.0\n"
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.log


def test_example_docstrings_match_examples_readme():
    """Each example says how to run and query it, and examples/README.md says the same."""
    listing = (ROOT / "examples" / "README.md").read_text()
    for name in EXAMPLES:
        module = __import__(f"examples.{name}", fromlist=["app"])
        assert callable(module.app)
        doc = module.__doc__ or ""
        run = re.search(r"^Run:\s+(.+)$", doc, re.M)
        query = re.search(r"^Query:\s+(curl .+)$", doc, re.M)
        assert run and query, f"examples/{name}.py: no Run:/Query: lines"
        assert run.group(1) == f"h2serve examples.{name}:app"
        assert run.group(1) in listing and query.group(1) in listing, name


# --------------------------------------------------------------------------
# early_hints


def test_early_hints_example(h2serve_server):
    server = h2serve_server("examples.early_hints:app")

    client = raw_h2(server)
    sent = time.monotonic()
    stream = client.request("/")
    client.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == stream)
    hints_at = time.monotonic()
    response = client.response(stream)
    final_at = time.monotonic()
    client.close()
    assert response.informational == [[(":status", "103"), ("link", PRELOAD)]]
    assert response.status == 200 and response.body == PAGE
    assert response.header("link") == PRELOAD
    # The hint leaves before the page is built, not with it.
    assert final_at - hints_at > BUILD_PAGE_S * 0.75, (sent, hints_at, final_at)

    with httpx.Client(http2=True, verify=tls_context(server), timeout=10) as http:
        css = http.get(f"{server.url}/static/site.css")
    assert css.http_version == "HTTP/2" and css.content == CSS
    assert css.headers["content-type"] == "text/css"

    url = f"https://localhost:{server.port}/"
    h11 = curl("-v", "--http1.1", "--cacert", server.cafile, url)
    err = h11.stderr.decode()
    assert h11.returncode == 0, err
    assert err.index("< HTTP/1.1 103 Early Hints") < err.index(f"< Link: {PRELOAD}") \
        < err.index("< HTTP/1.1 200 OK")
    h10 = curl("-v", "--http1.0", "--cacert", server.cafile, url)
    assert h10.returncode == 0 and h10.stdout == PAGE
    assert " 103 " not in h10.stderr.decode()  # HTTP/1.0 clients get no interim response


# --------------------------------------------------------------------------
# trailers_grpc


def test_trailers_grpc_example(h2serve_server):
    server = h2serve_server("examples.trailers_grpc:app")
    client = raw_h2(server)
    grpc_headers = [("content-type", "application/grpc"), ("te", "trailers")]
    plain = client.request("/")
    named = client.request("/greeter.Greeter/SayHello", "POST", grpc_headers,
                           body=frame(b"Alice"))
    broken = client.request("/greeter.Greeter/SayHello", "POST", grpc_headers,
                            body=b"\0\0\0\0\x09Alice")  # says 9 bytes, carries 5
    responses = {sid: client.response(sid) for sid in (plain, named, broken)}
    client.close()

    ok = responses[plain]
    assert ok.status == 200 and ok.header("content-type") == "application/grpc"
    assert ok.body == b"\0\0\0\0\x0dHello, world!"
    assert ok.trailers == [("grpc-status", "0"), ("grpc-message", "OK")]
    assert responses[named].body == frame(b"Hello, Alice!")
    assert responses[named].trailers == [("grpc-status", "0"), ("grpc-message", "OK")]
    bad = responses[broken]
    assert bad.status == 200 and bad.body == b""
    assert bad.trailers == [("grpc-status", "3"),
                            ("grpc-message", "message length does not match the body")]

    url = f"https://localhost:{server.port}/"
    h2 = curl("-v", "--http2", "--cacert", server.cafile, url)
    assert h2.returncode == 0, h2.stderr
    assert re.search(rb"^< grpc-status: 0\r?$", h2.stderr, re.M), h2.stderr
    # HTTP/1.1: trailers after the last chunk, only for a client that asked for them.
    asked = curl("--raw", "--http1.1", "-H", "TE: trailers", "--cacert", server.cafile, url)
    assert asked.stdout.endswith(b"\r\n0\r\ngrpc-status: 0\r\ngrpc-message: OK\r\n\r\n"), asked.stdout
    not_asked = curl("--raw", "--http1.1", "--cacert", server.cafile, url)
    assert not_asked.stdout.endswith(b"\r\n0\r\n\r\n"), not_asked.stdout
    assert b"grpc-status" not in not_asked.stdout


# --------------------------------------------------------------------------
# sse


def test_sse_example_streams_each_event_as_it_happens(h2serve_server):
    server = h2serve_server("examples.sse:app")

    async def scenario():
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(http2=True, verify=tls_context(server), limits=limits,
                                     timeout=10) as client:
            await client.get(f"{server.url}/?n=0")  # open the one connection
            arrivals: list[tuple[float, str]] = []
            started = time.monotonic()

            async def listen():
                async with client.stream("GET", f"{server.url}/?n=4") as response:
                    assert response.http_version == "HTTP/2"
                    assert response.headers["content-type"].startswith("text/event-stream")
                    buffer = ""
                    async for text in response.aiter_text():
                        buffer += text
                        while "\n\n" in buffer:
                            event, buffer = buffer.split("\n\n", 1)
                            arrivals.append((time.monotonic() - started, event))

            async def neighbour():
                await asyncio.sleep(0.2)
                begun = time.monotonic()
                reply = await client.get(f"{server.url}/?n=0")
                return reply, time.monotonic() - begun

            _, (reply, took) = await asyncio.gather(listen(), neighbour())
            return arrivals, reply, took

    arrivals, reply, took = asyncio.run(scenario())
    ticks = [(at, event) for at, event in arrivals if "event: tick" in event]
    assert [event.splitlines()[0] for _, event in ticks] == ["id: 1", "id: 2", "id: 3", "id: 4"]
    assert arrivals[-1][1].startswith("event: done")
    times = [at for at, _ in ticks]
    assert times[0] < 1.0, times  # the first event did not wait for the other three (1.5 s)
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert all(0.35 < gap < 1.5 for gap in gaps), gaps
    # Another stream on the same connection was answered while the events ran.
    assert reply.status_code == 200 and "event: done" in reply.text
    assert took < 1.0, took  # not held until the events end

    with httpx.Client(http2=True, verify=tls_context(server), timeout=10) as client:
        assert client.get(f"{server.url}/?n=abc").status_code == 400
        assert client.get(f"{server.url}/?n=101").status_code == 400


# --------------------------------------------------------------------------
# download


@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024 + 123])
def test_download_example(h2serve_server, size):
    server = h2serve_server("examples.download:app")
    with httpx.Client(http2=True, verify=tls_context(server), timeout=30) as client:
        with client.stream("GET", f"{server.url}/?size={size}") as response:
            assert response.http_version == "HTTP/2" and response.status_code == 200
            assert response.headers["content-length"] == str(size)
            assert response.headers["content-type"] == "application/octet-stream"
            body = b"".join(response.iter_bytes())
        assert body == expected_bytes(size)
        head = client.head(f"{server.url}/?size={size}")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(size)
        for bad in ("abc", "-1", str(2**30 + 1)):
            assert client.get(f"{server.url}/?size={bad}").status_code == 400
    assert "Traceback" not in server.log, server.log


def test_download_example_does_not_block_other_streams(h2serve_server):
    """A 64 MiB download on one stream; a small request beside it is answered at once."""
    server = h2serve_server("examples.download:app")

    async def scenario():
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(http2=True, verify=tls_context(server), limits=limits,
                                     timeout=30) as client:
            await client.get(f"{server.url}/?size=1")
            async with client.stream("GET", f"{server.url}/?size={64 * 1024 * 1024}") as big:
                chunks = big.aiter_raw()
                first = await chunks.__anext__()  # the download is under way
                begun = time.monotonic()
                small = await client.get(f"{server.url}/?size=10")
                took = time.monotonic() - begun
                rest = 0
                async for chunk in chunks:
                    rest += len(chunk)
            return len(first) + rest, small, took

    total, small, took = asyncio.run(scenario())
    assert total == 64 * 1024 * 1024
    assert small.content == expected_bytes(10)
    assert took < 2.0, took
