"""A client that stalls its own HTTP/2 streams (closed window, dribbled window)
holds at most its share of a worker's pool threads, for a bounded time, and
gets RST_STREAM CANCEL; a well-behaved client on a fresh connection is served
meanwhile as fast as before (within 2x its baseline + 100 ms).

Each attack runs against one worker x 4 threads and against two workers with
attack connections on both."""

from __future__ import annotations

import time

import pytest
from hyperframe.frame import DataFrame, RstStreamFrame, SettingsFrame

from tests.attack_harness import RSS_GROWTH_LIMIT, Bystander, wait_rss_settles, workers_rss
from tests.h2client import CANCEL, ConnectionClosed, H2Client

SEND_TIMEOUT = "2"
ATTACK_S = 6.0          # > send timeout: every stalled stream must have been cancelled by then


def _attackers(server, count: int) -> list[H2Client]:
    clients = []
    for _ in range(count):
        client = H2Client(server.host, server.port, cafile=server.cafile, auto_window=False,
                          settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}, timeout=10)
        clients.append(client.connect())
    return clients


def _cancelled(client: H2Client) -> set[int]:
    return {f.stream_id for f in client.frames
            if isinstance(f, RstStreamFrame) and f.error_code == CANCEL}


def _run_attack(server, attackers: list[H2Client], path: str, streams: int,
                dribble: bool) -> tuple[Bystander, int, int, list[set[int]]]:
    bystander = Bystander(server)
    bystander.measure_baseline()
    rss_before = workers_rss(server)
    opened: list[list[int]] = []
    for client in attackers:
        opened.append([client.request(path) for _ in range(streams)])
    bystander.start()
    peak = rss_before
    end = time.monotonic() + ATTACK_S
    next_dribble = time.monotonic() + 0.5
    while time.monotonic() < end:
        for client in attackers:
            while client.read_frame(timeout=0.02) is not None:
                pass
        if dribble and time.monotonic() >= next_dribble:
            next_dribble += 0.5
            for client, ids in zip(attackers, opened, strict=True):
                for stream_id in ids:   # one byte of credit per stream and connection
                    client.send_window_update(stream_id, 1)
                client.send_window_update(0, len(ids))
        peak = max(peak, workers_rss(server))
    bystander.stop()
    cancelled = [_cancelled(client) for client in attackers]
    for client in attackers:
        client.close()
    rss_after = wait_rss_settles(server, rss_before)
    return bystander, peak - rss_before, rss_after - rss_before, cancelled


ATTACKS = {
    # SETTINGS_INITIAL_WINDOW_SIZE 0, then streams asking for 1 MiB bodies.
    "closed-window-1MiB": ("/big?size=1048576", 50, False),
    # The same, with one byte of window credit per stream every half second.
    "dribbled-window": ("/big?size=1048576", 50, True),
    # Window 0, many small responses (the poller frames those handed over).
    "closed-window-small": ("/hello", 90, False),
}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_stalled_streams_do_not_take_the_pool(h2serve_server, attack, workers) -> None:
    path, streams, dribble = ATTACKS[attack]
    server = h2serve_server("tests.apps:router", "--send-timeout", SEND_TIMEOUT,
                            workers=workers, threads=4)
    attackers = _attackers(server, 2 * workers)   # connections on every worker
    bystander, growth, left, cancelled = _run_attack(server, attackers, path, streams, dribble)
    print(f"{attack} workers={workers}: bystander max {max(bystander.samples, default=0) * 1000:.0f} ms "
          f"(baseline {bystander.baseline * 1000:.1f} ms), RSS +{growth / 2**20:.1f} MiB, "
          f"after +{left / 2**20:.1f} MiB")
    bystander.check()
    assert growth < RSS_GROWTH_LIMIT, f"workers grew {growth / 2**20:.1f} MiB"
    assert left < RSS_GROWTH_LIMIT, f"workers kept {left / 2**20:.1f} MiB"
    # The attacker hears it: the streams it stalled are cancelled (those that
    # never got a thread wait unstarted, holding nothing).
    assert any(cancelled), "the attacker got no RST_STREAM CANCEL"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_unread_bodies_are_bounded_per_connection(h2serve_server, workers) -> None:
    """4 connections x 64 POST streams whose bodies the app does not read yet:
    the connection window, not the sum of stream windows, bounds what a
    connection makes the worker hold (16 MiB per connection before)."""
    server = h2serve_server("tests.apps:router", workers=workers, threads=4)
    rss_before = workers_rss(server)
    clients = []
    sent = 0
    for _ in range(4):
        client = H2Client(server.host, server.port, cafile=server.cafile, timeout=10).connect()
        client.collect(0.2)   # the server's connection WINDOW_UPDATE
        clients.append(client)
        for _ in range(64):
            stream_id = client.request("/read_later?delay=5", method="POST",
                                       headers=[("content-length", str(50 * 2**20))],
                                       end_stream=False)
            room = min(client.connection_send_window, client.stream_send_windows[stream_id])
            if room > 0:
                client.send_data(stream_id, b"x" * room)
                sent += room
    time.sleep(1.5)
    growth = workers_rss(server) - rss_before
    for client in clients:
        client.close()
    left = wait_rss_settles(server, rss_before) - rss_before
    print(f"unread bodies workers={workers}: {sent / 2**20:.1f} MiB accepted, "
          f"RSS +{growth / 2**20:.1f} MiB, after +{left / 2**20:.1f} MiB")
    assert sent <= 4 * 2**20 + 4 * 65535      # one connection window (1 MiB) each
    assert growth < RSS_GROWTH_LIMIT, f"workers grew {growth / 2**20:.1f} MiB"
    assert left < RSS_GROWTH_LIMIT, f"workers kept {left / 2**20:.1f} MiB"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_priority_updates_for_unopened_streams_keep_little(h2serve_server, workers) -> None:
    """40 connections x 99 PRIORITY_UPDATE frames of 16 KB for streams never
    opened: what is kept per stream is the parsed result (+61 MiB before)."""
    server = h2serve_server("tests.apps:router", workers=workers, threads=4)
    bystander = Bystander(server)
    bystander.measure_baseline()
    rss_before = workers_rss(server)
    value = "u=1, " + "a=1, " * 3270     # just under one 16 KB frame
    clients = []
    bystander.start()
    for _ in range(40):
        client = H2Client(server.host, server.port, cafile=server.cafile, timeout=10).connect()
        clients.append(client)
        for index in range(99):
            client.send_priority_update(1001 + 2 * index, value)
    time.sleep(1.0)
    bystander.stop()
    growth = workers_rss(server) - rss_before
    alive = 0
    for client in clients:
        client.request("/hello")
        alive += client.read_frame(timeout=5) is not None
        client.close()
    left = wait_rss_settles(server, rss_before) - rss_before
    print(f"priority hoard workers={workers}: bystander max {max(bystander.samples) * 1000:.0f} ms, "
          f"RSS +{growth / 2**20:.1f} MiB, after +{left / 2**20:.1f} MiB")
    bystander.check()
    assert growth < RSS_GROWTH_LIMIT, f"workers grew {growth / 2**20:.1f} MiB"
    assert left < RSS_GROWTH_LIMIT, f"workers kept {left / 2**20:.1f} MiB"
    assert alive == len(clients)   # allowed frames: the connections still serve


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("trickle", [False, True], ids=["stop", "trickle"])
def test_stalled_request_bodies_do_not_take_the_pool(h2serve_server, workers, trickle) -> None:
    """POST streams declaring 50 MiB that send 64 KiB and stop (or then trickle
    a byte every half second): at most max_blocked_threads of them hold a
    thread at once; they are cancelled at the body deadline."""
    # (the minimum rate raised so that the 64 KiB sent first earns 2 s of waiting,
    # not 131 s: the trickle is then cancelled within the test's 5 s)
    server = h2serve_server("tests.apps:router", "--client-data-timeout", "2",
                            "--body-min-rate", "32768", workers=workers, threads=4)
    bystander = Bystander(server)
    bystander.measure_baseline()
    rss_before = workers_rss(server)
    clients = [H2Client(server.host, server.port, cafile=server.cafile, timeout=10).connect()
               for _ in range(4 * workers)]
    opened = []
    for client in clients:
        client.collect(0.1)
        for _ in range(15):   # 15 x 64 KiB: within the 1 MiB connection window
            stream_id = client.request("/echo", method="POST", end_stream=False,
                                       headers=[("content-length", str(50 * 2**20))])
            client.send_data(stream_id, b"x" * 65536)
            opened.append((client, stream_id))
    bystander.start()
    end = time.monotonic() + 5.0
    next_byte = time.monotonic() + 0.5
    closed: set[int] = set()
    while time.monotonic() < end:
        for client in clients:
            try:
                while id(client) not in closed and client.read_frame(timeout=0.02) is not None:
                    pass
            except ConnectionClosed:   # cut off after its streams were cancelled
                closed.add(id(client))
        if trickle and time.monotonic() >= next_byte:
            next_byte += 0.5
            for client, stream_id in opened:
                if id(client) not in closed and stream_id not in client.ended_streams:
                    client.send_data(stream_id, b"x")
    bystander.stop()
    growth = workers_rss(server) - rss_before
    cancelled = set().union(*(_cancelled(client) for client in clients))
    for client in clients:
        client.close()
    left = wait_rss_settles(server, rss_before) - rss_before
    print(f"stalled bodies ({'trickle' if trickle else 'stop'}) workers={workers}: bystander max "
          f"{max(bystander.samples, default=0) * 1000:.0f} ms (baseline "
          f"{bystander.baseline * 1000:.1f} ms), {len(cancelled)} cancelled, "
          f"RSS +{growth / 2**20:.1f} MiB")
    bystander.check()
    assert cancelled, "the attacker got no RST_STREAM CANCEL"
    assert growth < RSS_GROWTH_LIMIT and left < RSS_GROWTH_LIMIT


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_client_that_never_reads_its_socket_holds_little(h2serve_server, workers) -> None:
    """50 streams asking for 10 MiB each with every window wide open, and the
    client never reads its socket: the connection's output stops at its bound,
    at most max_blocked_threads threads wait on it, the rest of its streams wait
    unstarted, and the connection is closed once its socket took nothing for
    send_timeout."""
    server = h2serve_server("tests.apps:router", "--send-timeout", SEND_TIMEOUT,
                            workers=workers, threads=4)
    bystander = Bystander(server)
    bystander.measure_baseline()
    rss_before = workers_rss(server)
    attackers = []
    for _ in range(2 * workers):   # connections on every worker
        client = H2Client(server.host, server.port, cafile=server.cafile, timeout=10,
                          settings={SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1}).connect()
        client.send_window_update(0, 2**31 - 1 - 65535)
        for _ in range(50):
            client.request("/big?size=10485760")
        attackers.append(client)
    started = time.monotonic()
    bystander.start()
    peak = rss_before
    while time.monotonic() < started + ATTACK_S:   # the attackers read nothing meanwhile
        peak = max(peak, workers_rss(server))
        time.sleep(0.05)
    bystander.stop()
    closed = 0
    for client in attackers:   # now read: what was queued, then the close
        try:
            while client.read_frame(timeout=2) is not None:
                pass
        except (ConnectionClosed, OSError):   # a TLS EOF or a reset is a close too
            closed += 1
        client.close()
    left = wait_rss_settles(server, rss_before) - rss_before
    print(f"never-reading workers={workers}: bystander max "
          f"{max(bystander.samples, default=0) * 1000:.0f} ms (baseline "
          f"{bystander.baseline * 1000:.1f} ms), {closed} of {len(attackers)} closed, "
          f"RSS +{(peak - rss_before) / 2**20:.1f} MiB, after +{left / 2**20:.1f} MiB")
    bystander.check()
    assert closed == len(attackers), "a connection that read nothing was not closed"
    assert peak - rss_before < RSS_GROWTH_LIMIT, f"workers grew {(peak - rss_before) / 2**20:.1f} MiB"
    assert left < RSS_GROWTH_LIMIT, f"workers kept {left / 2**20:.1f} MiB"


@pytest.mark.slow
def test_slow_but_live_client_keeps_more_streams_than_its_share(h2serve_server) -> None:
    """The other side of the squeeze: 4 downloads of 4 MiB on one connection
    (twice max_blocked_threads) read at about 4 MB/s. Their threads wait on the
    socket, two of them past the share, but the socket keeps taking bytes, so
    none is cancelled (before, a thread past the share was cut half a second
    after its first wait however fast the client read)."""
    server = h2serve_server("tests.apps:router", workers=1, threads=4)
    client = H2Client(server.host, server.port, cafile=server.cafile, timeout=10,
                      settings={SettingsFrame.INITIAL_WINDOW_SIZE: 8 * 2**20}).connect()
    client.send_window_update(0, 32 * 2**20)
    size = 4 * 2**20
    streams = [client.request(f"/big?size={size}") for _ in range(4)]
    started = time.monotonic()
    received = 0
    while not all(s in client.ended_streams for s in streams):
        assert time.monotonic() - started < 30, "the downloads did not finish"
        frame = client.read_frame(timeout=5)
        assert frame is not None, "the server sent nothing for 5 s"
        if isinstance(frame, DataFrame):
            received += len(frame.data)
        ahead = received / 4e6 - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    took = time.monotonic() - started
    client.close()
    print(f"4 x 4 MiB at about 4 MB/s: {received / 2**20:.1f} MiB in {took:.1f} s, "
          f"{len(_cancelled(client))} cancelled")
    assert not _cancelled(client), "a live client's stream was cancelled"
    assert received == 4 * size
