"""Workers sharing a listener spread connections between them."""

from __future__ import annotations

import collections

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


