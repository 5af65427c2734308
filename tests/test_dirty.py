"""Dirty arbiters against a real server: a stateful app loaded once, per-app
allocation, streams over HTTP/2 (httpx, curl), errors, a dirty worker killed
mid-call, a hung action past dirty_timeout, back-pressure and cancellation,
hooks and signals. tests/dirty_apps.py holds the app and the views."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame

from tests.conftest import require_tool
from tests.h2client import H2Client

MODEL = "tests.dirty_apps:ModelApp"
LIMITED = "tests.dirty_apps:LimitedApp"

HOOKS_CONF = '''
import json, os
def _note(*parts):
    with open(os.path.join(os.environ["DIRTY_EVIDENCE"], "hooks"), "a") as out:
        out.write(json.dumps(parts) + "\\n")
dirty_apps = ["tests.dirty_apps:ModelApp", "tests.dirty_apps:LimitedApp"]
dirty_workers = 2
def on_dirty_starting(arbiter): _note("on_dirty_starting", arbiter.pid)
def dirty_post_fork(arbiter, worker): _note("dirty_post_fork", worker.pid, worker.app_paths)
def dirty_worker_init(worker): _note("dirty_worker_init", worker.pid, sorted(worker.apps))
def dirty_worker_exit(arbiter, worker): _note("dirty_worker_exit", worker.pid)
'''


def _start(h2serve_server, tmp_path: Path, *extra: str, dirty_workers: int = 2, workers: int = 2,
           dirty_apps: tuple[str, ...] = (MODEL, LIMITED)):
    evidence = tmp_path / "evidence"
    evidence.mkdir(exist_ok=True)
    args = [f"--dirty-workers={dirty_workers}", *(f"--dirty-app={a}" for a in dirty_apps), *extra]
    server = h2serve_server("tests.dirty_apps:router", *args, workers=workers,
                            env={"DIRTY_EVIDENCE": str(evidence)})
    server.wait_for_log(r"Dirty worker \d+ \(pid:\d+\) serving", count=dirty_workers)
    return server, evidence


def _dirty_pids(server) -> dict[int, int]:
    """Dirty worker index -> pid of its latest boot."""
    pids: dict[int, int] = {}
    for match in server.wait_for_log(r"Dirty worker (\d+) \(pid:(\d+)\) serving", count=0):
        pids[int(match.group(1))] = int(match.group(2))
    return pids


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _client(server) -> httpx.Client:
    return httpx.Client(http2=True, verify=server.cafile, timeout=20.0)


def test_stateful_app_loaded_once_shared_by_http_workers(h2serve_server, tmp_path):
    server, evidence = _start(h2serve_server, tmp_path)
    results: list[tuple[int, dict]] = []

    def call(i: int) -> None:
        with _client(server) as client:   # a connection each: both HTTP workers take some
            for x in range(10):
                response = client.get(f"{server.url}/predict?x={i * 10 + x}")
                results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 60
    assert all(status == 200 for status, _ in results)
    assert sorted(body["y"] for _, body in results) == sorted(n * n for n in range(60))
    dirty = set(_dirty_pids(server).values())
    assert {body["pid"] for _, body in results} == dirty           # both dirty workers served
    loads = _lines(evidence / "loads")
    assert sorted(line.split()[0] for line in loads) == ["limited", "model", "model"]   # once each


def test_per_app_allocation_and_round_robin(h2serve_server, tmp_path):
    server, evidence = _start(h2serve_server, tmp_path, dirty_workers=3, workers=1)
    pids = _dirty_pids(server)
    with _client(server) as client:
        limited = {client.get(f"{server.url}/pid?app=limited").json() for _ in range(6)}
        model = [client.get(f"{server.url}/pid").json() for _ in range(6)]
    assert len(limited) == 1 and limited <= set(pids.values())       # workers = 1 on the class
    assert set(model) == set(pids.values())                           # all three, in turn
    assert model[:3] != model[3:6] or len(set(model[:3])) == 3
    assert len([line for line in _lines(evidence / "loads") if line.startswith("limited")]) == 1


def test_stream_over_http2_with_httpx_and_curl(h2serve_server, tmp_path):
    server, _ = _start(h2serve_server, tmp_path, workers=1)
    expected = b"".join(f"token-{i:06d}-".encode() + b"t" * 16 + b"\n" for i in range(50))
    with _client(server) as client, client.stream("GET", f"{server.url}/stream?n=50") as response:
        assert response.http_version == "HTTP/2"
        assert b"".join(response.iter_bytes()) == expected
    curl = require_tool("curl")
    out = subprocess.run([curl, "-sS", "--http2", "--cacert", server.cafile, "-w", "\n%{http_version}",
                          f"{server.url}/stream?n=50"], capture_output=True, timeout=20)
    body, _, version = out.stdout.rpartition(b"\n")
    assert version == b"2" and body == expected
    out = subprocess.run([curl, "-sS", "--http1.1", "--cacert", server.cafile, "-D", "-",
                          f"{server.url}/stream?n=50"], capture_output=True, timeout=20)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower() and body == expected   # HTTP/1.1 too


def test_action_that_raises_names_app_and_action(h2serve_server, tmp_path):
    server, _ = _start(h2serve_server, tmp_path, workers=1, dirty_workers=1)
    with _client(server) as client:
        response = client.get(f"{server.url}/boom")
        assert response.status_code == 500
        assert response.text.strip() == (f"DirtyAppError: {MODEL}.boom raised ValueError: bad input 42")
        assert client.get(f"{server.url}/predict?x=4").json()["y"] == 16   # the worker lives on


def test_hooks_and_private_socket_directory(h2serve_server, tmp_path):
    conf = tmp_path / "dirty.conf.py"
    conf.write_text(HOOKS_CONF)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    server = h2serve_server("tests.dirty_apps:router", "-c", str(conf), workers=1,
                            env={"DIRTY_EVIDENCE": str(evidence)})
    server.wait_for_log(r"Dirty worker \d+ \(pid:\d+\) serving", count=2)
    directory = Path(server.wait_for_log(r"sockets in (\S+)")[0].group(1))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    sockets = sorted(directory.glob("w*.sock"))
    assert [p.name for p in sockets] == ["w0.sock", "w1.sock"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in sockets)
    with _client(server) as client:
        assert client.get(f"{server.url}/pid?app=limited").status_code == 200
    assert server.stop(signal.SIGTERM) == 0
    assert not directory.exists()
    notes = [json.loads(line) for line in _lines(evidence / "hooks")]
    names = [note[0] for note in notes]
    assert names.count("on_dirty_starting") == 1
    assert names.count("dirty_post_fork") == 2 and names.count("dirty_worker_init") == 2
    assert names.count("dirty_worker_exit") == 2
    inits = sorted(note[2] for note in notes if note[0] == "dirty_worker_init")
    assert inits == [[LIMITED, MODEL], [MODEL]]


@pytest.mark.slow
def test_dirty_worker_killed_mid_call_fails_fast_then_respawns(h2serve_server, tmp_path):
    server, _ = _start(h2serve_server, tmp_path, workers=1, dirty_workers=1)
    old = _dirty_pids(server)[0]
    outcome: dict = {}

    def slow_call() -> None:
        with _client(server) as client:
            outcome["response"] = client.get(f"{server.url}/sleep?s=15")
            outcome["at"] = time.monotonic()

    thread = threading.Thread(target=slow_call)
    thread.start()
    time.sleep(1.0)
    killed_at = time.monotonic()
    os.kill(old, signal.SIGKILL)
    thread.join(10)
    response = outcome["response"]
    assert response.status_code == 502
    assert "DirtyWorkerError" in response.text and f"{MODEL}.sleep" in response.text
    assert outcome["at"] - killed_at < 2.0                      # fast, not at a timeout
    with _client(server) as client:
        again = client.get(f"{server.url}/pid")                   # waits for the respawn
    assert again.status_code == 200 and again.json() != old
    server.wait_for_log(rf"Dirty worker 0 \(pid:{old}\) was killed by SIGKILL")


@pytest.mark.slow
def test_hung_action_killed_at_dirty_timeout(h2serve_server, tmp_path):
    server, evidence = _start(h2serve_server, tmp_path, "--dirty-timeout=2", workers=1,
                              dirty_workers=1)
    old = _dirty_pids(server)[0]
    started = time.monotonic()
    with _client(server) as client:
        response = client.get(f"{server.url}/hang")
        took = time.monotonic() - started
        assert response.status_code == 504 and "DirtyTimeoutError" in response.text
        assert 1.8 < took < 5.0
        server.wait_for_log(rf"DIRTY WORKER TIMEOUT \(pid:{old}\)", timeout=5)
        server.wait_for_log(r"Dirty worker 0 \(pid:\d+\) serving", count=2, timeout=10)
        assert client.get(f"{server.url}/pid").json() not in (old,)
    loads = [line.split() for line in _lines(evidence / "loads")]
    assert sorted(name for name, _ in loads) == ["limited", "limited", "model", "model"]
    assert {int(pid) for _, pid in loads[2:]} == {_dirty_pids(server)[0]} != {old}   # reloaded


@pytest.mark.slow
def test_slow_reader_back_pressure_and_reset_stops_generator(h2serve_server, tmp_path):
    server, evidence = _start(h2serve_server, tmp_path, workers=1, dirty_workers=1,
                              dirty_apps=(MODEL,))
    client = H2Client(server.host, server.port, cafile=server.cafile, auto_window=False,
                      settings={SettingsFrame.INITIAL_WINDOW_SIZE: 2048}, timeout=10).connect()
    try:
        stream_id = client.request("/stream?n=100000&size=1000")
        client.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == stream_id,
                        what="the response head")
        time.sleep(2.0)        # the client reads nothing more: its window stays closed
        produced = len(_lines(evidence / "produced"))
        assert produced < 60, f"{produced} items produced for a reader taking ~2"
        time.sleep(1.0)
        assert len(_lines(evidence / "produced")) == produced      # paused, not growing
        received = sum(len(f.data) for f in client.frames_on(stream_id, DataFrame))
        assert received <= 2048
        client.send_rst(stream_id)
        deadline = time.monotonic() + 5
        while not _lines(evidence / "stopped") and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped = _lines(evidence / "stopped")
        assert stopped and int(stopped[0]) == len(_lines(evidence / "produced")) < 60
    finally:
        client.close()
    with _client(server) as http:
        assert http.get(f"{server.url}/predict?x=5").json()["y"] == 25    # worker free again


@pytest.mark.slow
def test_hup_restarts_dirty_workers_and_term_stops_cleanly(h2serve_server, tmp_path):
    server, evidence = _start(h2serve_server, tmp_path, workers=1, dirty_workers=1)
    old = _dirty_pids(server)[0]
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Dirty worker 0 \(pid:\d+\) serving", count=2, timeout=15)
    new = _dirty_pids(server)[0]
    assert new != old
    with _client(server) as client:
        assert client.get(f"{server.url}/pid").json() == new
    server.send_signal(signal.SIGUSR1)
    assert server.stop(signal.SIGTERM) == 0
    assert re.search(r"Dirty arbiter \(pid:\d+\) exiting", server.log)
    for pid in (old, new):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_unsendable_stream_item_ends_the_call_and_the_connection_stays_usable(h2serve_server,
                                                                               tmp_path):
    """An item the worker cannot encode ends the stream with an error; the
    worker no longer sends the rest on the pooled connection, where the next
    call would have read them as its answer."""
    server, _ = _start(h2serve_server, tmp_path, workers=1, dirty_workers=1,
                       dirty_apps=(MODEL,))
    with _client(server) as client:
        for _ in range(3):
            response = client.get(f"{server.url}/mixed")
            assert response.status_code == 500 and "result cannot be sent" in response.text
            assert client.get(f"{server.url}/predict?x=7").json()["y"] == 49


@pytest.mark.slow
def test_hup_gives_running_actions_dirty_graceful_timeout_then_kills(h2serve_server, tmp_path):
    server, _ = _start(h2serve_server, tmp_path, "--dirty-graceful-timeout=2", workers=1,
                       dirty_workers=1, dirty_apps=(MODEL,))
    old = _dirty_pids(server)[0]
    outcome: dict = {}

    def long_call() -> None:
        # HTTP/1.1: the HUP's GOAWAY to HTTP/2 connections makes httpx fail
        # requests still running, though the server goes on serving them.
        with httpx.Client(verify=server.cafile, timeout=20.0) as client:
            try:
                outcome["response"] = client.get(f"{server.url}/sleep?s=20")
            except Exception as exc:
                outcome["response"] = exc

    thread = threading.Thread(target=long_call)
    thread.start()
    time.sleep(1.0)
    hup_at = time.monotonic()
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(rf"Dirty worker 0 \(pid:{old}\) still running 2 s after a reload",
                        timeout=6)
    thread.join(5)
    assert time.monotonic() - hup_at < 6
    assert getattr(outcome["response"], "status_code", outcome) == 502   # the caller hears at once
    with _client(server) as client:
        assert client.get(f"{server.url}/pid").json() != old


@pytest.mark.slow
def test_calls_whose_callers_gave_up_while_queued_are_not_run(h2serve_server, tmp_path):
    """Overload: one dirty slot, six 1.5 s calls, callers giving up at 2 s.
    The calls still queued when their callers left are dropped, so a call
    made next waits for the running action only, not for four abandoned ones."""
    server, _ = _start(h2serve_server, tmp_path, "--dirty-timeout=2", "--threads=8", workers=1,
                       dirty_workers=1, dirty_apps=(MODEL,))
    statuses: list[int] = []

    def call() -> None:
        with httpx.Client(verify=server.cafile, timeout=20.0) as client:
            statuses.append(client.get(f"{server.url}/sleep?s=1.5").status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(statuses) == [200] + [504] * 5
    started = time.monotonic()
    with _client(server) as client:
        assert client.get(f"{server.url}/predict?x=2").json()["y"] == 4
    assert time.monotonic() - started < 1.5     # behind the one running action at most
    assert len(server.wait_for_log(r"dropped, its caller left while it waited", count=0)) >= 3
