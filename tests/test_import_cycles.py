"""Imports run one way: scripts/import_cycles.py finds no cycle in h2spec nor
in h2serve (issue 12). The script is loaded in-process, not run as a child."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "scripts" / "import_cycles.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


import_cycles = _load_script()


def _check(package: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = import_cycles.main([str(ROOT / package)])
    assert status == 0, capsys.readouterr().out


def test_h2spec_has_no_import_cycle(capsys):
    _check("h2spec", capsys)


def test_h2serve_has_no_import_cycle(capsys):
    _check("h2serve", capsys)


def test_a_cycle_is_reported_and_fails(tmp_path, capsys):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    # A relative import inside a function still counts.
    (package / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    (package / "c.py").write_text("import pkg.a\n")

    assert import_cycles.main([str(package)]) == 1
    out = capsys.readouterr().out
    assert "CYCLE: ['pkg.a', 'pkg.sub.b']" in out
    assert "pkg.c" not in out


def test_one_way_imports_pass(tmp_path, capsys):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("import os\n")
    (package / "high.py").write_text("from pkg import low\nfrom .low import os\n")

    assert import_cycles.main([str(package)]) == 0
    assert capsys.readouterr().out == ""
