"""Dirty IPC without processes: frames split anywhere, bad input refused with a
clear error, app allocation, and the client against a misbehaving peer."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from h2serve.dirty import framing
from h2serve.dirty.app import DirtyApp, allocate
from h2serve.dirty.client import DirtyClient, worker_socket_path
from h2serve.dirty.errors import (
    DirtyAppError,
    DirtyNoWorkersAvailableError,
    DirtyProtocolError,
    DirtyWorkerError,
)
from h2serve.dirty.worker import SlotLine
from h2serve.setting_values import parse_dirty_app_spec as parse_spec


def test_frames_survive_any_split():
    wire = (framing.encode(framing.REQUEST, {"app": "a:B", "args": [1, "x"]})
            + framing.encode(framing.ITEM_BYTES, b"\x00" * 70_000) + framing.encode(framing.END))
    for step in (1, 2, 5, 4096, len(wire)):
        decoder = framing.FrameDecoder()
        frames = []
        for start in range(0, len(wire), step):
            frames += decoder.feed(wire[start:start + step])
        assert [kind for kind, _ in frames] == [framing.REQUEST, framing.ITEM_BYTES, framing.END]
        assert framing.decode_json(frames[0][1]) == {"app": "a:B", "args": [1, "x"]}
        assert frames[1][1] == b"\x00" * 70_000
        assert decoder.pending == 0


def test_oversized_frame_refused_from_its_head():
    decoder = framing.FrameDecoder(max_frame=1000)
    with pytest.raises(DirtyProtocolError, match="over the 1000-byte limit"):
        decoder.feed(framing.HEAD.pack(1001, framing.RESULT))   # refused before any body arrives
    with pytest.raises(DirtyProtocolError, match="over the"):
        framing.encode(framing.RESULT_BYTES, b"x" * (framing.MAX_FRAME + 1))


def test_garbage_refused():
    with pytest.raises(DirtyProtocolError, match="unknown frame type"):
        framing.FrameDecoder().feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(DirtyProtocolError, match="not JSON"):
        framing.decode_json(b"\xff{")


def test_channel_reports_peer_closed_mid_frame():
    a, b = socket.socketpair()
    chan = framing.Channel(a)
    b.sendall(framing.encode(framing.RESULT, [1, 2])[:-1])
    b.close()
    with pytest.raises(framing.PeerClosed, match="mid-frame"):
        chan.recv(2.0)
    chan.close()


def test_channel_timeout_returns_none():
    a, b = socket.socketpair()
    assert framing.Channel(a).recv(0.05) is None
    a.close()
    b.close()


def test_parse_spec_and_allocation():
    assert parse_spec("pkg.mod:App") == ("pkg.mod:App", None)
    assert parse_spec("pkg.mod:App:2") == ("pkg.mod:App", 2)
    for bad in ("nocolon", "m:App:0", "m:App:x", "m:App:1:2", ":App"):
        with pytest.raises(ValueError):
            parse_spec(bad)
    routes = allocate(["tests.dirty_apps:ModelApp", "tests.dirty_apps:LimitedApp",
                       "tests.dirty_apps:ModelApp:2"], 3)
    assert routes["tests.dirty_apps:LimitedApp"] == [0]          # its class says workers = 1
    assert routes["tests.dirty_apps:ModelApp"] == [1, 2]          # the later :2 spec wins the key
    assert allocate(["tests.dirty_apps:ModelApp"], 3)["tests.dirty_apps:ModelApp"] == [0, 1, 2]


def test_dirty_app_dispatch():
    class App(DirtyApp):
        def double(self, x):
            return 2 * x

    app = App()
    assert app("double", 4) == 8
    for bad in ("_private", "init", "close", "missing"):
        with pytest.raises(ValueError, match="unknown action"):
            app(bad)


def _fake_worker(tmp_path, index: int, reply: bytes | None):
    """A listening 'dirty worker' that answers every request with reply (None: close)."""
    (tmp_path / "routes.json").write_text('{"apps": {"m:A": [0]}}')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(worker_socket_path(str(tmp_path), index))
    listener.listen(4)

    def serve():
        conn, _ = listener.accept()
        conn.recv(65536)
        if reply is not None:
            conn.sendall(reply)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("reply, error, message", [
    (b"\x00\x00\x00\x02\x63xx", DirtyProtocolError, "unknown frame type"),
    (framing.HEAD.pack(framing.MAX_FRAME + 1, framing.RESULT), DirtyProtocolError, "limit"),
    (framing.HEAD.pack(5, framing.RESULT) + b"{{{{{", DirtyProtocolError, "not JSON"),
    (None, DirtyWorkerError, "exited while running m:A.act"),
    (framing.encode(framing.ERROR, {"kind": "app", "type": "KeyError", "message": "'k'"}),
     DirtyAppError, "m:A.act raised KeyError"),
])
def test_client_turns_bad_replies_into_clear_errors(tmp_path, reply, error, message):
    listener, thread = _fake_worker(tmp_path, 0, reply)
    client = DirtyClient(str(tmp_path), timeout=3.0)
    with pytest.raises(error, match=message):
        client.execute("m:A", "act", 1)
    thread.join(3)
    listener.close()


def test_no_worker_for_app(tmp_path, monkeypatch):
    monkeypatch.setattr("h2serve.dirty.client.CONNECT_WAIT_S", 0.2)
    (tmp_path / "routes.json").write_text('{"apps": {"m:A": [0]}}')
    with pytest.raises(DirtyNoWorkersAvailableError, match="m:A"):
        DirtyClient(str(tmp_path), timeout=3.0).execute("m:A", "act")


def test_dirty_timeout_zero_means_callers_wait_as_long_as_the_action(tmp_path, monkeypatch):
    monkeypatch.setenv("H2SERVE_DIRTY_TIMEOUT", "0")
    assert DirtyClient(str(tmp_path)).timeout is None
    monkeypatch.setenv("H2SERVE_DIRTY_TIMEOUT", "7.5")
    assert DirtyClient(str(tmp_path)).timeout == 7.5
    monkeypatch.delenv("H2SERVE_DIRTY_TIMEOUT")
    assert DirtyClient(str(tmp_path)).timeout == 30.0


def test_action_slots_go_first_come_first_served():
    """A freed slot goes to the call that waited longest, never to one that
    asked later (queue.Queue let late callers jump the line: tail latency)."""
    line = SlotLine(1)
    first = line.take()
    order: list[str] = []

    def call(name: str) -> None:
        slot = line.take()
        order.append(name)
        line.give(slot)

    waiters = []
    for name in ("b", "c", "d"):
        thread = threading.Thread(target=call, args=(name,))
        thread.start()
        waiters.append(thread)
        deadline = time.monotonic() + 2
        while len(line._waiting) < len(waiters) and time.monotonic() < deadline:
            time.sleep(0.005)
    line.give(first)
    for thread in waiters:
        thread.join(2)
    assert order == ["b", "c", "d"]
    assert line.take() == first    # and the slot is free again
