"""--reload: workers restart when the application's source changes (development mode)."""

from __future__ import annotations

import os
import time

import httpx

APP_TEMPLATE = '''
import helper

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("{version} " + helper.SUFFIX).encode()]
'''


def _write(path, text: str, bump: float) -> None:
    """Write and move the modification time forward, so even a coarse clock sees a change."""
    path.write_text(text)
    stamp = time.time() + bump
    os.utime(path, (stamp, stamp))


def _body(url: str) -> str:
    return httpx.get(url, timeout=5).text


def _wait_for_body(url: str, expected: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = _body(url)
        if seen == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"still {seen!r}, expected {expected!r}")


def test_reload_restarts_workers_on_change_and_survives_a_syntax_error(h2serve_server, tmp_path):
    app_file = tmp_path / "reload_app.py"
    helper_file = tmp_path / "helper.py"
    _write(app_file, APP_TEMPLATE.format(version="v1"), 0)
    _write(helper_file, 'SUFFIX = "a"\n', 0)
    server = h2serve_server("reload_app:application", "--reload", "--chdir", str(tmp_path),
                            plaintext=True, workers=2)
    assert _body(server.url) == "v1 a"

    # The application module itself changes.
    _write(app_file, APP_TEMPLATE.format(version="v2"), 2)
    server.wait_for_log(r"Reloading: .*reload_app\.py changed")
    _wait_for_body(server.url, "v2 a")

    # A module it imports changes.
    _write(helper_file, 'SUFFIX = "b"\n', 4)
    server.wait_for_log(r"Reloading: .*helper\.py changed")
    _wait_for_body(server.url, "v2 b")

    # A broken edit: the new workers fail to boot, the running ones keep serving.
    _write(app_file, "def application(:\n", 6)
    server.wait_for_log(r"Worker \d+ failed to boot")
    assert _body(server.url) == "v2 b"
    assert server.proc.poll() is None

    # Fixed again: served by fresh workers.
    _write(app_file, APP_TEMPLATE.format(version="v3"), 8)
    _wait_for_body(server.url, "v3 b")
    assert "Traceback" not in server.log


def test_without_reload_nothing_is_watched(h2serve_server, tmp_path):
    app_file = tmp_path / "still_app.py"
    _write(app_file, 'import helper_still\n' + APP_TEMPLATE.replace("helper", "helper_still")
           .format(version="v1"), 0)
    (tmp_path / "helper_still.py").write_text('SUFFIX = "x"\n')
    server = h2serve_server("still_app:application", "--chdir", str(tmp_path), plaintext=True)
    assert _body(server.url) == "v1 x"
    _write(app_file, APP_TEMPLATE.replace("helper", "helper_still").format(version="v2"), 2)
    time.sleep(2.5)
    assert _body(server.url) == "v1 x"
    assert "Reloading" not in server.log
