"""Workers sharing a listener spread connections between them."""

from __future__ import annotations

import collections
import threading
import time

from h2serve.loadshare import LoadTable
from tests.h2client import H2Client


def test_load_table_tracks_the_least_loaded_accepting_worker():
    table = LoadTable(slots=4)
    a, b, c = table.take_slot(), table.take_slot(), table.take_slot()
    assert table.least_loaded_other(a) is None          # nobody else publishes yet
    table.publish(a, 5)
    table.publish(b, 2)
    table.publish(c, None)                               # draining: not a candidate
    assert table.least_loaded_other(a) == 2
    assert table.least_loaded_other(b) == 5
    table.free_slot(b)
    assert table.least_loaded_other(a) is None
    assert table.take_slot() == b                        # slots are reused


def test_load_table_knows_which_workers_still_boot():
    table = LoadTable(slots=4)
    a, b = table.take_slot(), table.take_slot()
    assert table.others_booting(a) and table.others_booting(b)
    table.publish(b, 0)
    assert not table.others_booting(a) and table.others_booting(b)
    assert table.least_loaded_other(b) is None           # a booting worker takes nothing
    table.free_slot(a)                                   # a worker that failed to boot
    assert not table.others_booting(b)


def pid_of_connection(server) -> int:
    client = H2Client(server.host, server.port, tls=True, cafile=server.cafile).connect()
    response = client.response(client.request("/sleep?s=0"))
    assert response.status == 200
    return client, int(response.body.split(b" pid ")[1].split()[0])


def test_connections_spread_over_workers(h2serve_server):
    server = h2serve_server("tests.apps:router", workers=2)
    clients, pids = [], collections.Counter()
    try:
        for _ in range(8):
            client, pid = pid_of_connection(server)
            clients.append(client)
            pids[pid] += 1
    finally:
        for client in clients:
            client.close()
    assert len(pids) == 2, pids
    assert max(pids.values()) == 4, pids   # one at a time: they alternate




def test_connections_made_as_the_server_starts_spread_over_workers(h2serve_server, tmp_path):
    """The first worker ready waits for its sibling: a burst of long-lived
    connections at startup does not all land on it."""
    server = h2serve_server("tests.slow_boot_app:app", workers=2, wait_workers=False,
                            env={"H2SERVE_TEST_BOOT_MARKER": str(tmp_path / "booted")})
    deadline = time.monotonic() + 10
    while True:   # as a load balancer or a benchmark does: the first answer, then load
        try:
            client, _ = pid_of_connection(server)
            client.close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.02)
    clients, pids, lock = [], collections.Counter(), threading.Lock()

    def connect() -> None:
        client, pid = pid_of_connection(server)
        with lock:
            clients.append(client)
            pids[pid] += 1

    burst = [threading.Thread(target=connect) for _ in range(8)]
    for thread in burst:
        thread.start()
    for thread in burst:
        thread.join(10)
    for client in clients:
        client.close()
    assert sum(pids.values()) == 8
    assert len(pids) == 2 and min(pids.values()) >= 2, pids
