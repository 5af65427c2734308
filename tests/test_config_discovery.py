"""Coming from gunicorn: with no --config, ./h2serve.conf.py and then
./gunicorn.conf.py are read (and the choice is said); GUNICORN_CMD_ARGS is read
below H2SERVE_CMD_ARGS; with no bind from any source, $PORT means
0.0.0.0:$PORT, as gunicorn (and the platforms that set PORT) expect."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _print_config(cwd: Path, *args: str, **env: str) -> tuple[dict[str, str], str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PORT", "GUNICORN_CMD_ARGS", "H2SERVE_CMD_ARGS")}
    environ.update(env, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "h2serve", "--print-config", *args],
                          cwd=cwd, env=environ, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    values = dict(line.split(" = ", 1) for line in done.stdout.splitlines() if " = " in line)
    return values, done.stderr


def test_gunicorn_conf_py_in_the_current_directory_is_read(tmp_path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\nthreads = 7\n")
    values, stderr = _print_config(tmp_path)
    assert values["workers"] == "3" and values["threads"] == "7"
    assert "gunicorn.conf.py" in stderr and "no --config" in stderr


def test_h2serve_conf_py_comes_before_gunicorn_conf_py(tmp_path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\n")
    (tmp_path / "h2serve.conf.py").write_text("workers = 5\n")
    values, stderr = _print_config(tmp_path)
    assert values["workers"] == "5"
    assert "h2serve.conf.py" in stderr


def test_an_explicit_config_is_used_and_nothing_is_discovered(tmp_path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\n")
    (tmp_path / "mine.py").write_text("workers = 6\n")
    values, stderr = _print_config(tmp_path, "-c", "mine.py")
    assert values["workers"] == "6"
    assert "no --config" not in stderr


def test_gunicorn_cmd_args_sit_below_h2serve_cmd_args_and_the_command_line(tmp_path) -> None:
    values, _ = _print_config(tmp_path, GUNICORN_CMD_ARGS="--workers 3 --threads 6")
    assert values["workers"] == "3" and values["threads"] == "6"
    values, _ = _print_config(tmp_path, "--threads", "9", GUNICORN_CMD_ARGS="--workers 3 --threads 6",
                              H2SERVE_CMD_ARGS="--workers 4")
    assert values["workers"] == "4" and values["threads"] == "9"


def test_port_gives_the_bind_only_when_no_source_sets_one(tmp_path) -> None:
    values, _ = _print_config(tmp_path, PORT="8123")
    assert values["bind"] == "['0.0.0.0:8123']"
    values, _ = _print_config(tmp_path, "--bind", "127.0.0.1:9000", PORT="8123")
    assert values["bind"] == "['127.0.0.1:9000']"
    (tmp_path / "gunicorn.conf.py").write_text("bind = '127.0.0.1:9001'\n")
    values, _ = _print_config(tmp_path, PORT="8123")
    assert values["bind"] == "['127.0.0.1:9001']"


def test_a_discovered_gunicorn_conf_py_serves(tmp_path, dev_certs) -> None:
    """The real command in a project directory: a gunicorn.conf.py that reads
    its port from the environment, as PaaS configs do, and no flags but the app."""
    (tmp_path / "gunicorn.conf.py").write_text(textwrap.dedent(f"""\
        import os
        bind = "127.0.0.1:" + os.environ["APP_PORT"]
        workers = 2
        certfile = {str(dev_certs.cert)!r}
        keyfile = {str(dev_certs.key)!r}
        """))
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "APP_PORT": str(port)}
    context = ssl.create_default_context(cafile=str(dev_certs.ca_cert))
    proc = subprocess.Popen([sys.executable, "-m", "h2serve", "tests.apps:hello"], cwd=tmp_path,
                            env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"https://127.0.0.1:{port}/", verify=context, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "the server did not come up"
                time.sleep(0.2)
        assert response.status_code == 200 and response.text == "Hello, world!"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert "gunicorn.conf.py" in stderr
    assert stderr.count("Booting worker with pid") == 2
