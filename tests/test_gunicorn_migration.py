"""A Django-style gunicorn.conf.py runs unchanged, found in the current directory
with no -c, and every setting in it takes effect, its hooks included (each
leaves evidence in a file)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, ServerProcess

GUNICORN_CONF = """
import multiprocessing
import os

# As on a PaaS: the platform gives the port.
bind = "0.0.0.0:" + os.environ.get("PORT", "8000")
workers = 2
threads = 3
worker_class = "gthread"
max_requests = 4
max_requests_jitter = 2
accesslog = "access.log"
errorlog = "-"
loglevel = "info"
preload_app = True
raw_env = ["DJANGO_SETTINGS_MODULE=mysite.settings"]
forwarded_allow_ips = "127.0.0.1"
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
plaintext = True   # behind a proxy that terminates TLS
{user_lines}


open("hooks.txt", "a").close()
os.chmod("hooks.txt", 0o666)   # worker_exit runs as the workers' user


def _note(what):
    with open("hooks.txt", "a") as record:
        record.write(what + "\\n")


def when_ready(server):
    _note(f"when_ready {server.pid}")


def post_fork(server, worker):
    import random
    random.seed()   # what real deployments do here: reseed, reconnect clients
    _note(f"post_fork {worker.pid} uid={os.getuid()}")


def worker_exit(server, worker):
    _note(f"worker_exit {worker.pid} uid={os.getuid()}")


def child_exit(server, worker):
    _note(f"child_exit {worker.pid}")
"""

DJANGO_LIKE_APP = """
import os

IMPORTED_IN = os.getpid()
with open("imports.txt", "a") as record:
    record.write(f"{IMPORTED_IN}\\n")


def application(environ, start_response):
    body = repr((os.environ.get("DJANGO_SETTINGS_MODULE"), environ["wsgi.url_scheme"],
                 os.getpid(), os.getuid(), IMPORTED_IN)).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_gunicorn_deployment_runs_unchanged():
    site = Path(tempfile.mkdtemp(prefix="h2serve-site-"))
    site.chmod(0o777 if os.geteuid() == 0 else 0o755)   # nobody writes its access log here
    as_root = os.geteuid() == 0
    (site / "gunicorn.conf.py").write_text(GUNICORN_CONF.replace(
        "{user_lines}", 'user = "nobody"\ngroup = "nogroup"' if as_root else ""))
    (site / "mysite_wsgi.py").write_text(textwrap.dedent(DJANGO_LIKE_APP))
    port = _free_port()
    environ = {**os.environ, "PYTHONPATH": f"{ROOT}:{site}", "PORT": str(port)}
    environ.pop("GUNICORN_CMD_ARGS", None)
    environ.pop("H2SERVE_CMD_ARGS", None)
    server = ServerProcess([sys.executable, "-m", "h2serve", "mysite_wsgi:application"],
                           environ, None, tls=False, cwd=site)
    try:
        server.wait_for_log(r"Booting worker with pid", count=2)
        log = server.log
        assert "reading ./gunicorn.conf.py" in log
        assert re.search(rf"Listening at: http://0\.0\.0\.0:{port}", log), log
        assert "(2 workers x 3 threads, plaintext)" in log
        assert "warning" not in log.lower(), log            # nothing refused, nothing ignored
        answers = []
        with httpx.Client(timeout=10) as client:
            for _ in range(14):   # > 2 workers x (4 + 2): some worker must have retired
                response = client.get(f"http://127.0.0.1:{port}/",
                                      headers={"X-Forwarded-Proto": "https", "Connection": "close"})
                answers.append(eval(response.text))   # a tuple of literals from our own app
        settings_module, scheme, _pid, uid, imported_in = answers[0]
        assert settings_module == "mysite.settings" and scheme == "https"
        assert {answer[4] for answer in answers} == {server.proc.pid}   # preload: master's import
        assert (site / "imports.txt").read_text().split() == [str(server.proc.pid)]
        assert uid == (65534 if as_root else os.getuid())
        deadline = time.monotonic() + 10
        while "max_requests" not in server.log and time.monotonic() < deadline:
            time.sleep(0.1)
        assert re.search(r"max_requests \([4-6]\) reached", server.log), server.log
        server.wait_for_log(r"Booting worker with pid", count=3)   # a retiree's replacement
        lines = (site / "access.log").read_text().splitlines()
        assert len(lines) >= 13 and '"GET / HTTP/1.1" 200' in lines[0]
        assert server.stop(signal.SIGTERM) == 0
        hooks = (site / "hooks.txt").read_text().split("\n")
        assert hooks[0] == f"when_ready {server.proc.pid}"
        forked = {line.split()[1] for line in hooks if line.startswith("post_fork")}
        assert len(forked) >= 3                  # two workers, and the replacements of retirees
        # post_fork runs before the user switch (as in gunicorn), worker_exit after it.
        assert all(line.endswith(f"uid={os.getuid()}") for line in hooks if line.startswith("post_fork"))
        worker_uid = 65534 if as_root else os.getuid()
        exited = {line.split()[1] for line in hooks if line.startswith("worker_exit")}
        assert all(line.endswith(f"uid={worker_uid}") for line in hooks if line.startswith("worker_exit"))
        assert exited == forked
        # child_exit names every worker that ran post_fork, and may also name a
        # replacement the stop cut off before its post_fork ran.
        assert forked <= {line.split()[1] for line in hooks if line.startswith("child_exit")}
    finally:
        server.stop(signal.SIGTERM)
        for child in site.iterdir():
            child.unlink() if child.is_file() else None
