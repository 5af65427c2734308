"""Every gunicorn 27 setting has a status here, and the status is true."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from h2serve.config import Config, build_parser
from h2serve.gunicorn_settings import GUNICORN_SETTINGS, IMPLEMENTED, REFUSED, REFUSED_REASONS
from h2serve.settings import CONFIG_NAMES, GUNICORN_ENV_CMD_ARGS, SETTINGS, ConfigError
from h2serve.settings_docs import NOT_IN_GUNICORN
from tests.conftest import ROOT

GUNICORN_NAMES = [name for name, _flags, _status in GUNICORN_SETTINGS]
BENCH_PYTHON = Path.home() / ".cache" / "h2bench-venv" / "bin" / "python"


def test_the_table_holds_gunicorn_27s_120_settings_once_each():
    assert len(GUNICORN_NAMES) == 120 and len(set(GUNICORN_NAMES)) == 120
    assert {status for _name, _flags, status in GUNICORN_SETTINGS} == {IMPLEMENTED, REFUSED}


def test_every_gunicorn_setting_h2serve_knows_is_in_the_table():
    """A setting declared as gunicorn's (not in NOT_IN_GUNICORN) must be one of its names."""
    for setting in SETTINGS:
        if setting.name in NOT_IN_GUNICORN:
            continue
        names = {setting.name, *setting.aliases}
        assert names & set(GUNICORN_NAMES), f"{setting.name} is missing from the gunicorn table"


@pytest.mark.skipif(not BENCH_PYTHON.exists() and os.environ.get("CI") != "true",
                    reason="gunicorn 27 is not installed in ~/.cache/h2bench-venv")
def test_the_table_matches_the_installed_gunicorn():
    """When gunicorn itself is at hand, its list and ours agree, flags included."""
    script = ("import json; from gunicorn import config; "
              "print(json.dumps([[n, s.cli or []] for n, s in config.make_settings().items()]))")
    try:
        output = subprocess.run([str(BENCH_PYTHON), "-c", script], capture_output=True,
                                text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"gunicorn not importable from the bench venv: {exc}")
    live = {name: tuple(flags) for name, flags in json.loads(output)}
    ours = {name: flags for name, flags, _status in GUNICORN_SETTINGS}
    assert live == ours


@pytest.mark.parametrize("name, flags", [(n, f) for n, f, s in GUNICORN_SETTINGS if s == IMPLEMENTED])
def test_implemented_names_are_settings_and_keep_gunicorns_flags(name, flags):
    assert name in CONFIG_NAMES, f"{name} is marked implemented but Config does not know it"
    setting = CONFIG_NAMES[name]
    parser_flags = set(build_parser()._option_string_actions)
    for flag in flags:
        assert flag in parser_flags, f"gunicorn's {flag} is not accepted"
    assert setting.name in Config().__dict__


@pytest.mark.parametrize("name, flags", [(n, f) for n, f, s in GUNICORN_SETTINGS if s == REFUSED])
def test_refused_names_are_never_taken_silently(name, flags, tmp_path):
    assert name not in CONFIG_NAMES, f"{name} is marked refused but is a setting"
    reason = REFUSED_REASONS[name]
    assert reason and not reason.endswith("."), name
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"{name} = 1\n")
    cfg = Config.from_sources(["-c", str(conf), "app:app"], {})
    assert any(name in warning and reason.replace("`", "") in warning
               for warning in cfg.warnings), cfg.warnings
    for flag in flags:
        for argv, environ in (([flag, "app:app"], {}),
                              (["app:app"], {GUNICORN_ENV_CMD_ARGS: flag})):
            with pytest.raises(ConfigError) as info:
                Config.from_sources(argv, environ)
            assert f"gunicorn's {flag} has no equivalent" in str(info.value)


def test_docs_list_every_gunicorn_setting_with_its_status():
    text = (ROOT / "docs" / "gunicorn.md").read_text()
    for name, _flags, status in GUNICORN_SETTINGS:
        row = re.search(rf"^\| `{name}` \|[^\n]*\| {status}", text, re.M)
        assert row, f"docs/gunicorn.md has no {status} row for {name}"


def test_defaults_that_differ_from_gunicorns_are_announced_for_a_gunicorn_file(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 2\nthreads = 1\n")
    notes = Config.from_sources(["-c", str(conf), "app:app"], {}).notes
    assert any("sets no certfile" in note and "plain HTTP" in note for note in notes), notes
    [differing] = [note for note in notes if "default differs" in note]
    assert "keepalive = 5.0 (gunicorn: 2)" in differing and "http_protocols" in differing
    assert "threads" not in differing                      # the file set it
    mine = tmp_path / "h2serve.conf.py"
    mine.write_text("workers = 2\n")
    assert not Config.from_sources(["-c", str(mine), "app:app"], {}).notes
