"""Settings table, config sources, CLI exit paths and the application loader."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from h2serve import __version__, cli
from h2serve.app import AppLoadError, check_app_in_child, load_app
from h2serve.config import Config, format_config
from h2serve.settings import SECTIONS, SETTINGS, SETTINGS_BY_NAME, ConfigError
from h2serve.settings_docs import render_markdown

REPO = Path(__file__).resolve().parents[1]


def from_sources(argv, environ=None, cwd=None):
    return Config.from_sources(list(argv), environ or {}, cwd=str(cwd) if cwd else None)


def run_h2serve(args, cwd, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("H2SERVE_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "h2serve", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def app_dir(tmp_path):
    """A directory with throwaway app modules under unique names; cleaned from sys.modules."""
    token = uuid.uuid4().hex[:10]
    names = {
        "plain": f"plainapp_{token}",
        "factory": f"factoryapp_{token}",
        "bare": f"bareapp_{token}",
        "bare_app": f"bareappname_{token}",
        "broken": f"brokenapp_{token}",
        "pkg": f"pkg_{token}",
    }
    (tmp_path / f"{names['plain']}.py").write_text(textwrap.dedent("""
        def app(environ, start_response):
            return [b"plain"]

        class Holder:
            def wsgi(self, environ, start_response):
                return [b"holder"]

        holder = Holder()
        not_callable = 42
    """))
    (tmp_path / f"{names['factory']}.py").write_text(textwrap.dedent("""
        def create_app(greeting="hello", times=1):
            def app(environ, start_response):
                return [greeting.encode() * times]
            app.greeting = greeting
            app.times = times
            return app

        def failing_factory():
            raise RuntimeError("database unreachable")

        def returns_number():
            return 7
    """))
    (tmp_path / f"{names['bare']}.py").write_text(textwrap.dedent("""
        def application(environ, start_response):
            return [b"application"]

        def app(environ, start_response):
            return [b"app"]
    """))
    (tmp_path / f"{names['bare_app']}.py").write_text(textwrap.dedent("""
        def app(environ, start_response):
            return [b"app"]
    """))
    (tmp_path / f"{names['broken']}.py").write_text(textwrap.dedent("""
        import definitely_not_a_real_module_xyz  # noqa
        app = None
    """))
    pkg = tmp_path / names["pkg"]
    (pkg / "web").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "web" / "__init__.py").write_text("")
    (pkg / "web" / "main.py").write_text("def application(environ, start_response):\n    return [b'pkg']\n")
    saved_path = list(sys.path)
    yield tmp_path, names
    sys.path[:] = saved_path
    for module in list(sys.modules):
        if module.endswith(token):
            del sys.modules[module]
        elif module.startswith(names["pkg"]):
            del sys.modules[module]


# --------------------------------------------------------------------------
# The table.


# Settings gunicorn has no flag for either (a dict or a function cannot be spelled
# on a command line): its server hooks among them.
CONFIG_FILE_ONLY = {"secure_scheme_headers", "logconfig_dict"} | {
    s.name for s in SETTINGS if s.type_name == "callable"}


def test_every_setting_is_fully_declared():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    flags = [flag for s in SETTINGS for flag in s.flags]
    assert len(flags) == len(set(flags))
    for setting in SETTINGS:
        assert setting.section in SECTIONS, setting.name
        assert setting.help and setting.help.endswith("."), setting.name
        assert setting.meta, setting.name
        if setting.kind != "positional" and setting.name not in CONFIG_FILE_ONLY:
            assert setting.flags and all(f.startswith("-") for f in setting.flags), setting.name
            assert any(f.startswith("--") for f in setting.flags), setting.name


def test_setting_names_do_not_shadow_config_methods():
    for setting in SETTINGS:
        assert not hasattr(Config, setting.name), setting.name


def test_gunicorn_flag_names_are_kept():
    expected = {
        "workers": ("-w", "--workers"), "bind": ("-b", "--bind"), "timeout": ("-t", "--timeout"),
        "keepalive": ("--keep-alive",), "error_logfile": ("--error-logfile", "--log-file"),
        "pidfile": ("-p", "--pid"), "proc_name": ("-n", "--name"), "config": ("-c", "--config"),
        "discard_body_limit": ("--keep-alive-discard",),
    }
    for name, flags in expected.items():
        assert SETTINGS_BY_NAME[name].flags == flags


def test_defaults():
    cfg = from_sources([])
    assert cfg.bind == ["127.0.0.1:8443"]
    assert cfg.workers == 1 and cfg.threads == 4 and cfg.backlog == 2048
    assert cfg.worker_connections == 1000
    assert cfg.keepalive == 5.0 and cfg.timeout == 30.0 and cfg.graceful_timeout == 30.0
    assert cfg.client_data_timeout == 5.0 and cfg.handshake_timeout == 10.0
    assert cfg.send_timeout == 30.0
    assert cfg.limit_request_line == 4094 and cfg.limit_request_fields == 100
    assert cfg.limit_request_field_size == 8190 and cfg.discard_body_limit == 65536
    assert cfg.http2_max_concurrent_streams == 100
    assert cfg.http2_initial_window_size == 262144 and cfg.http2_max_frame_size == 16384
    assert cfg.http2_max_header_list_size == 65536
    assert cfg.certfile is None and cfg.plaintext is False and cfg.cert_reqs == 0
    assert cfg.log_level == "info" and cfg.error_logfile == "-" and cfg.access_logfile is None
    assert cfg.access_logformat == '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    assert cfg.chdir == os.getcwd()
    assert cfg.app_uri is None
    assert cfg.alpn_protocols == ["h2", "http/1.1"]
    assert cfg.h2_enabled and cfg.h1_enabled
    assert cfg.forwarded_allow_ips == ["127.0.0.1", "::1"]


def test_environment_defaults():
    cfg = from_sources([], {"WEB_CONCURRENCY": "6", "FORWARDED_ALLOW_IPS": "10.0.0.0/8, *"})
    assert cfg.workers == 6
    assert cfg.forwarded_allow_ips == ["10.0.0.0/8", "*"]
    assert from_sources(["-w", "2"], {"WEB_CONCURRENCY": "6"}).workers == 2
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY"):
        from_sources([], {"WEB_CONCURRENCY": "many"})


def test_priority_defaults_config_env_cli(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("workers = 3\nthreads = 7\nkeepalive = 2\nbind = ['127.0.0.1:9000']\n")
    env = {"H2SERVE_CMD_ARGS": "--threads 8 --backlog 10"}
    cfg = from_sources(["-c", str(conf), "-w", "5", "--backlog", "20", "app:app"], env)
    assert cfg.workers == 5  # CLI over config
    assert cfg.threads == 8  # env args over config
    assert cfg.backlog == 20  # CLI over env args
    assert cfg.keepalive == 2.0  # config over default
    assert cfg.bind == ["127.0.0.1:9000"]
    assert cfg.config == str(conf)
    assert cfg.app_uri == "app:app"


def test_cli_bind_is_repeatable_and_replaces_config(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("bind = '127.0.0.1:9000'\n")
    cfg = from_sources(["-c", str(conf), "-b", "127.0.0.1:1", "--bind", "[::1]:2"])
    assert cfg.bind == ["127.0.0.1:1", "[::1]:2"]
    assert from_sources(["-c", str(conf)]).bind == ["127.0.0.1:9000"]


def test_config_file_named_in_env_args(tmp_path):
    (tmp_path / "conf.py").write_text("threads = 9\nwsgi_app = 'site:app'\n")
    cfg = from_sources([], {"H2SERVE_CMD_ARGS": "-c conf.py"}, cwd=tmp_path)
    assert cfg.threads == 9
    assert cfg.app_uri == "site:app"
    assert cfg.config == str(tmp_path / "conf.py")


def test_relative_paths_resolve_against_start_directory(tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    cfg = from_sources(["--certfile", "cert.pem", "--keyfile", "key.pem", "--pid", "run.pid"], cwd=tmp_path)
    assert cfg.certfile == str(tmp_path / "cert.pem")
    assert cfg.pidfile == str(tmp_path / "run.pid")
    assert cfg.is_ssl


def test_booleans_and_choices(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("reuse_port = True\nplaintext = 'yes'\n")
    cfg = from_sources(["-c", str(conf)])
    assert cfg.reuse_port is True and cfg.plaintext is True
    assert from_sources(["-c", str(conf), "--no-reuse-port"]).reuse_port is False
    assert from_sources(["--log-level", "WARNING"]).log_level == "warning"
    assert from_sources(["--cert-reqs", "required", "--ca-certs", str(conf)]).cert_reqs == 2
    assert from_sources(["--limit-request-fields", "0"]).limit_request_fields == 32768


def test_protocol_views():
    cfg = from_sources(["--http-protocols", "h1, h2"])
    assert cfg.alpn_protocols == ["http/1.1", "h2"]
    only_h1 = from_sources(["--http-protocols", "h1"])
    assert only_h1.alpn_protocols == ["http/1.1"]
    assert only_h1.h1_enabled and not only_h1.h2_enabled


def test_forwarded_allow_ips():
    from h2serve.transport.forwarded import ForwardedPolicy

    policy = ForwardedPolicy.from_config(
        from_sources(["--forwarded-allow-ips", "10.1.0.0/16,192.0.2.7"]))
    assert policy.trusts("10.1.2.3")
    assert policy.trusts("192.0.2.7")
    assert policy.trusts("::ffff:192.0.2.7")     # an IPv4 peer on a dual-stack listener
    assert not policy.trusts("192.0.2.8")
    assert not policy.trusts(None)
    assert policy.trusts("")                     # a unix-socket peer
    assert not policy.allow_all
    anyone = ForwardedPolicy.from_config(from_sources(["--forwarded-allow-ips", "*"]))
    assert anyone.allow_all and anyone.trusts("203.0.113.9")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--workers", "0"], "-w/--workers: must be at least 1, got 0"),
        (["--threads", "abc"], "--threads: expected an integer, got 'abc'"),
        (["-b", "host:99999"], "99999"),
        (["--http-protocols", "h3"], "unknown protocol 'h3'"),
        (["--http-protocols", "h2,h2"], "listed twice"),
        (["--http-protocols", ","], "at least one protocol"),
        (["--log-level", "loud"], "--log-level"),
        (["--http2-max-frame-size", "100"], "between 16384 and 16777215"),
        (["--http2-initial-window-size", str(2**31)], "--http2-initial-window-size"),
        (["--cert-reqs", "3"], "between 0 and 2"),
        (["--keep-alive", "-1"], "--keep-alive: must be at least 0"),
        (["--client-data-timeout", "0"], "must be greater than 0"),
        (["--timeout", "nan"], "finite"),
        (["--limit-request-line", "9000"], "between 0 and 8190"),
        (["--forwarded-allow-ips", "10.0.0.1,nonsense"], "'nonsense'"),
        (["--access-logformat", "100%"], "--access-logformat: invalid format"),
        (["--ciphers", "NOT-A-CIPHER"], "no usable cipher"),
        (["--certfile", "/nonexistent/cert.pem"], "file not found"),
        (["--chdir", "/nonexistent/dir"], "directory not found"),
        (["--error-logfile", "/nonexistent/dir/error.log"], "directory not found"),
        (["--pid", "/nonexistent/dir/h2serve.pid"], "directory not found"),
        (["--bogus"], "unknown option --bogus (see h2serve --help)"),
        (["--workers"], "expected one argument"),
    ],
)
def test_bad_values_raise_one_line(argv, expected):
    with pytest.raises(ConfigError) as info:
        from_sources(argv)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_tls_combinations(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    with pytest.raises(ConfigError, match="--keyfile is set but --certfile is not"):
        from_sources(["--keyfile", str(key)])
    with pytest.raises(ConfigError, match="--certfile is set but --keyfile is not"):
        from_sources(["--certfile", str(cert)])
    with pytest.raises(ConfigError, match="--plaintext cannot be combined"):
        from_sources(["--plaintext", "--certfile", str(cert), "--keyfile", str(key)])
    with pytest.raises(ConfigError, match="--ca-certs is not set"):
        from_sources(["--cert-reqs", "2"])
    cfg = from_sources(["--certfile", str(cert), "--keyfile", str(key)])
    assert cfg.certfile == str(cert) and cfg.keyfile == str(key)


def test_env_args_errors_name_the_variable():
    with pytest.raises(ConfigError, match="^H2SERVE_CMD_ARGS: -w/--workers: must be at least 1"):
        from_sources([], {"H2SERVE_CMD_ARGS": "-w 0"})
    with pytest.raises(ConfigError, match="^H2SERVE_CMD_ARGS: "):
        from_sources([], {"H2SERVE_CMD_ARGS": "--threads 'unterminated"})


def test_config_file_problems(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("workers = 2\nworker = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'worker'; did you mean 'workers'"):
        from_sources(["-c", str(conf)])

    conf.write_text("workers = 'lots'\n")
    with pytest.raises(ConfigError, match=r"conf\.py: workers: expected an integer"):
        from_sources(["-c", str(conf)])

    conf.write_text("workers = (\n")
    with pytest.raises(ConfigError, match="line 1: syntax error") as info:
        from_sources(["-c", str(conf)])
    assert "\n" not in str(info.value)

    conf.write_text("workers = undefined_name\n")
    with pytest.raises(ConfigError, match="NameError"):
        from_sources(["-c", str(conf)])

    with pytest.raises(ConfigError, match="file not found"):
        from_sources(["-c", str(tmp_path / "missing.py")])


def test_config_file_ignores_helpers_and_warns_on_unknown(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text(textwrap.dedent("""
        import os
        _private = 1
        def post_fork(server, worker):
            pass
        spew = True
        favourite_colour = "blue"
        print_config = True
        threads = os.cpu_count() and 3
    """))
    cfg = from_sources(["-c", str(conf)])
    assert cfg.threads == 3
    assert cfg.print_config is False
    assert any("favourite_colour" in w for w in cfg.warnings)
    assert any("print_config can only be given on the command line" in w for w in cfg.warnings)
    # A hook is a setting; a gunicorn setting with no meaning here says why.
    assert cfg.post_fork is not None and not any("post_fork" in w for w in cfg.warnings)
    assert any("gunicorn's 'spew' has no effect" in w for w in cfg.warnings)
    assert not any("'os'" in w or "_private" in w for w in cfg.warnings)
    assert len(cfg.warnings) == 3


def test_reload_rereads_config_file(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("workers = 2\n")
    cfg = from_sources(["-c", "conf.py", "--threads", "6"], cwd=tmp_path)
    conf.write_text("workers = 4\n")
    fresh = cfg.reloaded()
    assert fresh.workers == 4 and fresh.threads == 6
    assert cfg.workers == 2  # the old object is untouched
    conf.write_text("workers = 0\n")
    with pytest.raises(ConfigError):
        cfg.reloaded()


def test_copy_and_replace_and_overrides():
    cfg = Config(workers=3, bind=["127.0.0.1:0"])
    assert cfg.workers == 3 and cfg.bind == ["127.0.0.1:0"]
    twin = cfg.copy()
    twin.bind.append("127.0.0.1:1")
    assert cfg.bind == ["127.0.0.1:0"]
    changed = cfg.replace(threads="9", http_protocols="h1")
    assert changed.threads == 9 and changed.alpn_protocols == ["http/1.1"] and cfg.threads == 4
    with pytest.raises(ConfigError, match="unknown setting"):
        Config(wrokers=2)
    with pytest.raises(ConfigError, match="must be at least 1"):
        cfg.replace(workers=0)


def test_print_config_is_sorted_and_round_trips(tmp_path):
    cfg = from_sources(["-w", "3", "--http-protocols", "h1", "-b", "127.0.0.1:9", "app:app"])
    text = format_config(cfg)
    names = [line.split(" = ", 1)[0] for line in text.splitlines()]
    assert names == sorted(s.name for s in SETTINGS)
    assert "workers = 3\n" in text
    conf = tmp_path / "printed.py"
    conf.write_text(text)
    again = from_sources(["-c", str(conf)])
    for setting in SETTINGS:
        if not setting.cli_only:
            assert getattr(again, setting.name) == getattr(cfg, setting.name), setting.name


def test_docs_are_current():
    docs = REPO / "docs" / "settings.md"
    assert docs.exists() and docs.read_text() == render_markdown(), (
        "docs/settings.md is stale; regenerate it with "
        "`python -m h2serve.settings_docs > docs/settings.md`"
    )


def test_docs_mention_every_setting():
    text = render_markdown()
    for setting in SETTINGS:
        assert f"### {setting.name}\n" in text
        for flag in setting.flags:
            assert f"`{flag}" in text


# --------------------------------------------------------------------------
# The command line, in process and as a subprocess.


def test_main_reports_config_error_in_one_line(capsys):
    assert cli.main(["--workers", "0", "app:app"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "h2serve: error: -w/--workers: must be at least 1, got 0\n"


def test_main_version_and_help(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"h2serve {__version__}"
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "APP" in out and "--workers" in out and "module:callable" in out


def test_main_requires_an_app(capsys):
    assert cli.main([]) == 2
    assert "no application given" in capsys.readouterr().err


def test_subprocess_bad_setting_exits_2_without_traceback(tmp_path):
    result = run_h2serve(["--workers", "0", "app:app"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("h2serve: error: ")
    assert "Traceback" not in result.stderr


def _error_lines(stderr: str) -> list[str]:
    """The start-up failures reported: `h2serve: error:` lines from the master,
    [ERROR] lines from the workers (their error log is standard error here)."""
    return [line.split("] ", 3)[-1] if line.startswith("[") else line[len("h2serve: error: "):]
            for line in stderr.splitlines()
            if line.startswith("h2serve: error: ") or ("[ERROR]" in line and "Reason:" not in line
                                                      and "Shutting down" not in line
                                                      and "failed to boot" not in line)]


def test_subprocess_bad_app_exits_2_with_one_line(tmp_path):
    """The workers import the app (no check child first); when the first ones
    cannot, the server stops with their one-line reason."""
    bind = ["--bind", "127.0.0.1:0"]
    result = run_h2serve([*bind, "no_such_module_here:app"], tmp_path)
    assert result.returncode == 2
    assert _error_lines(result.stderr) == [
        "cannot import 'no_such_module_here': no module named 'no_such_module_here'"]
    assert "Traceback" not in result.stderr and "Reason: App failed to load." in result.stderr

    (tmp_path / "goodapp.py").write_text("def app(e, s):\n    return []\n")
    result = run_h2serve([*bind, "goodapp:missing"], tmp_path)
    assert result.returncode == 2
    assert _error_lines(result.stderr) == ["'goodapp' has no attribute 'missing'"]

    result = run_h2serve([*bind, "--preload", "goodapp:missing"], tmp_path)   # the master's import
    assert result.returncode == 2
    assert _error_lines(result.stderr) == ["'goodapp' has no attribute 'missing'"]
    assert "Traceback" not in result.stderr


def test_subprocess_print_config(tmp_path):
    result = run_h2serve(["--print-config", "-w", "3"], tmp_path, {"H2SERVE_CMD_ARGS": "--threads 11"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "workers = 3" in lines and "threads = 11" in lines
    assert [line.split(" = ")[0] for line in lines] == sorted(s.name for s in SETTINGS)


def test_subprocess_check_config(tmp_path):
    (tmp_path / "goodapp.py").write_text("def app(e, s):\n    return []\n")
    (tmp_path / "badapp.py").write_text("raise ImportError('needs libfoo')\n")
    ok = run_h2serve(["--check-config", "goodapp:app"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = run_h2serve(["--check-config", "badapp:app"], tmp_path)
    assert bad.returncode == 2
    assert bad.stderr == (f"h2serve: error: error while importing 'badapp': ImportError: needs libfoo "
                          f"({tmp_path / 'badapp.py'}:1)\n")
    bad_setting = run_h2serve(["--check-config", "--threads", "0", "goodapp:app"], tmp_path)
    assert bad_setting.returncode == 2 and "--threads" in bad_setting.stderr


def test_subprocess_chdir_finds_the_app(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "siteapp.py").write_text("def app(e, s):\n    return []\n")
    result = run_h2serve(["--check-config", "--chdir", "site", "siteapp:app"], tmp_path)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------
# The application loader.


def test_load_app_forms(app_dir):
    directory, names = app_dir
    plain, factory = names["plain"], names["factory"]
    assert load_app(f"{plain}:app", str(directory))({}, None) == [b"plain"]
    assert sys.path[0] == str(directory)
    assert load_app(f"{plain}:holder.wsgi", str(directory))({}, None) == [b"holder"]
    made = load_app(f"{factory}:create_app()", str(directory))
    assert (made.greeting, made.times) == ("hello", 1)
    made = load_app(f'{factory}:create_app("hi", times=3)', str(directory))
    assert made({}, None) == [b"hihihi"]
    assert load_app(names["bare"], str(directory))({}, None) == [b"application"]
    assert load_app(names["bare_app"], str(directory))({}, None) == [b"app"]
    assert load_app(f"{names['pkg']}.web.main", str(directory))({}, None) == [b"pkg"]
    assert load_app(f"{names['pkg']}.web.main:application", str(directory))({}, None) == [b"pkg"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("{plain}:missing", "'{plain}' has no attribute 'missing'"),
        ("{plain}:holder.nope", "'{plain}.holder' has no attribute 'nope'"),
        ("{plain}:not_callable", "{plain}:not_callable is a int, not a WSGI callable"),
        ("{factory}:failing_factory()", "factory {factory}:failing_factory() raised RuntimeError: database unreachable"),
        ("{factory}:returns_number()", "returned a int, not a WSGI callable"),
        ("{factory}:create_app(__import__('os').getcwd())", "must be literals"),
        ("{factory}:create_app(**{{'x': 1}})", "must be literals"),
        ("{factory}:1 +", "cannot parse"),
        ("{broken}:app", "error while importing '{broken}': ModuleNotFoundError: No module named 'definitely_not_a_real_module_xyz'"),
        ("{plain}_missing_module:app", "cannot import '{plain}_missing_module': no module named '{plain}_missing_module'"),
        ("{factory}", "has no 'application' or 'app'"),
        ("not a module:app", "is not a module name"),
        ("", "no application given"),
    ],
)
def test_load_app_errors_are_one_line(app_dir, target, expected):
    directory, names = app_dir
    with pytest.raises(AppLoadError) as info:
        load_app(target.format(**names), str(directory))
    message = str(info.value)
    assert expected.format(**names) in message
    assert "\n" not in message


def test_load_app_reports_errors_raised_inside_the_module(tmp_path):
    name = f"raising_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text("import json\nraise ImportError('cannot load the C extension')\n")
    (tmp_path / f"{name}_syntax.py").write_text("def app(:\n")
    try:
        with pytest.raises(AppLoadError, match="ImportError: cannot load the C extension"):
            load_app(f"{name}:app", str(tmp_path))
        with pytest.raises(AppLoadError, match=r"SyntaxError: .*line 1"):
            load_app(f"{name}_syntax:app", str(tmp_path))
    finally:
        sys.path.remove(str(tmp_path))


def test_check_app_in_child_never_imports_in_parent(app_dir):
    directory, names = app_dir
    assert check_app_in_child(f"{names['plain']}:app", str(directory)) is None
    assert names["plain"] not in sys.modules
    problem = check_app_in_child(f"{names['factory']}:failing_factory()", str(directory))
    assert problem.startswith(
        f"factory {names['factory']}:failing_factory() raised RuntimeError: database unreachable (")
    assert problem.endswith(f"{names['factory']}.py:10)")   # where it was raised
    assert names["factory"] not in sys.modules


def test_check_app_in_child_reports_a_dying_child(tmp_path):
    name = f"exiting_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text("import os\nos._exit(3)\n")
    assert check_app_in_child(f"{name}:app", str(tmp_path)) == (
        f"the process loading '{name}:app' died (exit status 3)"
    )
