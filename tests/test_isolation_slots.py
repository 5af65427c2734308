"""At worker_connections a new client does not wait behind idle ones: the
connections idle longest (silent, preface only, keep-alive) are closed to make
room, as nginx reuses idle connections. 1,500 idle connections per worker from
one address against the default worker_connections (1,000).

Memory: a held TLS connection with the HTTP/2 preface costs about 48 KiB of
worker RSS (Python objects, h2's settings state, OpenSSL's), so 1,000 of them
cost about 47 MiB; that is the bound asserted while they are held (64 KiB per
slot). Once they are gone the worker gives the memory back (allocator.py):
within 20 MiB of its size before."""

from __future__ import annotations

import selectors
import socket
import time

import pytest

from tests.attack_harness import (
    RSS_GROWTH_LIMIT,
    Bystander,
    each_worker_rss,
    most_grown,
)
from tests.h2client import ConnectionClosed, H2Client

SLOTS = 1000    # the default worker_connections
IDLE_PER_WORKER = 1500
HELD_BYTES_PER_SLOT = 64 * 1024


def _silent(server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def _preface_only(server) -> H2Client:
    return H2Client(server.host, server.port, cafile=server.cafile, timeout=10).connect()


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
@pytest.mark.parametrize("kind", ["silent-tcp", "preface-only"])
def test_idle_connections_make_room_for_new_clients(h2serve_server, kind, workers) -> None:
    server = h2serve_server("tests.apps:router", "--client-data-timeout", "60",
                            "--keep-alive", "60", workers=workers, threads=4)
    bystander = Bystander(server)
    bystander.measure_baseline()
    rss_before = each_worker_rss(server)
    opener = _silent if kind == "silent-tcp" else _preface_only
    started = time.monotonic()
    idle = [opener(server) for _ in range(IDLE_PER_WORKER * workers)]
    opened_in = time.monotonic() - started
    time.sleep(0.3)
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
    # The idle connections paid: the oldest were closed to make room.
    assert closed >= len(idle) - SLOTS * workers
    assert growth < SLOTS * HELD_BYTES_PER_SLOT, f"a worker grew {growth / 2**20:.1f} MiB"
    assert left < RSS_GROWTH_LIMIT, f"a worker kept {left / 2**20:.1f} MiB"
    assert f"worker_connections ({SLOTS}) reached" in server.log
