"""The `unit` marker stays honest: a test tests/conftest.py marks as a unit test
starts no process and opens no socket (`-m unit` is the fast, offline run).

A source check, not a sandbox: each listed file is parsed, and a test is I/O
when it (or a module-level helper, fixture or class it names, transitively)
names one of IO_NAMES, e.g. the h2serve_server fixture, `socket` or
`subprocess`. Such a test must be one the list leaves out, and a file the list
takes whole must not import socket or subprocess at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import UNIT_TESTS

TESTS = Path(__file__).resolve().parent

# Names whose use means a process or a socket: modules, calls, and the
# fixtures/helpers of tests/conftest.py that start a server.
IO_NAMES = frozenset({
    "socket", "subprocess", "selectors", "ssl", "multiprocessing", "Popen", "fork",
    "create_connection", "check_app_in_child",
    "h2serve_server", "dev_certs", "ServerProcess", "start_expecting_exit", "require_tool",
})
FORBIDDEN_IMPORTS = frozenset({"socket", "subprocess", "multiprocessing"})

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _names_used(node: ast.AST) -> set[str]:
    """Every name, attribute and parameter name inside a definition."""
    used: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            used.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            used.add(sub.attr)
        elif isinstance(sub, ast.arg):
            used.add(sub.arg)
    return used


def io_definitions(tree: ast.Module) -> dict[str, str]:
    """Module-level functions and classes that do I/O, each with why."""
    definitions = {node.name: node for node in tree.body if isinstance(node, Definition)}
    used = {name: _names_used(node) for name, node in definitions.items()}
    io = {name: f"uses {sorted(names & IO_NAMES)}" for name, names in used.items() if names & IO_NAMES}
    changed = True
    while changed:
        changed = False
        for name, names in used.items():
            reached = sorted(names & io.keys() - {name})
            if name not in io and reached:
                io[name] = f"via {reached}"
                changed = True
    return io


def _test_names(tree: ast.Module) -> set[str]:
    return {node.name for node in tree.body
            if isinstance(node, Definition) and node.name.lower().startswith("test")}


def _imported_modules(tree: ast.Module) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("filename", sorted(UNIT_TESTS))
def test_unit_tests_start_no_process_and_open_no_socket(filename: str) -> None:
    path = TESTS / filename
    assert path.is_file(), f"tests/conftest.py UNIT_TESTS names {filename}, which does not exist"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    not_unit = UNIT_TESTS[filename]
    io = io_definitions(tree)
    tests = _test_names(tree)

    marked_io = {name: io[name] for name in sorted(tests - not_unit) if name in io}
    assert not marked_io, (
        f"{filename}: these tests are marked unit but start a process or open a socket; "
        f"list them in UNIT_TESTS[{filename!r}] in tests/conftest.py: {marked_io}"
    )
    assert not_unit <= tests, f"{filename}: no such tests: {sorted(not_unit - tests)}"
    assert not_unit <= io.keys(), (
        f"{filename}: these tests do no I/O, so they can be marked unit: {sorted(not_unit - io.keys())}"
    )
    if not not_unit:
        imported = sorted(_imported_modules(tree) & FORBIDDEN_IMPORTS)
        assert not imported, f"{filename} is all unit tests but imports {imported}"


def test_the_check_sees_io_through_helpers_and_fixtures() -> None:
    tree = ast.parse(
        "import socket\n"
        "def _connect(port):\n    return socket.create_connection(('127.0.0.1', port))\n"
        "def _send(port):\n    return _connect(port)\n"
        "@pytest.fixture\ndef server(h2serve_server):\n    return h2serve_server()\n"
        "def test_via_helper():\n    _send(1)\n"
        "def test_via_fixture(server):\n    pass\n"
        "def test_pure():\n    assert 1 + 1 == 2\n"
    )
    io = io_definitions(tree)
    assert {"test_via_helper", "test_via_fixture", "_connect", "_send", "server"} <= io.keys()
    assert "test_pure" not in io
