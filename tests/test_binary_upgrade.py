"""USR2, as gunicorn's binary upgrade: the master starts a new master from the
code installed now, handing it the listening sockets; both serve until the old
one is stopped. Under h2load across USR2 and the old master's graceful stop,
every request that went on the wire is answered."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import require_tool

PRE_EXEC_CONF = '''
import os

def pre_exec(server):
    with open(os.environ["PRE_EXEC_EVIDENCE"], "a") as out:
        out.write(f"{server.pid} {os.getpid()}\\n")
'''


def _read_pid(path: Path, timeout: float = 20.0, not_this: int = 0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(path.read_text().strip())
            if pid != not_this:
                return pid
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{path} never named a new master")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def _parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def test_usr2_upgrade_under_h2load_loses_no_request(h2serve_server, tmp_path):
    h2load = require_tool("h2load")
    conf = tmp_path / "upgrade.conf.py"
    conf.write_text(PRE_EXEC_CONF)
    evidence = tmp_path / "pre_exec.txt"
    pidfile = tmp_path / "h2serve.pid"
    server = h2serve_server("tests.apps:router", "-c", str(conf), "--pid", str(pidfile),
                            workers=2, env={"PRE_EXEC_EVIDENCE": str(evidence)})
    old = server.proc.pid
    assert _read_pid(pidfile) == old
    request_log = tmp_path / "h2load-requests.tsv"
    load = subprocess.Popen([h2load, "--log-file", str(request_log), "-c", "8", "-m", "4",
                             "-D", "6", "--rps", "50", f"{server.url}/hello"],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    new = 0
    try:
        time.sleep(1.0)
        os.kill(old, signal.SIGUSR2)
        new = _read_pid(pidfile, not_this=old)
        assert _read_pid(Path(f"{pidfile}.oldbin")) == old
        assert evidence.read_text().split() == [str(old), str(new)]   # in the new master, before exec
        server.wait_for_log(rf"\[{new}\] \[INFO\] Binary upgrade: taking over the listening "
                            rf"sockets of master {old}")
        new_workers = server.wait_for_log(r"\[(\d+)\] \[INFO\] Booting worker", count=4)[2:]
        time.sleep(1.0)   # both generations serve for a while
        server.proc.send_signal(signal.SIGTERM)   # the old master goes, gracefully
        assert server.proc.wait(timeout=20) == 0
        output, _ = load.communicate(timeout=30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    summary = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                        r"(\d+) failed, (\d+) errored", output)
    assert summary, output
    total, _started, done, succeeded, failed, errored = map(int, summary.groups())
    # h2load's per-request log: start (µs), status, duration. A request h2load
    # tried to start after it had read a GOAWAY was refused by its own HTTP/2
    # library and never sent: status -1 and no start time. The server cannot
    # lose those; every request that went on the wire must have been answered.
    never_sent, lost = 0, []
    for line in request_log.read_text().splitlines():
        start, status, _duration = line.split("\t")
        if status == "-1" and start == "0":
            never_sent += 1
        elif not 200 <= int(status) < 300:
            lost.append(line)
    print(f"h2load across the upgrade: {done} done, {succeeded} succeeded, {failed} failed, "
          f"{errored} errored, of which {never_sent} were refused by h2load itself after a "
          "GOAWAY and never sent")
    try:
        assert not lost and failed == errored == never_sent and succeeded == done - never_sent > 100, (
            output + "\n" + "\n".join(lost) + "\n" + "\n".join(
                line for line in server.log.splitlines() if "[INFO]" not in line))
        assert _alive(new) and not Path(f"{pidfile}.oldbin").exists()
        # The new master's workers answer, on the same address.
        with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=server.cafile)) as client:
            answer = client.get(f"{server.url}/hello")
        assert answer.status_code == 200
        new_pids = {int(m.group(1)) for m in new_workers}
        assert all(_parent_of(pid) == new for pid in new_pids)
    finally:
        if new and _alive(new):
            os.kill(new, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _alive(new) and time.monotonic() < deadline:
                time.sleep(0.1)
    assert not _alive(new)


def test_winch_is_ignored_unless_daemonized(h2serve_server):
    server = h2serve_server("tests.apps:router", workers=1)
    server.send_signal(signal.SIGWINCH)
    server.wait_for_log(r"Handling signal: winch")
    server.wait_for_log(r"SIGWINCH ignored: not daemonized")
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=server.cafile)) as client:
        assert client.get(f"{server.url}/hello").status_code == 200
