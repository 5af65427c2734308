#!/usr/bin/env python3
"""Dirty arbiters benchmark: h2serve against gunicorn on the same dirty app.

Each server runs bench_dirty_app.py (next to this script) with the same
shape: W HTTP workers x T threads, D dirty workers x DT dirty threads, TLS
with the same certificate. h2load drives a fixed number of connections
(one request in flight each) at /sleep, /cpu and /payload, whose views call
the dirty app. Every (server, protocol, action) row is run --repeat times,
each repeat on a freshly started server, and the medians are reported.

    python scripts/bench_dirty.py [--repeat 3] [--duration 10]
        [--h2serve-src DIR]        h2serve checkout to import (env H2SERVE_SRC,
                                   default: this script's repository)
        [--gunicorn-python PATH]   a Python with gunicorn >= 25 (env GUNICORN_PYTHON)

Needs h2load (nghttp2). Binds 127.0.0.1 only. Prints a markdown table and
writes the raw numbers as JSON (--json).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_MODULE = "bench_dirty_app"

ACTIONS = {   # name -> URL path and query (the work done in the dirty worker)
    "sleep": "/sleep?ms=10",
    "cpu": "/cpu?n=100000",          # about 5 ms of pure-Python work
    "payload": "/payload?size=65536",  # a 64 KiB string through the dirty IPC
}
PROTOCOLS = ("h1", "h2")


def default_h2serve_src() -> str:
    env = os.environ.get("H2SERVE_SRC")
    if env:
        return env
    return str(HERE.parent)   # <repo>/scripts/


def default_certs(src: str) -> tuple[str, str]:
    """A development certificate from `h2serve certs` (made on first use)."""
    directory = Path(tempfile.gettempdir()) / "h2serve-bench-dirty-certs"
    cert, key = directory / "localhost.pem", directory / "localhost-key.pem"
    if not (cert.is_file() and key.is_file()):
        subprocess.run([sys.executable, "-m", "h2serve", "certs", "--dir", str(directory)],
                       check=True, capture_output=True, env={**os.environ, "PYTHONPATH": src})
    return str(cert), str(key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- process tree snapshots (for leaks: threads, fds and RSS per process) -------

def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def tree_snapshot(root: int) -> list[dict]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        todo.extend(sorted(kids.get(pid, [])))
        info = {"pid": pid}
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                info["cmd"] = handle.read().replace(b"\0", b" ").decode(errors="replace")[:80]
            with open(f"/proc/{pid}/stat") as handle:
                stat = handle.read().rsplit(")", 1)[1].split()
            info["cpu_s"] = round((int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"), 2)
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith(("VmRSS:", "Threads:")):
                        key, value = line.split(":", 1)
                        info[key.lower()] = value.split()[0]
            info["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        out.append(info)
    return out


# --- servers ---------------------------------------------------------------------

class Server:
    def __init__(self, name: str, argv: list[str], env: dict, port: int, log_path: Path) -> None:
        self.name, self.argv, self.env, self.port, self.log_path = name, argv, env, port, log_path
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 60.0) -> None:
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n=== start {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
        self._log.flush()
        # Own session: the whole server tree (master, HTTP and dirty workers) is ours to stop.
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=str(HERE))
        deadline = time.monotonic() + ready_timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                status = get(self.port, "/ping", timeout=5)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {ready_timeout:g} s ({last}); "
                           f"see {self.log_path}")

    def stop(self, grace: float = 20.0) -> float:
        """SIGTERM the master, wait, then SIGKILL what is left of its session.
        Returns how long the graceful stop took."""
        if self.proc is None:
            return 0.0
        t0 = time.monotonic()
        pid = self.proc.pid
        if self.proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._log.write(b"=== bench: graceful stop timed out, SIGKILL\n")
        took = time.monotonic() - t0
        try:
            os.killpg(pid, signal.SIGKILL)   # leftovers of our own session only
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.write(f"=== stopped in {took:.2f} s\n".encode())
        self._log.close()
        self.proc = None
        return took


def get(port: int, path: str, timeout: float) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def server_argv(kind: str, args: argparse.Namespace, port: int) -> tuple[list[str], dict]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    common = [
        f"{APP_MODULE}:application", "-b", f"127.0.0.1:{port}",
        "-w", str(args.workers), "--threads", str(args.threads),
        "--dirty-app", f"{APP_MODULE}:BenchApp",
        "--dirty-workers", str(args.dirty_workers), "--dirty-threads", str(args.dirty_threads),
        "--dirty-timeout", "60", "--certfile", args.certfile, "--keyfile", args.keyfile,
        "--pythonpath", str(args.app_dir), "--log-level", "warning", "-t", "60",
    ]
    if kind == "gunicorn":
        env["BENCH_DIRTY_SERVER"] = "gunicorn"
        return [args.gunicorn_python, "-m", "gunicorn", *common, "-k", "gthread",
                "--http-protocols", "h2,h1"], env
    env["BENCH_DIRTY_SERVER"] = "h2serve"
    env["PYTHONPATH"] = args.h2serve_src
    return [args.h2serve_python, "-m", "h2serve", *common], env


# --- load ------------------------------------------------------------------------

def run_h2load(args: argparse.Namespace, port: int, proto: str, path: str,
               workdir: Path) -> dict:
    log_file = workdir / "h2load-requests.log"
    log_file.unlink(missing_ok=True)
    cmd = [args.h2load, "-D", str(args.duration), "--warm-up-time", str(args.warmup),
           "-c", str(args.connections), "-m", "1", "-t", "1", "--log-file", str(log_file),
           f"https://127.0.0.1:{port}{path}"]
    if proto == "h1":
        cmd.insert(1, "--h1")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=args.duration + args.warmup + 10)
        out, timed_out = done.stdout + done.stderr, False
    except subprocess.TimeoutExpired as exc:   # run() killed h2load (our child)
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        timed_out = True
    return parse_h2load(out, log_file, timed_out, cmd)


def _num(pattern: str, text: str, default: float = 0.0) -> float:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else default


def parse_h2load(out: str, log_file: Path, timed_out: bool, cmd: list[str],
                 skip: float = 0.0) -> dict:
    """Numbers from h2load's per-request log (start in us since the epoch, status,
    duration in us), which holds the measured period only (not the warm-up); the
    log is used because h2load's summary is missing when h2load had to be killed.
    skip: seconds more to leave out at the start of the measured period."""
    entries = []
    if log_file.exists():
        for line in log_file.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit():
                entries.append((int(parts[0]), int(parts[1]), int(parts[2])))
    latencies, bad = [], 0
    window = 0.0
    if entries:
        first = min(e[0] for e in entries)
        begin = first + int(skip * 1e6)
        measured = [e for e in entries if e[0] >= begin]
        end = max((e[0] + e[2] for e in measured), default=begin)
        window = (end - begin) / 1e6
        for _start, status, micros in measured:
            if 200 <= status < 300:
                latencies.append(micros / 1000.0)
            else:
                bad += 1   # status 0: the request failed (reset, closed, timed out)
    latencies.sort()

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(round(p / 100 * (len(latencies) - 1))))]

    failed = int(_num(r"(\d+) failed", out))
    errored = int(_num(r"(\d+) errored", out))
    timeouts = int(_num(r"(\d+) timeout", out))
    return {
        "calls_per_s": len(latencies) / window if window > 0 else 0.0,
        "ok": len(latencies), "seconds": round(window, 3), "p50_ms": pct(50),
        "p99_ms": pct(99), "max_ms": latencies[-1] if latencies else None,
        "errors": bad, "h2load_failed": failed, "h2load_errored": errored,
        "h2load_timeouts": timeouts, "h2load_hung": timed_out, "cmd": " ".join(cmd),
        "summary": "\n".join(line for line in out.splitlines()
                             if line.startswith(("finished", "requests:", "status codes",
                                              "time for request", "Application protocol"))),
    }


# --- report ----------------------------------------------------------------------

def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summarize(runs: list[dict]) -> list[dict]:
    rows: dict[tuple, list[dict]] = {}
    for run in runs:
        rows.setdefault((run["server"], run["protocol"], run["action"]), []).append(run)
    out = []
    for (server, proto, action), group in rows.items():
        out.append({
            "server": server, "protocol": proto, "action": action, "repeats": len(group),
            "calls_per_s": _median([g["calls_per_s"] for g in group]),
            "p50_ms": _median([g["p50_ms"] for g in group]),
            "p99_ms": _median([g["p99_ms"] for g in group]),
            "errors": sum(g["errors"] for g in group),
            "h2load_hung": sum(1 for g in group if g["h2load_hung"]),
            "calls_per_s_runs": [round(g["calls_per_s"], 1) for g in group],
            "p99_ms_runs": [None if g["p99_ms"] is None else round(g["p99_ms"], 2)
                            for g in group],
        })
    order = {a: i for i, a in enumerate(ACTIONS)}
    out.sort(key=lambda r: (order.get(r["action"], 99), r["protocol"], r["server"]))
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| server | proto | action | calls/s | p50 ms | p99 ms | errors | calls/s per run |"
             " h2load hung |",
             "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['server']} | {r['protocol']} | {r['action']} | "
                     f"{_fmt(r['calls_per_s'])} | {_fmt(r['p50_ms'], 2)} | "
                     f"{_fmt(r['p99_ms'], 2)} | {r['errors']} | "
                     f"{', '.join(str(v) for v in r['calls_per_s_runs'])} | {r['h2load_hung']} |")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=1, help="h2load warm-up seconds per run")
    parser.add_argument("--connections", type=int, default=8,
                        help="h2load connections, one request in flight on each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--dirty-workers", type=int, default=2)
    parser.add_argument("--dirty-threads", type=int, default=1)
    parser.add_argument("--servers", default="h2serve,gunicorn")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--actions", default=",".join(ACTIONS))
    parser.add_argument("--h2serve-src", default=default_h2serve_src())
    parser.add_argument("--h2serve-python", default=sys.executable)
    parser.add_argument("--gunicorn-python", default=os.environ.get(
        "GUNICORN_PYTHON", os.path.expanduser("~/.cache/h2bench-venv/bin/python")))
    parser.add_argument("--app-dir", default=str(HERE),
                        help=f"directory holding {APP_MODULE}.py")
    parser.add_argument("--certfile", default=None)
    parser.add_argument("--keyfile", default=None)
    parser.add_argument("--h2load", default=shutil.which("h2load") or "h2load")
    parser.add_argument("--out", default=None, help="directory for logs (default: a temp dir)")
    parser.add_argument("--json", default=None, help="write results here (default: OUT/results.json)")
    args = parser.parse_args(argv)

    cert, key = default_certs(args.h2serve_src)
    args.certfile = args.certfile or cert
    args.keyfile = args.keyfile or key
    if not (args.certfile and args.keyfile):
        parser.error("no certificate found: pass --certfile and --keyfile")
    if not (Path(args.app_dir) / f"{APP_MODULE}.py").is_file():
        parser.error(f"{APP_MODULE}.py not found in {args.app_dir}")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-dirty-"))
    out.mkdir(parents=True, exist_ok=True)
    servers = [s for s in args.servers.split(",") if s]
    protocols = [p for p in args.protocols.split(",") if p]
    actions = [a for a in args.actions.split(",") if a]

    runs: list[dict] = []
    stops: list[dict] = []
    snapshots: list[dict] = []
    print(f"h2serve from {args.h2serve_src}; gunicorn via {args.gunicorn_python}; logs in {out}",
          file=sys.stderr)
    for rep in range(args.repeat):
        order = servers if rep % 2 == 0 else list(reversed(servers))   # spread drift
        for kind in order:
            port = free_port()
            cmd, env = server_argv(kind, args, port)
            server = Server(kind, cmd, env, port, out / f"{kind}.log")
            try:
                server.start()
                snapshots.append({"server": kind, "repeat": rep, "when": "ready",
                                  "tree": tree_snapshot(server.proc.pid)})
                for proto in protocols:
                    for action in actions:
                        result = run_h2load(args, port, proto, ACTIONS[action], out)
                        result.update(server=kind, protocol=proto, action=action, repeat=rep)
                        runs.append(result)
                        print(f"[rep {rep}] {kind:8} {proto} {action:8} "
                              f"{result['calls_per_s']:8.1f}/s p50 {_fmt(result['p50_ms'], 2)} "
                              f"p99 {_fmt(result['p99_ms'], 2)} ms errors {result['errors']}"
                              + (" (h2load hung, killed)" if result["h2load_hung"] else ""), file=sys.stderr, flush=True)
                snapshots.append({"server": kind, "repeat": rep, "when": "after-load",
                                  "tree": tree_snapshot(server.proc.pid)})
            finally:
                stops.append({"server": kind, "repeat": rep, "stop_s": round(server.stop(), 2)})

    rows = summarize(runs)
    table = markdown(rows)
    config = {k: v for k, v in vars(args).items()}
    config.update(actions={a: ACTIONS[a] for a in actions}, protocols=protocols,
                  time=time.strftime("%Y-%m-%d %H:%M:%S"), argv=sys.argv)
    json_path = Path(args.json) if args.json else out / "results.json"
    json_path.write_text(json.dumps({"config": config, "rows": rows, "runs": runs,
                                     "stops": stops, "snapshots": snapshots}, indent=1))
    print(table)
    print("\nMedians over the repeats, h2load's warm-up excluded. errors: non-2xx or failed requests "
          "(summed over repeats). h2load hung: runs where h2load did not finish by itself and "
          "was killed (numbers then come from the requests it logged; seen with gunicorn's "
          "HTTP/2, where a connection holds a worker thread for its life, so connections beyond "
          "a worker's threads are never served).")
    print(f"\nJSON: {json_path}; server logs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
