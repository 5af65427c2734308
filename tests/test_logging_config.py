"""gunicorn's logging settings against a real server: syslog lines read from a
local datagram socket, and logging configurations (dict, JSON, ini) written
for gunicorn's logger names."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_expecting_exit


def _get(server, path: str = "/hello") -> None:
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=server.cafile)) as client:
        assert client.get(f"{server.url}{path}").status_code == 200


def _receive(sock: socket.socket, wanted, timeout: float = 10.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not wanted(lines):
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            lines.append(sock.recv(65536).decode("utf-8", "replace").rstrip("\x00\n"))
        except TimeoutError:
            break
    return lines


@pytest.mark.parametrize("access_too", [True, False])
def test_syslog_lines_reach_a_local_socket(h2serve_server, tmp_path, access_too):
    path = tmp_path / "syslog.sock"
    collector = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    collector.bind(str(path))
    try:
        server = h2serve_server(
            "tests.apps:router", "--log-syslog", "--log-syslog-to", f"unix://{path}#dgram",
            "--log-syslog-prefix", "web", "--log-syslog-facility", "local3",
            *([] if access_too else ["--disable-redirect-access-to-syslog"]), workers=1)
        _get(server, "/hello?from=syslog")
        lines = _receive(collector, lambda got: any("/hello?from=syslog" in line for line in got),
                         timeout=5 if access_too else 2)
    finally:
        collector.close()
    # local3 (19) * 8 + info (6) = 158; the program name carries the prefix.
    booting = [line for line in lines if "Booting worker with pid" in line]
    assert booting and booting[0].startswith("<158>h2serve.web.error: [")
    assert "[INFO] Booting worker with pid" in booting[0]
    access = [line for line in lines if "/hello?from=syslog" in line]
    if access_too:
        assert access and access[0].startswith("<158>h2serve.web.access: [")
        assert '"GET /hello?from=syslog HTTP/2.0" 200' in access[0]
    else:
        assert access == []
    assert "Booting worker with pid" in server.log     # standard error keeps its lines too


LOGCONFIG_DICT = """
logconfig_dict = {{
    "formatters": {{"plain": {{"format": "CUSTOM %(levelname)s %(message)s"}}}},
    "handlers": {{
        "errors": {{"class": "logging.FileHandler", "filename": "{errors}", "formatter": "plain"}},
        "access": {{"class": "logging.FileHandler", "filename": "{access}", "formatter": "plain"}},
        "console": {{"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    }},
    "loggers": {{
        "gunicorn.error": {{"handlers": ["errors", "console"], "level": "INFO", "propagate": False}},
        "gunicorn.access": {{"handlers": ["access"], "level": "INFO", "propagate": False}},
    }},
}}
"""

LOGCONFIG_INI = """
[loggers]
keys=root,gerror,gaccess

[handlers]
keys=errors,access,console

[formatters]
keys=plain

[logger_root]
handlers=

[logger_gerror]
qualname=gunicorn.error
handlers=errors,console
level=INFO
propagate=0

[logger_gaccess]
qualname=gunicorn.access
handlers=access
level=INFO
propagate=0

[handler_errors]
class=FileHandler
formatter=plain
args=('{errors}', 'a')

[handler_access]
class=FileHandler
formatter=plain
args=('{access}', 'a')

[handler_console]
class=StreamHandler
args=(sys.stderr,)

[formatter_plain]
format=CUSTOM %(levelname)s %(message)s
"""


def _wait_for_text(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never reached {path}: {path.read_text() if path.exists() else ''!r}")


@pytest.mark.parametrize("form", ["dict", "json", "ini"])
def test_a_gunicorn_logging_configuration_drives_the_logs(h2serve_server, tmp_path, form):
    errors, access = tmp_path / "errors.log", tmp_path / "access.log"
    if form == "dict":
        conf = tmp_path / "gunicorn.conf.py"
        conf.write_text(LOGCONFIG_DICT.format(errors=errors, access=access))
        extra = ["-c", str(conf)]
    elif form == "json":
        namespace: dict = {}
        exec(LOGCONFIG_DICT.format(errors=errors, access=access), namespace)
        conf = tmp_path / "logging.json"
        conf.write_text(json.dumps({"version": 1, **namespace["logconfig_dict"]}))
        extra = ["--log-config-json", str(conf)]
    else:
        conf = tmp_path / "logging.ini"
        conf.write_text(LOGCONFIG_INI.format(errors=errors, access=access))
        extra = ["--log-config", str(conf)]
    server = h2serve_server("tests.apps:router", *extra, workers=1, wait_workers=False)
    _wait_for_text(errors, "CUSTOM INFO Booting worker with pid")
    _get(server, "/hello?logged=1")
    line = _wait_for_text(access, "/hello?logged=1")
    assert 'CUSTOM INFO 127.0.0.1 - - [' in line and '"GET /hello?logged=1 HTTP/2.0" 200' in line


def test_a_broken_logging_configuration_stops_the_start(tmp_path):
    done = start_expecting_exit(
        "logconfig_dict = {'handlers': {'x': {'class': 'no.such.Handler'}}}\n", tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("h2serve: error: logging: ") and "Traceback" not in done.stderr
