"""Fixtures that run the real `h2serve` command on loopback."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Unit tests: they start no server or other process and open no socket, so
# `-m unit` runs them alone in seconds. Each file maps to the tests in it that
# are not unit tests (they start a server or open a socket); tests/
# test_unit_marker.py checks both against the source. List a new file of unit
# tests here too.
_NONE: frozenset[str] = frozenset()
UNIT_TESTS: dict[str, frozenset[str]] = {
    "test_protocol_http1.py": _NONE,
    "test_protocol_http2.py": _NONE,
    "test_fuzz_h2.py": _NONE,
    "test_fuzz_http1.py": frozenset({
        "test_smuggling_matrix_against_the_server",
        "test_end_to_end_fuzz_keeps_the_worker_serving",
    }),
    "test_hpack_cache.py": _NONE,
    "test_quick_frames.py": _NONE,
    "test_http2_fields.py": _NONE,
    "test_h2_internals.py": _NONE,
    "test_h2_scheduling.py": _NONE,
    "test_connection_common.py": _NONE,
    "test_proxy_protocol.py": frozenset({
        "test_v2_header_before_tls_sets_remote_addr",
        "test_v2_local_keeps_the_balancer_address_and_v1_works_on_plaintext",
        "test_a_header_of_the_other_version_is_refused_when_one_is_asked_for",
        "test_bad_headers_and_silent_clients_are_closed_without_holding_a_thread",
        "test_allow_list_is_separate_from_forwarded_allow_ips",
    }),
    "test_wsgi.py": _NONE,
    "test_settings.py": frozenset({
        "test_subprocess_bad_setting_exits_2_without_traceback",
        "test_subprocess_bad_app_exits_2_with_one_line",
        "test_subprocess_print_config",
        "test_subprocess_check_config",
        "test_subprocess_chdir_finds_the_app",
        "test_check_app_in_child_never_imports_in_parent",  # forks
        "test_check_app_in_child_reports_a_dying_child",
    }),
    "test_gunicorn_compat.py": frozenset({
        "test_gunicorn_config_file_is_read",
        "test_gunicorn_config_and_app_run_unchanged",
    }),
    "test_gunicorn_settings_table.py": frozenset({"test_the_table_matches_the_installed_gunicorn"}),
    "test_logs.py": _NONE,
    "test_loadshare.py": frozenset({
        "test_connections_spread_over_workers",
        "test_connections_made_as_the_server_starts_spread_over_workers",
    }),
    "test_worker_pool.py": frozenset({
        "test_handshake_is_not_queued_behind_slow_views",
        "test_one_connections_backlog_does_not_queue_another_connection",
    }),
    "test_h2spec_runner.py": frozenset({
        "test_cases_against_an_in_process_h2_server",
        "test_cli_exits_non_zero_when_a_case_fails",
        "test_connection_handshake_against_the_server",
    }),
    "test_import_cycles.py": _NONE,
    "test_dirty_framing.py": frozenset({
        "test_channel_reports_peer_closed_mid_frame",
        "test_channel_timeout_returns_none",
        "test_client_turns_bad_replies_into_clear_errors",
    }),
    "test_unit_marker.py": _NONE,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the unit tests `unit` (see UNIT_TESTS)."""
    for item in items:
        not_unit = UNIT_TESTS.get(item.path.name)
        if not_unit is None:
            continue
        names = {getattr(item, "originalname", item.name)}
        cls = getattr(item, "cls", None)
        if cls is not None:
            names.add(cls.__name__)
        if not names & not_unit:
            item.add_marker(pytest.mark.unit)


def start_expecting_exit(config_text: str, tmp_path: Path, app: str = "tests.apps:hello",
                         timeout: float = 60) -> subprocess.CompletedProcess:
    """Run h2serve (plaintext, any port) with a config file holding config_text
    until it exits by itself: for start-ups that must fail, and how."""
    conf = tmp_path / "failing.conf.py"
    conf.write_text(config_text)
    return subprocess.run([sys.executable, "-m", "h2serve", "-c", str(conf), "--plaintext",
                           "--bind", "127.0.0.1:0", app],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def require_tool(name: str) -> str:
    """The path of an external tool; skip loudly outside CI, fail in CI."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian: nghttp2-client / nginx / curl); run ./scripts/test as root"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class ServerProcess:
    """A running `python -m h2serve`, its port and its log."""

    def __init__(self, args: list[str], env: dict[str, str], cafile: str | None, tls: bool,
                 cwd: Path = ROOT):
        self.args = args
        self.cafile = cafile
        self.tls = tls
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(args, env=env, cwd=str(cwd), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self.host = "127.0.0.1"
        self.port = 0

    def _read_log(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 15.0, count: int = 1) -> list[re.Match]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in map(regex.search, self.lines) if m]
                if len(found) >= count:
                    return found
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"server exited ({self.proc.returncode}):\n{self.log}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} in the server log:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.2))

    def worker_pids(self) -> list[int]:
        return [int(m.group(1)) for m in self.wait_for_log(r"Booting worker with pid: (\d+)", count=0)]

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode


@pytest.fixture(scope="session")
def dev_certs(tmp_path_factory):
    from h2serve.transport.devcert import write_certificates

    return write_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def h2serve_server(dev_certs, tmp_path):
    """Factory: h2serve_server("tests.apps:hello", "--threads", "2", plaintext=False)."""
    started: list[ServerProcess] = []

    def start(app: str = "tests.apps:router", *extra: str, plaintext: bool = False,
              workers: int = 1, threads: int = 4, bind: str = "127.0.0.1:0",
              wait_workers: bool = True, env: dict | None = None) -> ServerProcess:
        args = [sys.executable, "-m", "h2serve", "--bind", bind, "--workers", str(workers),
                "--threads", str(threads), "--graceful-timeout", "10", *extra]
        if plaintext:
            args.append("--plaintext")
        elif "--certfile" not in extra:
            args += ["--certfile", str(dev_certs.cert), "--keyfile", str(dev_certs.key)]
        args.append(app)
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                    "H2SERVE_CERT_DIR": str(tmp_path / "devcerts"), **(env or {})}
        server = ServerProcess(args, full_env, None if plaintext else str(dev_certs.ca_cert),
                               tls=not plaintext)
        started.append(server)
        if bind.startswith("unix:"):
            server.wait_for_log(r"Listening at")
        else:
            match = server.wait_for_log(r"Listening at: https?://(\S+):(\d+)")[0]
            server.host = match.group(1).strip("[]")
            server.port = int(match.group(2))
        if wait_workers:
            server.wait_for_log(r"Booting worker with pid", count=workers)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGQUIT, timeout=10)
