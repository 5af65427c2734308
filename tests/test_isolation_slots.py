"""At worker_connections a new client does not wait behind idle ones: the
connections idle longest (silent, preface only, keep-alive) are closed to make
room, as nginx reuses idle connections. 1,500 idle connections per worker from
one address against the default worker_connections (1,000).

Memory: a held TLS connection costs about 24 KiB of worker RSS (14 KiB of it
OpenSSL's), so 1,000 would cost more than the 20 MiB an attack may grow a
worker by. One address may therefore hold only max_unused_connections_per_peer
(256) handshaken connections without a request; its oldest beyond that are
closed once silent 3 s. Silent TCP connections cost little (no TLS state)
and are bounded by worker_connections alone. Once the crowd is gone the worker
gives the memory back (allocator.py): within 20 MiB of its size before."""

from __future__ import annotations

import selectors
import socket
import ssl
import time

import pytest

from h2serve.worker import UNUSED_GRACE_S
from tests.attack_harness import (
    RSS_GROWTH_LIMIT,
    Bystander,
    each_worker_rss,
    most_grown,
)
from tests.h2client import ConnectionClosed, H2Client

SLOTS = 1000    # the default worker_connections
UNUSED_PER_PEER = 256   # the default max_unused_connections_per_peer
IDLE_PER_WORKER = 1500


def _silent(server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def _preface_only(server) -> H2Client:
    return H2Client(server.host, server.port, cafile=server.cafile, timeout=10).connect()


def _tls_http1_unused(server) -> ssl.SSLSocket:
    """A TLS connection that chose HTTP/1.1 and never sends a request."""
    context = ssl.create_default_context(cafile=server.cafile)
    context.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection((server.host, server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def _closed_count(idle: list) -> int:
    """How many of the idle connections the server closed (or said GOAWAY on):
    only those whose socket became readable are looked at, so a thousand
    untouched ones cost one select."""
    with selectors.DefaultSelector() as selector:
        for conn in idle:
            selector.register(conn.sock if isinstance(conn, H2Client) else conn,
                              selectors.EVENT_READ, conn)
        readable = [key.data for key, _ in selector.select(timeout=0.5)]
    return sum(_was_closed(conn) for conn in readable)


def _was_closed(idle) -> bool:
    if isinstance(idle, H2Client):
        try:
            while idle.read_frame(timeout=0.01) is not None:   # its bytes are in by now
                pass
        except ConnectionClosed:
            return True
        return idle.goaway is not None
    idle.settimeout(0.05)
    try:
        return idle.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kind", ["silent-tcp", "preface-only", "tls-http1-unused"])
def test_idle_connections_make_room_for_new_clients(h2serve_server, kind, workers) -> None:
    server = h2serve_server("tests.apps:router", "--client-data-timeout", "60",
                            "--keep-alive", "60", workers=workers, threads=4)
    bystander = Bystander(server)
    bystander.measure_baseline()
    rss_before = each_worker_rss(server)
    opener = {"silent-tcp": _silent, "preface-only": _preface_only,
              "tls-http1-unused": _tls_http1_unused}[kind]
    started = time.monotonic()
    idle = [opener(server) for _ in range(IDLE_PER_WORKER * workers)]
    opened_in = time.monotonic() - started
    # Unused connections beyond an address's cap are shed once silent 3 s.
    time.sleep(0.3 if kind == "silent-tcp" else UNUSED_GRACE_S + 0.7)
    bystander.start()
    time.sleep(2.0)
    bystander.stop()
    growth = most_grown(rss_before, each_worker_rss(server))
    closed = _closed_count(idle)
    for conn in idle:
        conn.close()
    deadline = time.monotonic() + 10
    left = most_grown(rss_before, each_worker_rss(server))
    while left >= RSS_GROWTH_LIMIT and time.monotonic() < deadline:
        time.sleep(0.2)
        left = most_grown(rss_before, each_worker_rss(server))
    print(f"{kind} workers={workers}: bystander max {max(bystander.samples, default=0) * 1000:.0f} ms "
          f"(baseline {bystander.baseline * 1000:.1f} ms), {closed} idle closed, "
          f"RSS of the most grown worker +{growth / 2**20:.1f} MiB, after +{left / 2**20:.1f} MiB ({len(idle)} opened in "
          f"{opened_in:.1f} s)")
    bystander.check()
    assert growth < RSS_GROWTH_LIMIT, f"a worker grew {growth / 2**20:.1f} MiB"
    assert left < RSS_GROWTH_LIMIT, f"a worker kept {left / 2**20:.1f} MiB"
    if kind == "silent-tcp":
        # The idle connections paid: the oldest were closed to make room.
        assert closed >= len(idle) - SLOTS * workers
        assert f"worker_connections ({SLOTS}) reached" in server.log
    else:
        # Handshaken and unused: an address keeps at most 256 per worker.
        assert closed >= len(idle) - UNUSED_PER_PEER * workers
        assert "without a request (max_unused_connections_per_peer)" in server.log
