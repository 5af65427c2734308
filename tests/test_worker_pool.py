"""The worker's thread pool: connection setup goes ahead of queued app work."""

from __future__ import annotations

import socket
import ssl
import threading
import time

from h2serve.pool import SPARES_PER_THREAD, ThreadPool
from tests.h2client import H2Client


def test_urgent_jobs_run_before_queued_ones():
    pool = ThreadPool(1)
    pool.start()
    release, order, done = threading.Event(), [], threading.Event()
    pool.submit(release.wait)                     # occupies the only thread
    for n in range(3):
        pool.submit(order.append, f"app{n}")
    pool.submit_urgent(order.append, "handshake")
    pool.submit(done.set)
    release.set()
    assert done.wait(5)
    pool.stop(wait_s=1)
    assert order == ["handshake", "app0", "app1", "app2"]


def test_a_thread_in_a_squeezed_wait_lends_its_slot():
    """One thread: a job waiting with lend_slot does not keep the next job
    waiting; once the slot is back, the spare thread leaves after its job."""
    pool = ThreadPool(1)
    pool.start()
    release = threading.Event()
    ran = threading.Event()

    def squeezed_wait() -> None:
        with pool.lend_slot():
            release.wait(5)

    try:
        pool.submit(squeezed_wait)
        pool.submit(ran.set)
        assert ran.wait(2), "the job behind a lending thread did not run"
        release.set()
        done = threading.Event()
        pool.submit(done.set)
        assert done.wait(2)
        deadline = time.monotonic() + 2
        while any(t.name.endswith("-spare") for t in threading.enumerate()):
            pool.submit(lambda: None)   # a spare leaves after the job it is given
            assert time.monotonic() < deadline, "the spare thread stayed"
            time.sleep(0.01)
    finally:
        release.set()
        pool.stop(wait_s=2)


def test_spare_threads_are_bounded_when_spares_wait_too():
    """Spares run the jobs behind lending threads; when those jobs wait and lend
    as well (every stream of one address squeezed, as under a bulk burst from
    one client), the spares must not chain without end: at most
    SPARES_PER_THREAD x size."""
    pool = ThreadPool(2, name="bounded-pool")
    pool.start()
    release = threading.Event()
    started = threading.Semaphore(0)

    def squeezed_wait() -> None:
        with pool.lend_slot():
            started.release()
            release.wait(5)

    def spares() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "bounded-pool-spare")

    try:
        bound = SPARES_PER_THREAD * 2
        for _ in range(bound + 20):
            pool.submit(squeezed_wait)
        for _ in range(2 + bound):   # the two threads and every spare allowed
            assert started.acquire(timeout=2)
        time.sleep(0.2)      # room for any further spare to start
        assert spares() <= bound, f"{spares()} spare threads for a pool of 2"
        assert not started.acquire(timeout=0.1), "jobs past the bound ran"
        release.set()
        done = threading.Event()
        pool.submit(done.set)
        assert done.wait(5), "the queued jobs did not drain once the waits ended"
    finally:
        release.set()
        pool.stop(wait_s=2)


def test_handshake_is_not_queued_behind_slow_views(h2serve_server):
    server = h2serve_server("tests.apps:router", threads=1)
    busy = H2Client(server.host, server.port, tls=True, cafile=server.cafile).connect()
    try:
        streams = [busy.request("/sleep?s=0.3") for _ in range(10)]   # 3 s of work for 1 thread
        time.sleep(0.2)
        context = ssl.create_default_context(cafile=server.cafile)
        started = time.monotonic()
        with socket.create_connection((server.host, server.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost"):
                handshake_s = time.monotonic() - started
        assert handshake_s < 1.0, f"handshake took {handshake_s:.2f} s behind queued views"
        for stream in streams:
            assert busy.response(stream, timeout=10).status == 200
    finally:
        busy.close()


def test_one_connections_backlog_does_not_queue_another_connection(h2serve_server):
    server = h2serve_server("tests.apps:router", threads=2)
    busy = H2Client(server.host, server.port, tls=True, cafile=server.cafile).connect()
    other = H2Client(server.host, server.port, tls=True, cafile=server.cafile).connect()
    try:
        streams = [busy.request("/sleep?s=0.2") for _ in range(20)]   # 2 s for 2 threads
        time.sleep(0.1)
        started = time.monotonic()
        assert other.response(other.request("/hello"), timeout=10).status == 200
        waited = time.monotonic() - started
        assert waited < 0.6, f"a request on another connection waited {waited:.2f} s"
        for stream in streams:
            assert busy.response(stream, timeout=10).status == 200
    finally:
        busy.close()
        other.close()
