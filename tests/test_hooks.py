"""gunicorn's server hooks, from a config file, against a real server: each
leaves evidence (a JSON line in a file) at its call point, with what hook
code reads from server, worker, req and resp."""

from __future__ import annotations

import json
import signal
import ssl
import time
from pathlib import Path

import httpx
import pytest

from h2serve.config import Config, ConfigError
from tests.conftest import start_expecting_exit

HOOKS_CONF = '''
import json, os
EVIDENCE = os.environ["HOOK_EVIDENCE"]

def _note(*parts):
    with open(EVIDENCE, "a") as out:
        out.write(json.dumps(parts) + "\\n")

def on_starting(server): _note("on_starting", server.pid, server.cfg.workers)
def when_ready(server): _note("when_ready", server.pid, server.proc_name, len(server.WORKERS))
def pre_fork(server, worker): _note("pre_fork", worker.pid, worker.age)
def post_fork(server, worker): _note("post_fork", worker.pid, os.getpid(), worker.age)
def post_worker_init(worker): _note("post_worker_init", worker.pid, worker.alive, callable(worker.app))
def pre_request(worker, req):
    _note("pre_request", worker.pid, req.method, req.path, req.query, list(req.version),
          dict(req.headers).get("X-TRACE"))
def post_request(worker, req, environ, resp):
    _note("post_request", worker.pid, req.path, resp.status_code, environ["REQUEST_METHOD"], worker.nr)
def worker_int(worker): _note("worker_int", worker.pid)
def worker_abort(worker): _note("worker_abort", worker.pid)
def child_exit(server, worker): _note("child_exit", worker.pid, server.pid)
def worker_exit(server, worker): _note("worker_exit", worker.pid, os.getpid(), worker.alive)
def nworkers_changed(server, new_value, old_value): _note("nworkers_changed", new_value, old_value)
def on_reload(server): _note("on_reload", server.pid)
def on_exit(server): _note("on_exit", server.pid)
'''


def _evidence(path: Path) -> list[list]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(path: Path, predicate, timeout: float = 15.0) -> list[list]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notes = _evidence(path)
        if predicate(notes):
            return notes
        time.sleep(0.1)
    raise AssertionError(f"hooks never got there; evidence so far: {_evidence(path)}")


def _names(notes: list[list], name: str) -> list[list]:
    return [note for note in notes if note[0] == name]


def _start(h2serve_server, tmp_path: Path, conf_text: str, *extra: str, workers: int = 2, **kw):
    conf = tmp_path / "hooks.conf.py"
    conf.write_text(conf_text)
    evidence = tmp_path / "evidence.jsonl"
    server = h2serve_server("tests.apps:router", "-c", str(conf), *extra, workers=workers,
                            env={"HOOK_EVIDENCE": str(evidence)}, **kw)
    return server, evidence


def test_each_hook_runs_at_gunicorns_point_with_what_hook_code_reads(h2serve_server, tmp_path):
    server, evidence = _start(h2serve_server, tmp_path, HOOKS_CONF)
    master = server.proc.pid
    notes = _wait_for(evidence, lambda n: len(_names(n, "post_worker_init")) == 2)
    assert notes[0] == ["on_starting", master, 2]
    assert notes[1] == ["when_ready", master, "h2serve", 0]          # before any worker
    assert [n[1:] for n in _names(notes, "pre_fork")] == [[None, 1], [None, 2]]
    forked = _names(notes, "post_fork")
    assert sorted(n[3] for n in forked) == [1, 2] and all(n[1] == n[2] for n in forked)
    assert sorted(n[1] for n in _names(notes, "post_worker_init")) == sorted(server.worker_pids())
    assert all(n[2:] == [True, True] for n in _names(notes, "post_worker_init"))

    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=server.cafile)) as client:
        assert client.get(f"{server.url}/hello?x=1", headers={"x-trace": "t1"}).status_code == 200
    with httpx.Client(http2=False, verify=ssl.create_default_context(cafile=server.cafile)) as client:
        assert client.post(f"{server.url}/echo", content=b"abc").status_code == 200
    notes = _wait_for(evidence, lambda n: len(_names(n, "post_request")) == 2)
    pre, post = _names(notes, "pre_request"), _names(notes, "post_request")
    assert pre[0][2:] == ["GET", "/hello", "x=1", [2, 0], "t1"]
    assert pre[1][2:] == ["POST", "/echo", "", [1, 1], None]
    assert [p[2:5] for p in post] == [["/hello", 200, "GET"], ["/echo", 200, "POST"]]
    assert all(isinstance(p[5], int) and p[5] >= 0 for p in post)     # worker.nr: requests done

    server.send_signal(signal.SIGTTIN)
    notes = _wait_for(evidence, lambda n: len(_names(n, "post_worker_init")) == 3)
    assert _names(notes, "nworkers_changed") == [["nworkers_changed", 3, 2]]
    assert _names(notes, "pre_fork")[-1][2] == 3

    worker = server.worker_pids()[0]
    import os
    os.kill(worker, signal.SIGQUIT)
    notes = _wait_for(evidence, lambda n: ["child_exit", worker, master] in n)
    assert ["worker_int", worker] in notes
    assert ["worker_exit", worker, worker, False] in notes
    assert notes.index(["worker_int", worker]) < notes.index(["child_exit", worker, master])

    server.send_signal(signal.SIGHUP)
    notes = _wait_for(evidence, lambda n: _names(n, "on_reload"))
    assert server.stop() == 0
    notes = _evidence(evidence)
    assert notes[-1] == ["on_exit", master]
    # Every worker that started also exited, in the worker and then in the master.
    started = {n[1] for n in _names(notes, "post_fork")}
    assert {n[1] for n in _names(notes, "worker_exit")} == started
    assert {n[1] for n in _names(notes, "child_exit")} == started
    assert "Exception in" not in server.log


def test_worker_abort_runs_on_sigabrt_and_the_worker_is_replaced(h2serve_server, tmp_path):
    server, evidence = _start(h2serve_server, tmp_path, HOOKS_CONF, workers=1)
    _wait_for(evidence, lambda n: _names(n, "post_worker_init"))
    worker = server.worker_pids()[0]
    import os
    os.kill(worker, signal.SIGABRT)
    notes = _wait_for(evidence, lambda n: len(_names(n, "post_worker_init")) == 2)
    assert ["worker_abort", worker] in notes and ["worker_exit", worker, worker, False] in notes
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=server.cafile)) as client:
        assert client.get(f"{server.url}/hello").status_code == 200


FAILING_REQUEST_HOOKS = '''
def pre_request(worker, req):
    if req.path == "/hello":
        raise RuntimeError("pre_request says no")
def post_request(worker, req, environ, resp):
    raise ValueError("post_request\\x1b[31m broke")
'''


@pytest.mark.parametrize("http2", [True, False])
def test_pre_request_raising_is_a_500_and_post_request_raising_is_only_logged(
        h2serve_server, tmp_path, http2):
    server, _ = _start(h2serve_server, tmp_path, FAILING_REQUEST_HOOKS, workers=1)
    with httpx.Client(http2=http2, verify=ssl.create_default_context(cafile=server.cafile)) as client:
        assert client.get(f"{server.url}/hello").status_code == 500
        answered = client.get(f"{server.url}/echo?fine")
        assert answered.status_code == 200
    server.wait_for_log(r"RuntimeError: pre_request says no")
    server.wait_for_log(r"Exception in post_request hook", count=2)
    assert "\x1b[31m" not in server.log     # the traceback is escaped as every log line is
    assert server.proc.poll() is None


def test_a_failing_master_hook_stops_the_server_with_its_traceback(h2serve_server, tmp_path):
    done = start_expecting_exit("def on_starting(server):\n    raise RuntimeError('no database')\n",
                                tmp_path)
    assert done.returncode == 1
    assert "Exception in on_starting hook" in done.stderr and "Traceback" in done.stderr
    assert "h2serve: error: the on_starting hook raised RuntimeError: no database" in done.stderr


def test_a_failing_post_fork_fails_the_workers_boot(h2serve_server, tmp_path):
    done = start_expecting_exit(
        "def post_fork(server, worker):\n    raise OSError('no socket to the cache')\n", tmp_path)
    assert done.returncode == 3
    assert "Exception in post_fork hook" in done.stderr
    assert "Reason: Worker failed to boot." in done.stderr


def test_ssl_context_hook_gets_the_default_factory(h2serve_server, tmp_path):
    conf = ('import ssl\n'
            'def ssl_context(config, default_ssl_context_factory):\n'
            '    context = default_ssl_context_factory()\n'
            '    context.minimum_version = ssl.TLSVersion.TLSv1_3\n'
            '    return context\n')
    server, _ = _start(h2serve_server, tmp_path, conf, workers=1)
    tls12 = ssl.create_default_context(cafile=server.cafile)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=tls12) as client:
        client.get(f"{server.url}/hello")
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=server.cafile)) as client:
        answer = client.get(f"{server.url}/hello")
    assert answer.status_code == 200 and answer.http_version == "HTTP/2"


def test_hooks_are_checked_when_the_config_is_read():
    with pytest.raises(ConfigError, match="post_fork.*2 positional arguments"):
        Config(post_fork=lambda server: None)
    with pytest.raises(ConfigError, match="when_ready.*must be callable"):
        Config(when_ready=3)
    assert Config(worker_exit="os.path.join").worker_exit is __import__("os").path.join
