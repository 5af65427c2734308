"""At worker_connections a new client does not wait behind idle ones: the
connections idle longest (silent, preface only, keep-alive) are closed to make
room, as nginx reuses idle connections."""

from __future__ import annotations

import socket
import time

import pytest

from tests.attack_harness import RSS_GROWTH_LIMIT, Bystander, wait_rss_settles, workers_rss
from tests.h2client import ConnectionClosed, H2Client

SLOTS = 40


def _silent(server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def _preface_only(server) -> H2Client:
    return H2Client(server.host, server.port, cafile=server.cafile, timeout=10).connect()


def _was_closed(idle) -> bool:
    if isinstance(idle, H2Client):
        try:
            while idle.read_frame(timeout=0.05) is not None:
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
    server = h2serve_server("tests.apps:router", "--worker-connections", str(SLOTS),
                            "--client-data-timeout", "60", "--keep-alive", "60",
                            workers=workers, threads=4)
    bystander = Bystander(server)
    bystander.measure_baseline()
    rss_before = workers_rss(server)
    opener = _silent if kind == "silent-tcp" else _preface_only
    idle = [opener(server) for _ in range(int(1.5 * SLOTS * workers))]
    time.sleep(0.3)
    bystander.start()
    time.sleep(2.0)
    bystander.stop()
    growth = workers_rss(server) - rss_before
    closed = sum(_was_closed(conn) for conn in idle)
    for conn in idle:
        conn.close()
    left = wait_rss_settles(server, rss_before) - rss_before
    print(f"{kind} workers={workers}: bystander max {max(bystander.samples, default=0) * 1000:.0f} ms "
          f"(baseline {bystander.baseline * 1000:.1f} ms), {closed} idle closed, "
          f"RSS +{growth / 2**20:.1f} MiB")
    bystander.check()
    # The idle connections paid: the oldest were closed to make room.
    assert closed >= len(idle) - SLOTS * workers
    assert growth < RSS_GROWTH_LIMIT and left < RSS_GROWTH_LIMIT
    assert "worker_connections (40) reached" in server.log
