"""The documentation's commands work and its links lead somewhere.

Every fenced shell command in README.md, docs/*.md and examples/README.md
that starts with `h2serve`, `curl` or `python` is either run here, exactly
as written (only the port and the certificate directory are swapped for
test ones), or listed in ALLOWED (or matched by ALLOWED_PATTERNS) with the
reason it cannot be. The Python snippets of docs/extensions.md are served by
a real h2serve and queried.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, require_tool

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
CHECKED_PROGRAMS = ("h2serve", "curl", "python")
DEFAULT_CERT_DIR = "~/.local/share/h2serve/certs"
README_SERVE = ("python3 -m venv .venv && .venv/bin/pip install -e . && "
                ".venv/bin/h2serve examples.hello:app")
README_CURL = "curl --http2 --cacert ~/.local/share/h2serve/certs/ca.pem https://localhost:8443/"
HELLO_H2 = "Hello from h2serve over HTTP/2.0"


# --------------------------------------------------------------------------
# Reading the docs


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    text: str


def fenced_blocks(path: Path) -> list[Block]:
    blocks, language, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            if language is None:
                language, start, lines = line[3:].strip(), number, []
            else:
                blocks.append(Block(path, start, language, "\n".join(lines) + "\n"))
                language = None
        elif language is not None:
            lines.append(line)
    assert language is None, f"{path}: unclosed code block from line {start}"
    return blocks


def shell_commands(block: Block) -> list[str]:
    """One entry per command; backslash continuations joined, `$ ` prompts dropped."""
    commands, pending = [], ""
    for line in block.text.splitlines():
        line = pending + line.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        line = line.removeprefix("$ ")
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def program_of(command: str) -> str:
    """The program a command line runs, past VAR=value prefixes and .venv/bin/."""
    words = shlex.split(command)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    return words[0].removeprefix(".venv/bin/") if words else ""


def checked_commands() -> dict[str, list[str]]:
    """Documented commands this file must account for -> where they appear."""
    found: dict[str, list[str]] = {}
    for path in DOCS:
        for block in fenced_blocks(path):
            if block.language not in SHELL_LANGUAGES:
                continue
            for command in shell_commands(block):
                if program_of(command).startswith(CHECKED_PROGRAMS):
                    found.setdefault(command, []).append(f"{path.relative_to(ROOT)}:{block.line}")
    return found


def python_block(path: Path, marker: str) -> str:
    """The one ```python block of `path` that contains `marker`."""
    matches = [b.text for b in fenced_blocks(path) if b.language == "python" and marker in b.text]
    assert len(matches) == 1, f"{len(matches)} python blocks in {path.name} contain {marker!r}"
    return matches[0]


def docs_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


# --------------------------------------------------------------------------
# Running documented commands on loopback


class DocServer(ServerProcess):
    """A documented `h2serve ...` command, run with a free port and a test cert dir."""

    def __init__(self, command: str, cwd: Path, cert_dir: Path) -> None:
        words = shlex.split(command)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
               "H2SERVE_CERT_DIR": str(cert_dir), "H2SERVE_CMD_ARGS": ""}
        env.pop("WEB_CONCURRENCY", None)
        while re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        assert program_of(words[0]) == "h2serve", command
        args = words[1:]
        for flag in ("--bind", "-b"):
            if flag in args:
                args[args.index(flag) + 1] = "127.0.0.1:0"
                break
        else:  # no --bind: add one where it beats a config file but not the command line
            env["H2SERVE_CMD_ARGS"] = (env["H2SERVE_CMD_ARGS"] + " --bind 127.0.0.1:0").strip()
        self.command = command
        self.cert_dir = cert_dir
        super().__init__([sys.executable, "-m", "h2serve", *args], env,
                         cafile=str(cert_dir / "ca.pem"), tls=True, cwd=cwd)
        match = self.wait_for(r"Listening at: (https?)://(\S+):(\d+)")
        self.tls, self.port = match.group(1) == "https", int(match.group(3))
        self.wait_for(r"Booting worker with pid")

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match:
        return self.wait_for_log(pattern, timeout)[0]

    def stop(self) -> int:
        return super().stop(signal.SIGTERM, timeout=15)


def run_doc_curl(command: str, port: int, cert_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run a documented curl command against `port`, trusting the test CA."""
    assert program_of(command) == "curl", command
    text = command.replace(DEFAULT_CERT_DIR, str(cert_dir))
    text = re.sub(r"(https?://(?:localhost|127\.0\.0\.1|\[::1\])):\d+", rf"\g<1>:{port}", text)
    words = shlex.split(text)
    return subprocess.run([require_tool("curl"), "-sS", *words[1:]], cwd=cwd, capture_output=True,
                          timeout=60)


# --------------------------------------------------------------------------
# What is run, and what is not


@dataclass
class Step:
    """A documented curl command and what its output (stdout + stderr) must contain."""

    command: str
    expect: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = None


@dataclass
class Scenario:
    name: str
    server: str                                   # a documented h2serve command
    steps: list[Step] = field(default_factory=list)
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (doc, marker)
    log: tuple[str, ...] = ()                     # patterns the server log must show
    extra: Callable[[DocServer], None] | None = None


def _request_trailers_round_trip(server: DocServer) -> None:
    """HTTP/1.1 chunked body with a trailer: the snippet reports it back."""
    context = ssl.create_default_context(cafile=server.cafile)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply
    assert json.loads(body) == {"bytes": 5, "trailers": [["x-checksum", "abc123"]]}


def _stream_and_alpn(server: DocServer) -> None:
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=server.cafile),
                      timeout=10) as client:
        texts = [client.get(f"https://localhost:{server.port}/").text for _ in range(2)]
    assert texts == ["HTTP/2.0 via h2, stream 1\n", "HTTP/2.0 via h2, stream 3\n"], texts
    with httpx.Client(verify=ssl.create_default_context(cafile=server.cafile), timeout=10) as client:
        text = client.get(f"https://localhost:{server.port}/").text
    assert text == "HTTP/1.1 via http/1.1, stream 1\n", text


def _file_size(name: str, size: int) -> Callable[[Path], None]:
    def check(cwd: Path) -> None:
        assert (cwd / name).stat().st_size == size

    return check


def _grpc_reply(cwd: Path) -> None:
    assert (cwd / "reply.bin").read_bytes() == b"\0\0\0\0\x0dHello, world!"


EXT = "docs/extensions.md"
QUICK = "docs/quickstart.md"
CA_CURL_V = "curl -v --http2 --cacert ~/.local/share/h2serve/certs/ca.pem https://localhost:8443/"

SCENARIOS = [
    Scenario("quickstart-tls", "h2serve examples.hello:app", [Step(README_CURL, (HELLO_H2,))],
             log=(r"serving the development certificate", r"Trust its CA to connect: curl --cacert")),
    Scenario("quickstart-plaintext", "h2serve --plaintext --bind 127.0.0.1:8000 examples.hello:app", [
        Step("curl http://127.0.0.1:8000/", ("Hello from h2serve over HTTP/1.1",)),
        Step("curl --http2-prior-knowledge http://127.0.0.1:8000/", (HELLO_H2,)),
        Step("curl --http2 http://127.0.0.1:8000/", (HELLO_H2,)),
    ]),
    Scenario("quickstart-config-file", "h2serve -c h2serve.conf.py", [Step(README_CURL, (HELLO_H2,))],
             files={"h2serve.conf.py": (QUICK, "# h2serve.conf.py")},
             log=(r"Starting h2serve \(2 workers x 8 threads, TLS\)",)),
    Scenario("quickstart-env-args",
             'H2SERVE_CMD_ARGS="--workers 2 --threads 8" h2serve examples.hello:app',
             [Step(README_CURL, (HELLO_H2,))],
             log=(r"Starting h2serve \(2 workers x 8 threads, TLS\)",)),
    Scenario("example-early-hints", "h2serve examples.early_hints:app", [
        Step(CA_CURL_V, ("< HTTP/2 103", "< link: </static/site.css>; rel=preload; as=style",
                         "< HTTP/2 200")),
    ]),
    Scenario("example-trailers-grpc", "h2serve examples.trailers_grpc:app", [
        Step(CA_CURL_V + " -o reply.bin", ("< grpc-status: 0", "< grpc-message: OK"), _grpc_reply),
    ]),
    Scenario("example-sse", "h2serve examples.sse:app", [
        Step("curl -N --http2 --cacert ~/.local/share/h2serve/certs/ca.pem "
             "'https://localhost:8443/?n=3'", ("id: 3\nevent: tick", "event: done")),
    ]),
    Scenario("example-download", "h2serve examples.download:app", [
        Step("curl --http2 --cacert ~/.local/share/h2serve/certs/ca.pem -o download.bin "
             "'https://localhost:8443/?size=104857600'", (), _file_size("download.bin", 104857600)),
    ]),
    Scenario("snippet-early-hints", "h2serve snippet:app", [
        Step(CA_CURL_V, ("< HTTP/2 103", "< link: </static/app.css>; rel=preload; as=style")),
    ], files={"snippet.py": (EXT, '"wsgi.early_hints"')}),
    Scenario("snippet-send-trailers", "h2serve snippet:app", [
        Step(CA_CURL_V, ("< x-content-sha256: ",)),
        Step("curl --raw --http1.1 -H 'TE: trailers' --cacert ~/.local/share/h2serve/certs/ca.pem "
             "https://localhost:8443/", ("\r\n0\r\nx-content-sha256: ",)),
    ], files={"snippet.py": (EXT, '"h2serve.send_trailers"')}),
    Scenario("snippet-request-trailers", "h2serve snippet:app",
             files={"snippet.py": (EXT, '"h2serve.request_trailers"')},
             extra=_request_trailers_round_trip),
    Scenario("snippet-priority", "h2serve snippet:app", [
        Step("curl --http2 -H 'Priority: u=1, i' --cacert ~/.local/share/h2serve/certs/ca.pem "
             "https://localhost:8443/", ("urgency 1, incremental True",)),
    ], files={"snippet.py": (EXT, '"h2serve.priority"')}),
    Scenario("snippet-stream-id-alpn", "h2serve snippet:app",
             files={"snippet.py": (EXT, "'h2serve.alpn'")}, extra=_stream_and_alpn),
    Scenario("snippet-gunicorn-keys", "h2serve snippet:app", [
        Step(CA_CURL_V, ("< x-priority-weight: 16",)),
    ], files={"snippet.py": (EXT, '"gunicorn.http2.send_trailers"')}),
]

# Commands run by tests elsewhere: command -> test that runs it.
RUN_ELSEWHERE = {
    README_SERVE: "tests/test_examples.py::test_readme_serve_command",
    README_CURL: "tests/test_examples.py::test_readme_serve_command",
}

# Documented commands that are not run, and why.
ALLOWED = {
    "python3 -m venv .venv && .venv/bin/pip install -e .":
        "installs the package from PyPI into a new virtualenv; ./scripts/test runs the same "
        "install before the suite, and the suite runs from it",
    "h2serve --certfile server.crt --keyfile server.key app:app":
        "server.crt, server.key and app:app stand for the reader's own certificate and application",
}

# Whole families of commands that are not run, and why.
ALLOWED_PATTERNS = [
    (re.compile(r"\bmy[a-z]*\.wsgi:application\b"),
     "serves the reader's own application (docs call it myapp.wsgi:application) on "
     "deployment paths, certificates and addresses"),
]

ONE_SHOT = {
    # command -> (text its output must contain, files it must create in the cert dir)
    "h2serve certs": ("Development certificates are in", ("ca.pem", "localhost.pem")),
}


def _scenario_commands() -> set[str]:
    commands = set()
    for scenario in SCENARIOS:
        commands.add(scenario.server)
        commands.update(step.command for step in scenario.steps)
    return commands


def test_every_documented_command_is_run_or_allowed():
    documented = checked_commands()
    assert README_SERVE in documented and README_CURL in documented
    accounted = _scenario_commands() | set(RUN_ELSEWHERE) | set(ALLOWED) | set(ONE_SHOT)
    missing = {cmd: where for cmd, where in documented.items()
               if cmd not in accounted and not any(p.search(cmd) for p, _ in ALLOWED_PATTERNS)}
    assert not missing, f"documented commands neither run nor allowed: {missing}"


def test_every_listed_command_is_still_documented():
    """No stale entries: what this file runs or excuses is what the docs say."""
    documented = set(checked_commands())
    text = docs_text()
    for scenario in SCENARIOS:
        # snippet servers are named in prose (`h2serve snippet:app`), not in a block
        assert scenario.server in documented or f"`{scenario.server}`" in text, scenario.server
        for step in scenario.steps:
            assert step.command in documented, step.command
    for command in [*RUN_ELSEWHERE, *ALLOWED, *ONE_SHOT]:
        assert command in documented, command
    tests_dir = ROOT / "tests"
    for target in RUN_ELSEWHERE.values():
        file_name, test_name = target.split("::")
        assert f"def {test_name}(" in (ROOT / file_name).read_text(), target
        assert (tests_dir / Path(file_name).name).exists()


def test_every_extension_snippet_is_served():
    used = {marker for s in SCENARIOS for doc, marker in s.files.values() if doc == EXT}
    snippets = [b for b in fenced_blocks(ROOT / EXT) if b.language == "python"]
    assert snippets
    for block in snippets:
        assert any(marker in block.text for marker in used), f"snippet at line {block.line} is never run"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_documented_commands_work(scenario: Scenario, tmp_path: Path):
    if scenario.steps:
        require_tool("curl")
    cert_dir = tmp_path / "certs"
    for name, (doc, marker) in scenario.files.items():
        (tmp_path / name).write_text(python_block(ROOT / doc, marker), encoding="utf-8")
    server = DocServer(scenario.server, tmp_path, cert_dir)
    try:
        for pattern in scenario.log:
            server.wait_for(pattern)
        for step in scenario.steps:
            result = run_doc_curl(step.command, server.port, cert_dir, tmp_path)
            output = result.stdout.decode("latin-1") + result.stderr.decode("latin-1")
            assert result.returncode == 0, f"{step.command}:\n{output}"
            for expected in step.expect:
                assert expected in output, f"{step.command}: no {expected!r} in:\n{output}"
            if step.check is not None:
                step.check(tmp_path)
        if scenario.extra is not None:
            scenario.extra(server)
    finally:
        server.stop()
    assert "Traceback" not in server.log, server.log
    assert "Error handling request" not in server.log, server.log


@pytest.mark.parametrize("command", sorted(ONE_SHOT))
def test_documented_one_shot_commands(command: str, tmp_path: Path):
    expected, files = ONE_SHOT[command]
    words = shlex.split(command)
    assert words[0] == "h2serve"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "H2SERVE_CERT_DIR": str(tmp_path / "certs")}
    result = subprocess.run([sys.executable, "-m", "h2serve", *words[1:]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    for name in files:
        assert (tmp_path / "certs" / name).is_file(), name


# --------------------------------------------------------------------------
# Links

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub-style heading anchors of a markdown file."""
    anchors = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add("".join(ch for ch in title if ch.isalnum() or ch in " -_").replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    broken = []
    for target in _LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"



def test_security_table_names_existing_tests():
    """docs/security.md promises a test per attack: each name it quotes must exist."""
    doc = (ROOT / "docs" / "security.md").read_text()
    names = set(re.findall(r"`(?:tests/\w+\.py::)?(test_\w+)", doc))
    sources = "\n".join(path.read_text() for path in (ROOT / "tests").glob("*.py"))
    assert names, "no test names found in docs/security.md"
    missing = sorted(name for name in names if f"def {name}(" not in sources)
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
