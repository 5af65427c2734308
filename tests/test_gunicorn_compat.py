"""Coming from gunicorn: its config files, flags and HTTP/2 environ keys."""

from __future__ import annotations

import re
import textwrap

import pytest

from h2serve.config import Config
from h2serve.settings import CONFIG_NAMES, GUNICORN_ONLY, SETTINGS_BY_NAME, ConfigError
from h2serve.settings_docs import GUNICORN_DIFFERENCES, NOT_IN_GUNICORN, render_gunicorn_tables
from tests.conftest import ROOT
from tests.h2client import H2Client

GUNICORN_CONF = """
import multiprocessing

bind = "127.0.0.1:9123"
workers = 3
threads = 6
worker_connections = 500
keepalive = 20
timeout = 45
graceful_timeout = 12
max_requests = 1000
max_requests_jitter = 50
accesslog = "{access_log}"
errorlog = "-"
loglevel = "WARNING"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s {{%({{x-gunicorn}}i)s}}'
forwarded_allow_ips = "10.0.0.1,10.0.0.2"
proxy_protocol = True
proxy_allow_ips = "10.0.0.9"
limit_request_line = 2048
limit_request_fields = 50
limit_request_field_size = 4096
certfile = "{cert}"
keyfile = "{key}"
http_protocols = "h2, h1"
http2_max_concurrent_streams = 64

# h2serve's worker is gthread's kind: accepted as is.
worker_class = "gthread"

raw_env = ["A=1"]
secure_scheme_headers = {{"X-FORWARDED-PROTO": "https"}}

preload_app = True

# Meaningless here: warned about, never an error.
tmp_upload_dir = "/tmp"
statsd_host = "localhost:8125"
statsd_prefix = "web"

def post_fork(server, worker):
    pass

def when_ready(server):
    pass

def _helper():
    return multiprocessing.cpu_count()
"""


def _write_conf(tmp_path, dev_certs, access_log="-") -> str:
    path = tmp_path / "gunicorn.conf.py"
    path.write_text(GUNICORN_CONF.format(access_log=access_log, cert=dev_certs.cert,
                                         key=dev_certs.key))
    return str(path)


def test_gunicorn_config_file_is_read(tmp_path, dev_certs):
    cfg = Config.from_sources(["-c", _write_conf(tmp_path, dev_certs)], {})
    assert cfg.bind == ["127.0.0.1:9123"]
    assert (cfg.workers, cfg.threads, cfg.worker_connections) == (3, 6, 500)
    assert (cfg.keepalive, cfg.timeout, cfg.graceful_timeout) == (20, 45, 12)
    assert (cfg.max_requests, cfg.max_requests_jitter) == (1000, 50)
    assert cfg.access_logfile == "-" and cfg.error_logfile == "-"
    assert cfg.log_level == "warning"
    assert cfg.access_logformat.startswith('%(h)s "%(r)s"')
    assert cfg.forwarded_allow_ips == ["10.0.0.1", "10.0.0.2"]
    assert cfg.proxy_protocol == "auto" and cfg.proxy_allow_ips == ["10.0.0.9"]
    assert cfg.raw_env == ["A=1"] and cfg.secure_scheme_headers == {"x-forwarded-proto": "https"}
    assert (cfg.limit_request_line, cfg.limit_request_fields,
            cfg.limit_request_field_size) == (2048, 50, 4096)
    assert cfg.certfile == str(dev_certs.cert) and cfg.keyfile == str(dev_certs.key)
    assert cfg.http_protocols == "h2,h1" and cfg.http2_max_concurrent_streams == 64
    assert (cfg.statsd_host, cfg.statsd_prefix) == ("localhost:8125", "web")
    warned = {re.search(r"gunicorn's '(\w+)'", w)[1] for w in cfg.warnings if "gunicorn's" in w}
    assert cfg.worker_class == "gthread"
    assert warned == {"tmp_upload_dir"}
    assert cfg.post_fork.__name__ == "post_fork" and cfg.when_ready.__name__ == "when_ready"
    assert cfg.preload_app is True
    assert len(cfg.warnings) == len(warned)          # helpers and imports stay silent


@pytest.mark.parametrize("argv, flag", [
    (["--spew"], "--spew"),
    (["--logger-class", "x.Logger"], "--logger-class"),
])
def test_gunicorn_only_flags_are_refused_with_the_reason(argv, flag):
    with pytest.raises(ConfigError, match=f"gunicorn's {re.escape(flag)} has no equivalent: "):
        Config.from_sources([*argv, "app:app"], {})


@pytest.mark.parametrize("argv", [["-k", "gthread"], ["--worker-class=sync"], ["-k", "gthread", "-w", "2"]])
def test_gunicorn_threaded_worker_classes_are_accepted(argv):
    cfg = Config.from_sources([*argv, "app:app"], {})
    assert cfg.worker_class in ("gthread", "sync") and cfg.app_uri == "app:app"


@pytest.mark.parametrize("worker_class", ["gevent", "eventlet", "uvicorn.workers.UvicornWorker"])
def test_gunicorn_async_worker_classes_are_refused_with_the_reason(worker_class):
    with pytest.raises(ConfigError, match=f"{re.escape(repr(worker_class))} is not available: .*gthread"):
        Config.from_sources(["-k", worker_class, "app:app"], {})


@pytest.mark.parametrize("argv, expected", [
    (["--workerz", "2"], "unknown option --workerz; did you mean --workers?"),
    (["--thread", "3"], "unknown option --thread; did you mean --threads?"),
    (["--paste", "x.ini"], "unknown option --paste (gunicorn's --paste has no equivalent: "),
    (["--asgi-loop", "uvloop"], "unknown option --asgi-loop (gunicorn's"),
])
def test_unknown_options_are_named_without_taking_the_app_for_their_value(argv, expected):
    """Before, argparse said `unrecognized arguments: -e myproject.wsgi:application`."""
    with pytest.raises(ConfigError) as info:
        Config.from_sources([*argv, "myproject.wsgi:application"], {})
    assert expected in str(info.value)
    assert "myproject" not in str(info.value)


def test_gunicorn_flag_spellings_that_differ_are_accepted():
    cfg = Config.from_sources(["--limit-request-field_size", "1234", "--log-file", "-",
                               "--proxy-allow-from", "10.1.1.1", "--proxy-protocol", "x:y"], {})
    assert cfg.limit_request_field_size == 1234
    assert cfg.proxy_allow_ips == ["10.1.1.1"] and cfg.proxy_protocol == "auto"
    assert cfg.app_uri == "x:y"


@pytest.mark.parametrize("argv, mode", [
    (["--proxy-protocol", "v2", "app:app"], "v2"),
    (["--proxy-protocol", "v1", "app:app"], "v1"),
    (["--proxy-protocol=auto", "app:app"], "auto"),
    (["--proxy-protocol", "app:app"], "auto"),
    (["app:app", "--proxy-protocol"], "auto"),
    (["--proxy-protocol", "off", "app:app"], "off"),
    (["--proxy-protocol", "v2", "--no-proxy-protocol", "app:app"], "off"),
    (["app:app"], "off"),
])
def test_proxy_protocol_takes_gunicorn_27_modes_and_never_the_app(argv, mode):
    """Before, `--proxy-protocol v2 app:app` took v2 as the APP."""
    cfg = Config.from_sources(argv, {})
    assert cfg.proxy_protocol == mode and cfg.app_uri == "app:app"


def test_proxy_protocol_modes_in_a_config_file(tmp_path):
    for written, mode in (('"v1"', "v1"), ("True", "auto"), ("False", "off"), ('"auto"', "auto")):
        path = tmp_path / "conf.py"
        path.write_text(f"proxy_protocol = {written}\n")
        assert Config.from_sources(["-c", str(path)], {}).proxy_protocol == mode
    path.write_text('proxy_protocol = "v3"\n')
    with pytest.raises(ConfigError, match="expected one of off, v1, v2, auto"):
        Config.from_sources(["-c", str(path)], {})


def test_gunicorn_command_lines_that_used_to_fail(tmp_path):
    cfg = Config.from_sources(["-k", "gthread", "--worker-tmp-dir", str(tmp_path), "--capture-output",
                               "-e", "A=1", "--env", "B=x=y", "--pythonpath", "lib,src", "-D",
                               "-m", "007", "app:app"], {})
    assert cfg.worker_tmp_dir == str(tmp_path) and cfg.capture_output and cfg.daemon
    assert cfg.raw_env == ["A=1", "B=x=y"] and cfg.pythonpath == ["lib", "src"]
    assert cfg.umask == 0o007 and cfg.app_uri == "app:app"
    with pytest.raises(ConfigError, match="-e/--env: expected KEY=VALUE, got 'oops'"):
        Config.from_sources(["-e", "oops", "app:app"], {})



def test_compat_tables_are_consistent():
    for name in [*GUNICORN_DIFFERENCES, *NOT_IN_GUNICORN]:
        assert name in SETTINGS_BY_NAME, name
    for name in GUNICORN_ONLY:
        assert name not in CONFIG_NAMES, f"{name} is both a setting and gunicorn-only"
    assert not NOT_IN_GUNICORN & set(GUNICORN_DIFFERENCES)


def test_docs_gunicorn_md_tables_are_generated_from_the_settings():
    text = (ROOT / "docs" / "gunicorn.md").read_text()
    match = re.search(r"<!-- BEGIN GENERATED: python -m h2serve.settings_docs gunicorn -->\n(.*?)"
                      r"<!-- END GENERATED -->", text, re.S)
    assert match, "docs/gunicorn.md lost its generated section"
    assert match.group(1) == render_gunicorn_tables(), (
        "docs/gunicorn.md is stale: paste the output of `python -m h2serve.settings_docs gunicorn`")
    for name in GUNICORN_ONLY:
        assert f"| `{name}` |" in match.group(1)


GUNICORN_APP = textwrap.dedent('''
    def app(environ, start_response):
        """Written for gunicorn's HTTP/2 support; h2serve must run it as is."""
        weight = environ.get("gunicorn.http2.priority_weight", 16)
        parent = environ.get("gunicorn.http2.priority_depends_on", 0)
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("X-Weight", str(weight)), ("X-Parent", str(parent))])
        send_trailers = environ.get("gunicorn.http2.send_trailers")
        if send_trailers is not None:
            send_trailers([("x-served-by", "gunicorn-style app")])
        return [b"ok"]
''')


def test_gunicorn_config_and_app_run_unchanged(h2serve_server, tmp_path, dev_certs):
    (tmp_path / "gunicorn_style.py").write_text(GUNICORN_APP)
    access_log = tmp_path / "access.log"
    conf = _write_conf(tmp_path, dev_certs, access_log=str(access_log))
    # The fixture's --bind, --workers and --threads win over the file, as a command line should;
    # the PROXY protocol from the file is switched off for this direct client.
    server = h2serve_server("gunicorn_style:app", "-c", conf, "--chdir", str(tmp_path),
                            "--no-proxy-protocol", "--log-level", "info", workers=1)
    assert "[WARNING] config file" in server.log   # in the error log, where operators look
    assert "gunicorn's 'tmp_upload_dir' has no effect here" in server.log
    with H2Client(server.host, server.port, cafile=server.cafile) as client:
        stream_id = client.request("/", headers=[("x-gunicorn", "yes")], priority=(0, 201, False))
        response = client.response(stream_id, timeout=10)
    assert response.status == 200 and response.body == b"ok"
    assert response.header("x-weight") == "201" and response.header("x-parent") == "0"
    assert dict(response.trailers or []) == {"x-served-by": "gunicorn-style app"}
    server.stop()
    line = access_log.read_text().strip().splitlines()[-1]
    assert re.fullmatch(r'127\.0\.0\.1 "GET / HTTP/2\.0" 200 2 \{yes\}', line), line
