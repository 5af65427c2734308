#!/usr/bin/env python3
"""Peak RSS per worker process, h2serve against gunicorn, on the benchmark's own workloads.

The shared harness (../shared/bench/run) records the RSS summed over a server's
whole process tree, which favours servers with fewer or smaller helper
processes and hides how big one worker gets. This script loads the harness as
a module and reuses its servers, apps, settings, certificate, readiness probe
and h2load invocation unchanged; only the memory bookkeeping differs: every
~0.2 s it reads VmRSS and VmHWM of each descendant of the server's root (the
arbiter), and once more when the load is over, before the server is stopped.

    .venv/bin/python scripts/worker_rss.py --duration 5 --repeat 3   # from the repository root

A worker's peak is max(VmHWM, sampled VmRSS): VmHWM is the kernel's own
high-water mark, so a spike between two samples is not missed. Run it with
h2serve's virtualenv Python from the repository root, as the harness expects.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

# The harness beside the repository (../shared/bench/run from its root).
DEFAULT_BENCH = str(Path(__file__).resolve().parents[2] / "shared" / "bench" / "run")
KIB = 1024
MIB = 2**20
IDLE_WORKER_CPU_S = 0.05  # CPU spent during the load below which a worker served nothing


def load_harness(path: str) -> ModuleType:
    """Import the extension-less harness script as module `h2bench`, so that its
    workloads, command lines and helpers are the very ones the benchmark uses."""
    loader = importlib.machinery.SourceFileLoader("h2bench", path)
    spec = importlib.util.spec_from_loader("h2bench", loader)
    if spec is None:
        raise SystemExit(f"cannot load the benchmark harness from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["h2bench"] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


# --- per-process memory ---------------------------------------------------------------

def read_status(pid: int) -> dict[str, int] | None:
    """VmRSS and VmHWM of pid in bytes, or None once it has exited (or is a zombie,
    whose status has no memory lines)."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0]) * KIB
    except (OSError, ValueError):
        return None
    return values if len(values) == 2 else None


def read_rollup(pid: int) -> dict[str, int] | None:
    """Pss and private (unshared) memory of pid in bytes, from smaps_rollup: what
    the worker costs beyond the pages it still shares with the arbiter."""
    values = {"Pss": 0, "Private_Clean": 0, "Private_Dirty": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in values:
                    values[name] = int(rest.split()[0]) * KIB
    except (OSError, ValueError):
        return None
    return {"pss": values["Pss"], "private": values["Private_Clean"] + values["Private_Dirty"]}


def read_cmdline(pid: int) -> str:
    """The process's command line, for telling workers from any other helper."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class ProcessRecord:
    """What was seen of one process of the server's tree."""

    pid: int
    ppid: int
    depth: int                  # 1: a child of the root, 2: a grandchild, ...
    cmdline: str
    first_seen_s: float
    last_seen_s: float = 0.0
    peak_rss: int = 0           # largest sampled VmRSS
    hwm: int = 0                # largest VmHWM read
    cpu_s: float = 0.0          # utime + stime at the last sample
    cpu_at_load_start: float | None = None
    alive_at_end: bool = False
    final: dict[str, int] = field(default_factory=dict)  # pss/private at the end

    @property
    def peak(self) -> int:
        """The process's peak RSS as far as can be known."""
        return max(self.peak_rss, self.hwm)

    def cpu_during_load(self) -> float:
        """CPU seconds this process used from the load's start to its last sample."""
        if self.cpu_at_load_start is None:
            return self.cpu_s  # forked after the load started: all its CPU counts
        return self.cpu_s - self.cpu_at_load_start


class WorkerSampler(threading.Thread):
    """Samples the root's and each descendant's memory every SAMPLE_INTERVAL_S."""

    def __init__(self, harness: ModuleType, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.harness = harness
        self.root_pid = root_pid
        self.started = time.monotonic()
        self.root = ProcessRecord(root_pid, os.getpid(), 0, "", 0.0)
        self.workers: dict[int, ProcessRecord] = {}
        self.final_done = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def run(self) -> None:
        """Sample until stop()."""
        while not self._stopping.is_set():
            self.sample()
            self._stopping.wait(self.harness.SAMPLE_INTERVAL_S)

    def _tree(self) -> tuple[dict[int, list[str]], list[tuple[int, int, int]]]:
        """/proc stat fields by pid, and (pid, ppid, depth) of every live descendant."""
        stats = self.harness.proc_stats()
        children: dict[int, list[int]] = {}
        for pid, fields in stats.items():
            children.setdefault(int(fields[1]), []).append(pid)
        found, todo = [], [(child, self.root_pid, 1) for child in children.get(self.root_pid, [])]
        while todo:
            pid, ppid, depth = todo.pop()
            if stats[pid][0] != "Z":
                found.append((pid, ppid, depth))
            todo.extend((child, pid, depth + 1) for child in children.get(pid, []))
        return stats, found

    def sample(self, mark_load_start: bool = False, final: bool = False) -> None:
        """One reading of the whole tree. mark_load_start keeps every worker's CPU
        time as the baseline for the load; final also records who is still alive
        and their Pss/private memory."""
        with self._lock:
            if self.final_done:
                return
            now = time.monotonic() - self.started
            stats, descendants = self._tree()
            root_status = read_status(self.root_pid)
            if root_status is not None:
                self.root.peak_rss = max(self.root.peak_rss, root_status["VmRSS"])
                self.root.hwm = max(self.root.hwm, root_status["VmHWM"])
                if not self.root.cmdline:
                    self.root.cmdline = read_cmdline(self.root_pid)
            for pid, ppid, depth in descendants:
                status = read_status(pid)
                if status is None:
                    continue  # exited between the scan and the read
                record = self.workers.get(pid)
                if record is None:
                    record = self.workers[pid] = ProcessRecord(pid, ppid, depth,
                                                               read_cmdline(pid), now)
                fields = stats[pid]
                record.last_seen_s = now
                record.peak_rss = max(record.peak_rss, status["VmRSS"])
                record.hwm = max(record.hwm, status["VmHWM"])
                record.cpu_s = (int(fields[11]) + int(fields[12])) / self.harness.CLOCK_TICKS
                if mark_load_start:
                    record.cpu_at_load_start = record.cpu_s
                if final:
                    record.alive_at_end = True
                    record.final = read_rollup(pid) or {}
            if final:
                self.final_done = True

    def stop(self) -> None:
        """End the sampling thread."""
        self._stopping.set()
        self.join()


# --- one measurement --------------------------------------------------------------------

def measure_one(h: ModuleType, kind: Any, workload: Any, settings: Any, duration: int,
                log_dir: Path, body_file: Path, run: int) -> dict[str, Any]:
    """Start `kind` serving `workload`'s app, load it as bench_one does, read every
    worker's memory throughout, stop it: one result."""
    port = h.free_port()
    argv = kind.argv(settings, workload.app, port)
    result: dict[str, Any] = {"server": kind.name, "workload": workload.name, "run": run,
                              "status": "error", "reason": "", "command": shlex.join(argv)}
    cwd = log_dir if kind.peer else os.getcwd()  # h2serve runs where the caller is
    server = h.ServerProcess(argv, log_dir / f"{kind.name}-{workload.name}-{run}.log",
                             h.server_env(kind), cwd)
    sampler = WorkerSampler(h, server.pid)
    sampler.start()

    def final_then_stop() -> None:
        """Read the workers one last time while they are alive, then stop the server
        (the harness's release of connections the server never took up)."""
        sampler.sample(final=True)
        server.stop()

    try:
        reason_phrase = h.wait_until_serving(server, port, workload, body_file)
        load_argv = h.h2load_argv(port, workload, duration, body_file)
        result["h2load_command"] = shlex.join(load_argv)
        cpu = h.CpuWindow(server.pid)
        cpu.start()
        sampler.sample(mark_load_start=True)
        load = h.H2Load(load_argv)
        output, released = load.wait(h.WARM_UP_S + duration + h.H2LOAD_GRACE_S,
                                     on_measured=cpu.end, release=final_then_stop)
        died = None if released else server.exit_code()
        result["server_exited"] = died is not None
        result.update(h.parse_h2load(output))
        result["cpu_cores"] = cpu.cores(load.cpu_s)
        result["released_stuck_connections"] = released
        result["status"], result["reason"] = h.judge(result, workload, released, died,
                                                     empty_reason_phrase=reason_phrase == "")
    except h.BenchError as e:
        result["reason"] = str(e)
    finally:
        try:
            sampler.sample(final=True)  # a no-op when final_then_stop already did it
        finally:
            sampler.stop()
            server.stop()
    result.update(summarise(sampler, server))
    if result["status"] == "error" or result.get("server_exited"):
        result["log_tail"] = server.log_tail()
    return result


def summarise(sampler: WorkerSampler, server: Any) -> dict[str, Any]:
    """The per-worker figures of one run, in MiB."""
    def mib(value: int) -> float:
        return round(value / MIB, 1)

    workers = sorted(sampler.workers.values(), key=lambda r: r.first_seen_s)
    details = []
    for w in workers:
        during = w.cpu_during_load()
        details.append({
            "pid": w.pid, "ppid": w.ppid, "depth": w.depth, "cmdline": w.cmdline,
            "first_seen_s": round(w.first_seen_s, 2), "last_seen_s": round(w.last_seen_s, 2),
            "peak_mib": mib(w.peak), "vmhwm_mib": mib(w.hwm), "sampled_rss_mib": mib(w.peak_rss),
            "cpu_s": round(w.cpu_s, 2),
            "cpu_during_load_s": round(during, 2),
            "present_at_load_start": w.cpu_at_load_start is not None,
            "alive_at_end": w.alive_at_end,
            "final_pss_mib": mib(w.final["pss"]) if w.final else None,
            "final_private_mib": mib(w.final["private"]) if w.final else None,
        })
    idle = [d["pid"] for d in details if d["cpu_during_load_s"] < IDLE_WORKER_CPU_S]
    gone = [d["pid"] for d in details if sampler.final_done and not d["alive_at_end"]]
    return {
        "max_worker_peak_mib": max((d["peak_mib"] for d in details), default=None),
        "arbiter_rss_mib": mib(sampler.root.peak) or None,
        "arbiter_cmdline": sampler.root.cmdline,
        "workers_seen": len(details),
        "workers_at_load_start": sum(1 for d in details if d["present_at_load_start"]),
        "grandchildren_seen": sum(1 for d in details if d["depth"] > 1),
        "idle_workers": idle,
        "workers_gone_before_end": gone,
        "tree_rss_peak_mib": round(server.sampler.peak_rss / MIB, 1) or None,
        "workers": details,
    }


# --- reporting --------------------------------------------------------------------------

def median_of(results: list[dict[str, Any]], server: str, workload: str,
              key: str) -> float | None:
    """Median of key over the runs of (server, workload) that have it."""
    values = [r[key] for r in results
              if r["server"] == server and r["workload"] == workload and r.get(key) is not None]
    return statistics.median(values) if values else None


def cell(value: float | None, fmt: str = "{:.1f}") -> str:
    """A table cell, '-' when there is no value."""
    return "-" if value is None else fmt.format(value)


def summary_table(results: list[dict[str, Any]], servers: list[str],
                  workloads: list[str], repeat: int) -> str:
    """workload | <server> max worker peak MiB ... | ratio of the first server to each other."""
    suffix = f" (median of {repeat})" if repeat > 1 else ""
    base, others = servers[0], servers[1:]
    head = ["workload", *(f"{s} max worker peak MiB{suffix}" for s in servers),
            *(f"ratio {base}/{o}" for o in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name in workloads:
        peaks = {s: median_of(results, s, name, "max_worker_peak_mib") for s in servers}
        ratios = [peaks[base] / peaks[o] if peaks[base] and peaks[o] else None for o in others]
        lines.append("| " + " | ".join([name, *(cell(peaks[s]) for s in servers),
                                         *(cell(r, "{:.2f}") for r in ratios)]) + " |")
    return "\n".join(lines)


def detail_table(results: list[dict[str, Any]], servers: list[str], workloads: list[str]) -> str:
    """Per (server, workload): every run's worker peak, arbiter RSS, workers seen, req/s."""
    head = ["server", "workload", "worker peak MiB per run", "arbiter MiB", "workers seen",
            "idle workers", "tree RSS MiB", "req/s", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 7) + "|"]
    for server in servers:
        for name in workloads:
            runs = [r for r in results if r["server"] == server and r["workload"] == name]
            if not runs:
                continue
            lines.append("| " + " | ".join([
                server, name,
                ", ".join(cell(r.get("max_worker_peak_mib")) for r in runs),
                cell(median_of(results, server, name, "arbiter_rss_mib")),
                ", ".join(str(r["workers_seen"]) for r in runs),
                ", ".join(str(len(r["idle_workers"])) for r in runs),
                cell(median_of(results, server, name, "tree_rss_peak_mib")),
                cell(median_of(results, server, name, "req_per_s"), "{:.0f}"),
                ",".join(sorted({r["status"] for r in runs})),
            ]) + " |")
    return "\n".join(lines)


def notes(results: list[dict[str, Any]], workers: int) -> list[str]:
    """Anything that makes a per-worker figure less than straightforward."""
    found = []
    for r in results:
        label = f"{r['server']} / {r['workload']} #{r['run']}"
        if r["status"] != "ok":
            found.append(f"{label}: {r['status']}: {r['reason'].splitlines()[0] if r['reason'] else ''}")
        if r["workers_seen"] != workers:
            found.append(f"{label}: {r['workers_seen']} worker processes seen, {workers} asked for")
        if r["workers_at_load_start"] < workers and r.get("h2load_command"):
            found.append(f"{label}: {r['workers_at_load_start']} of {workers} workers forked "
                         "when the load began (the harness starts it at the first good answer)")
        if r["grandchildren_seen"]:
            found.append(f"{label}: {r['grandchildren_seen']} grandchildren of the arbiter counted")
        if r["idle_workers"]:
            found.append(f"{label}: worker(s) {r['idle_workers']} used < {IDLE_WORKER_CPU_S}s "
                         "CPU during the load (got no connections)")
        if r["workers_gone_before_end"]:
            found.append(f"{label}: worker(s) {r['workers_gone_before_end']} exited before "
                         "the load ended")
    return found


# --- main -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options; --bench is read first since the rest is checked against the harness."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default=DEFAULT_BENCH, help="the harness (default %(default)s)")
    parser.add_argument("--servers", default="h2serve,gunicorn",
                        help="comma-separated; the first is compared with the others "
                        "(default %(default)s)")
    parser.add_argument("--workloads", default="",
                        help="comma-separated (default: every workload of the harness)")
    parser.add_argument("--duration", type=int, default=5,
                        help="measured seconds per workload, after the harness's warm-up "
                        "(default 5)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="measure everything N times, each on a fresh server; the table "
                        "shows medians (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    parser.add_argument("--json", metavar="FILE", help="also write every detail to FILE")
    parser.add_argument("--log-dir", metavar="DIR",
                        help="keep the server logs there (default: a temporary folder)")
    parser.add_argument("--venv", default=os.environ.get(
        "H2BENCH_VENV", str(Path.home() / ".cache" / "h2bench-venv")),
        help="virtualenv holding the peer servers (default: $H2BENCH_VENV or %(default)s)")
    return parser.parse_args(argv)


def pick(names: str, known: dict[str, Any], option: str) -> list[str]:
    """The comma-separated names, checked against the harness's own."""
    chosen = [n for n in names.split(",") if n] or list(known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise SystemExit(f"unknown {option}: {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


def main() -> int:
    """Measure every (server, workload) pair, print the tables, write the JSON."""
    args = parse_args()
    h = load_harness(args.bench)
    servers = pick(args.servers, h.SERVERS, "servers")
    workloads = pick(args.workloads, h.WORKLOADS, "workloads")
    for tool in ("h2load", "nghttp", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: run the harness's setup first")
    started, started_at = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%S%z")

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="worker-rss-") as scratch_name:
        scratch = Path(scratch_name)
        log_dir = Path(args.log_dir).resolve() if args.log_dir else scratch
        log_dir.mkdir(parents=True, exist_ok=True)
        cert, key = h.make_cert(scratch)
        body_file = scratch / "post-body.bin"
        body_file.write_bytes(b"p" * h.POST_BYTES)
        settings = h.Settings(Path(args.venv), args.workers, args.threads, cert, key,
                              h.find_h2serve())
        kinds = [h.SERVERS[name] for name in servers]
        for kind in kinds:
            if kind.peer and not os.access(settings.peer(kind.name), os.X_OK):
                raise SystemExit(f"{kind.name} not in {args.venv}: run the harness's setup")
            if not kind.peer and not settings.h2serve:
                raise SystemExit("h2serve not found on PATH, in $VIRTUAL_ENV or ./.venv "
                                 "(H2SERVE_CMD can name it)")
        versions = h.collect_versions(settings, kinds)
        print(f"{len(kinds)} servers x {len(workloads)} workloads x {args.repeat}, "
              f"{args.duration}s each after {h.WARM_UP_S}s warm-up; {args.workers} workers, "
              f"{args.threads} threads; {os.cpu_count()} CPUs")
        print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)

        total = args.repeat * len(kinds) * len(workloads)
        for run in range(1, args.repeat + 1):  # round-robin, as the harness does
            for kind in kinds:
                for name in workloads:
                    result = measure_one(h, kind, h.WORKLOADS[name], settings, args.duration,
                                         log_dir, body_file, run)
                    results.append(result)
                    print(f"[{len(results)}/{total}] {kind.name:9} {name:16} "
                          f"worker peak {cell(result['max_worker_peak_mib']):>6} MiB  "
                          f"arbiter {cell(result['arbiter_rss_mib']):>5} MiB  "
                          f"workers {result['workers_seen']}  "
                          f"req/s {cell(result.get('req_per_s'), '{:.0f}'):>6}  "
                          f"{result['status']}", flush=True)

    elapsed = time.monotonic() - started
    print()
    print(summary_table(results, servers, workloads, args.repeat))
    print()
    print(detail_table(results, servers, workloads))
    if len(servers) > 1:
        base = servers[0]
        worse = []
        for name in workloads:
            ours = median_of(results, base, name, "max_worker_peak_mib")
            for other in servers[1:]:
                theirs = median_of(results, other, name, "max_worker_peak_mib")
                if ours is None or theirs is None or ours > theirs:
                    worse.append((name, other))
        print()
        if worse:
            print(f"{base} above (or not measured against) a peer: "
                  + ", ".join(f"{n} vs {o}" for n, o in worse))
        else:
            print(f"{base}'s max worker peak is at or below every peer's on every workload.")
    found = notes(results, args.workers)
    if found:
        print("\nNotes:\n" + "\n".join(f"* {n}" for n in found))
    print(f"\nTotal time: {elapsed:.0f}s")

    if args.json:
        report = {
            "started_at": started_at, "elapsed_s": round(elapsed, 1), "bench": args.bench,
            "settings": {"duration_s": args.duration, "warm_up_s": h.WARM_UP_S,
                         "workers": args.workers, "threads": args.threads,
                         "repeat": args.repeat, "sample_interval_s": h.SAMPLE_INTERVAL_S},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "loadavg_at_end": os.getloadavg()},
            "versions": versions,
            "results": results,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 1 if any(r["status"] == "error" for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted (the server under test was stopped)")
