"""gunicorn's process and proxy settings, through the real `h2serve` command:
raw_env, pythonpath, worker_tmp_dir, root_path, secure_scheme_headers,
forwarder_headers, user/group (as root), daemon with
capture_output, and the development-certificate warning."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, ServerProcess

# An app that needs nothing imported after fork (it may run as nobody, who cannot
# read a Python installed under /root) and shows what the process settings did.
ENV_APP = '''
import os

def app(environ, start_response):
    print("PRINTED-BY-APP", flush=True)
    body = repr({
        "marker": os.environ.get("H2SERVE_TEST_MARKER"),
        "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
        "umask": os.umask(0o022),
        "script_name": environ.get("SCRIPT_NAME"), "path_info": environ.get("PATH_INFO"),
        "scheme": environ["wsgi.url_scheme"], "remote_user": environ.get("REMOTE_USER"),
        "remote_addr": environ.get("REMOTE_ADDR"),
        "tainted": environ.get("HTTP_REMOTE_USER"),
    }).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


@pytest.fixture
def app_dir():
    """A directory any user can read (tmp_path is root's alone), holding envapp.py."""
    directory = Path(tempfile.mkdtemp(prefix="h2serve-envapp-"))
    directory.chmod(0o755)
    (directory / "envapp.py").write_text(ENV_APP)
    (directory / "envapp.py").chmod(0o644)
    yield directory
    for child in directory.iterdir():
        child.unlink()   # envapp.py and, after some tests, access logs
    directory.rmdir()


def _get(server, path: str, **headers: str) -> dict:
    response = httpx.get(f"http://127.0.0.1:{server.port}{path}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    import ast

    return ast.literal_eval(response.text)


def test_raw_env_pythonpath_tmp_dir_root_path_and_proxy_headers(h2serve_server, app_dir, tmp_path):
    heartbeat_dir = tmp_path / "hb"
    heartbeat_dir.mkdir()
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(textwrap.dedent("""
        raw_env = ["H2SERVE_TEST_MARKER=from-raw-env"]
        secure_scheme_headers = {"X-Forwarded-Ssl": "on"}
        forwarder_headers = "SCRIPT_NAME,REMOTE_USER"
    """))
    server = h2serve_server("envapp:app", "-c", str(conf), "--pythonpath", str(app_dir),
                            "--worker-tmp-dir", str(heartbeat_dir), "--root-path", "/api",
                            plaintext=True)
    seen = _get(server, "/api/items")
    assert seen["marker"] == "from-raw-env"
    assert (seen["script_name"], seen["path_info"]) == ("/api", "/items")
    assert seen["scheme"] == "http"
    # Only the configured header says HTTPS now; X-Forwarded-Proto is no longer listed.
    assert _get(server, "/api/", **{"X-Forwarded-Ssl": "on"})["scheme"] == "https"
    assert _get(server, "/api/", **{"X-Forwarded-Proto": "https"})["scheme"] == "http"
    assert _get(server, "/api/", **{"X-Forwarded-Ssl": "off"})["scheme"] == "http"
    # A trusted proxy's SCRIPT_NAME header replaces --root-path; REMOTE_USER comes through.
    proxied = _get(server, "/mount/x", script_name="/mount", remote_user="alice")
    assert (proxied["script_name"], proxied["path_info"]) == ("/mount", "/x")
    assert proxied["remote_user"] == "alice" and proxied["tainted"] is None
    # The heartbeat file is where --worker-tmp-dir says.
    worker = server.worker_pids()[0]
    targets = [os.readlink(f"/proc/{worker}/fd/{fd}") for fd in os.listdir(f"/proc/{worker}/fd")]
    assert any(target.startswith(str(heartbeat_dir)) for target in targets), targets


def _require_root() -> None:
    if os.geteuid() != 0:
        message = "privilege drop needs root (CI runs as root)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


def test_workers_switch_user_and_group_before_importing_the_app(h2serve_server, app_dir):
    _require_root()
    access_log = app_dir / "access.log"
    server = h2serve_server("envapp:app", "--pythonpath", str(app_dir), "--user", "nobody",
                            "--group", "nogroup", "--umask", "027", "--access-logfile",
                            str(access_log), plaintext=True)
    seen = _get(server, "/")
    assert (seen["uid"], seen["gid"], seen["groups"]) == (65534, 65534, [65534])
    assert seen["umask"] == 0o027
    master = server.proc.pid
    assert os.stat(f"/proc/{master}").st_uid == 0          # the master stays root
    assert os.stat(f"/proc/{server.worker_pids()[0]}").st_uid == 65534
    # Log rotation: the master reopens as root and gives the new file to the workers' user.
    access_log.rename(app_dir / "access.log.1")
    server.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not access_log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)   # the worker reopens on its next poller turn
    _get(server, "/after-rotation")
    deadline = time.monotonic() + 10
    while "after-rotation" not in access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "after-rotation" in access_log.read_text()
    assert access_log.stat().st_uid == 65534


def test_a_switch_that_cannot_happen_stops_the_start(app_dir):
    _require_root()
    # Run h2serve as nobody and ask it to become root: refused before anything starts.
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "h2serve", "--plaintext", "--user", "root", "--check-config",
             "--pythonpath", str(app_dir), "envapp:app"],
            env=environ, cwd=str(app_dir), capture_output=True, text=True, timeout=30,
            user=65534, group=65534, extra_groups=[])
    except PermissionError as exc:
        pytest.skip(f"nobody cannot run this Python ({exc}); the refusal is checked in "
                    "test_a_switch_is_refused_when_not_root")
    if "Permission denied" in done.stderr and "h2serve: error" not in done.stderr:
        pytest.skip(f"python is not readable by nobody here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 2, done.stderr
    assert "cannot switch to user 0" in done.stderr and "Traceback" not in done.stderr


def test_daemon_detaches_and_capture_output_fills_the_error_log(app_dir, tmp_path):
    log_file, pid_file = tmp_path / "error.log", tmp_path / "h2serve.pid"
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "h2serve", "-D", "--plaintext", "-b", "127.0.0.1:0",
         "--pid", str(pid_file), "--error-logfile", str(log_file), "--capture-output",
         "--pythonpath", str(app_dir), "envapp:app"],
        env=environ, cwd=str(tmp_path), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr      # the command returns: the server detached
    pid = None
    try:
        deadline = started + 20
        port = None
        while time.monotonic() < deadline and port is None:
            text = log_file.read_text() if log_file.exists() else ""
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            if match and "Booting worker" in text and pid_file.exists():
                port = int(match.group(1))
            time.sleep(0.1)
        assert port, log_file.read_text() if log_file.exists() else "no log"
        pid = int(pid_file.read_text())
        assert os.getsid(pid) != os.getsid(0)    # a session of its own: no terminal
        httpx.get(f"http://127.0.0.1:{port}/", timeout=10).raise_for_status()
        deadline = time.monotonic() + 10
        while "PRINTED-BY-APP" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "PRINTED-BY-APP" in log_file.read_text()
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)


def test_development_certificate_on_a_public_address_is_warned_about(tmp_path):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "H2SERVE_CERT_DIR": str(tmp_path / "dev")}
    server = ServerProcess([sys.executable, "-m", "h2serve", "-b", "0.0.0.0:0", "-b", "127.0.0.1:0",
                            "tests.apps:hello"], environ, None, tls=True)
    try:
        server.wait_for_log(r"Booting worker")
        warnings = re.findall(r"development certificate is served on (\S+),", server.log)
        assert len(warnings) == 1 and warnings[0].startswith("0.0.0.0:"), server.log
    finally:
        server.stop(signal.SIGTERM)


def test_unwritable_heartbeat_dir_is_a_config_error():
    done = subprocess.run([sys.executable, "-m", "h2serve", "--worker-tmp-dir", "/nonexistent/x",
                           "app:app"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == ("h2serve: error: --worker-tmp-dir: directory not found: "
                                   "/nonexistent/x")
    assert stat.S_ISDIR(os.stat("/").st_mode)


def test_a_switch_is_refused_when_not_root(monkeypatch):
    """The start-up check itself, for machines where nobody cannot run Python."""
    from h2serve.config import Config
    from h2serve.process import ProcessSetupError, check_can_switch

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1000)
    with pytest.raises(ProcessSetupError, match="cannot switch to user 0: h2serve runs as uid 1000"):
        check_can_switch(Config(user="0"))
    check_can_switch(Config(user="1000", group=1000))   # already them: nothing to do


def _h2serve(*args: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "h2serve", *args],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=str(cwd or ROOT),
                          capture_output=True, text=True, timeout=timeout)


def test_check_config_refuses_a_key_of_another_certificate(dev_certs, tmp_path):
    from h2serve.transport.devcert import write_certificates

    other = write_certificates(tmp_path / "other")
    done = _h2serve("--check-config", "--certfile", str(dev_certs.cert), "--keyfile",
                    str(other.key), "tests.apps:hello")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"h2serve: error: --keyfile {other.key} is not the key of "
                                   f"--certfile {dev_certs.cert}")


def test_check_config_refuses_a_bind_that_does_not_resolve():
    done = _h2serve("--check-config", "--plaintext", "-b", "no-such-host.invalid:8000",
                    "tests.apps:hello")
    assert done.returncode == 2
    assert done.stderr.startswith("h2serve: error: --bind no-such-host.invalid:8000: cannot resolve")
    assert done.stderr.count("\n") == 1


def test_an_unwritable_pidfile_is_one_line_and_leaves_no_temporary_file(tmp_path):
    pidfile = tmp_path / "run"
    pidfile.mkdir()            # a directory where the file should go: rename fails
    done = _h2serve("--plaintext", "-b", "127.0.0.1:0", "--pid", str(pidfile), "tests.apps:hello")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"h2serve: error: cannot write the pidfile {pidfile}: Is a directory"], done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_import_error_names_the_file_and_line(tmp_path):
    (tmp_path / "brokensettings.py").write_text("ENV = {}\n\nDEBUG = ENV['DJANGO_DEBUG']\n")
    done = _h2serve("--check-config", "brokensettings:app", cwd=tmp_path)
    assert done.returncode == 2
    assert f"KeyError: 'DJANGO_DEBUG' ({tmp_path / 'brokensettings.py'}:3)" in done.stderr


def test_preload_imports_the_app_once_in_the_master(h2serve_server, tmp_path):
    record = tmp_path / "imports.txt"
    (tmp_path / "countedapp.py").write_text(textwrap.dedent(f"""
        import os
        with open({str(record)!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [str(os.getpid()).encode()]
    """))
    server = h2serve_server("countedapp:app", "--preload", "--pythonpath", str(tmp_path),
                            workers=2, plaintext=True)
    response = httpx.get(f"http://127.0.0.1:{server.port}/", timeout=10)
    assert int(response.text) in server.worker_pids()
    assert record.read_text().split() == [str(server.proc.pid)]   # once, in the master


DIRTY_IDS_APP = """
import json, os
from h2serve.dirty import DirtyApp, get_dirty_client

class Ids(DirtyApp):
    def ids(self):
        return [os.getuid(), os.getgid()]

def app(environ, start_response):
    ids = get_dirty_client().execute("dirtyids:Ids", "ids")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr({"dirty": ids, "http": [os.getuid(), os.getgid()]}).encode()]
"""


def test_dirty_workers_switch_user_too(h2serve_server, app_dir):
    """--user/--group apply to the dirty arbiter and its workers as to HTTP
    workers (dirty apps never run as root), and the private socket directory
    belongs to that user, so HTTP workers can still call them."""
    _require_root()
    (app_dir / "dirtyids.py").write_text(DIRTY_IDS_APP)
    (app_dir / "dirtyids.py").chmod(0o644)
    server = h2serve_server("dirtyids:app", "--pythonpath", str(app_dir), "--user", "nobody",
                            "--group", "nogroup", "--dirty-workers", "1",
                            "--dirty-app", "dirtyids:Ids", plaintext=True)
    server.wait_for_log(r"Dirty worker 0 \(pid:\d+\) serving")
    seen = _get(server, "/")
    assert seen == {"dirty": [65534, 65534], "http": [65534, 65534]}
    directory = server.wait_for_log(r"sockets in (\S+)")[0].group(1)
    info = os.stat(directory)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (65534, 65534, 0o700)
